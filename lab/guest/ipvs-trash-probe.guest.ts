// Guest side of lab/ipvs-trash-probe.ts (runs only inside the VM). Prints `TRASH {...}` lines.
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { cpuTicks } from '../../bench/lib/machine.ts';
import { destAddress, restoreFile, ROUTE_DESTINATIONS, ruleSet, vipOf } from '../../bench/agent/rules.ts';
import { IpvsNetlink } from '../../dataplane/ipvs/netlink.ts';
import type { IpvsWrite } from '../../dataplane/ipvs/types.ts';

if (process.env.LVS_IN_VM !== '1') throw new Error('runs only inside the VM: node lab/ipvs-trash-probe.ts');
const N = Number(process.env.LVS_TRASH_N ?? '10000');
const M = 10;
const CHUNKS = 5;
const WAIT_S = Number(process.env.LVS_TRASH_WAIT_S ?? '200');

function writes(from: number, to: number): IpvsWrite[] {
  const out: IpvsWrite[] = [];
  for (let i = from; i < to; i++) {
    const service = { family: 4 as const, protocol: 'TCP' as const, address: vipOf(i), port: 80 };
    out.push({ kind: 'addService', service: { ...service, scheduler: 'rr', flags: 0, timeout: 0, netmask: '255.255.255.255' } });
    for (let j = 0; j < M; j++) {
      out.push({ kind: 'addDestination', service, destination: { family: 4, address: destAddress(i, j, 0, M), port: 8080, forward: 'masq', weight: 1, upperThreshold: 0, lowerThreshold: 0 } });
    }
  }
  return out;
}

async function chunk(run: string, c: number, kernel: IpvsNetlink): Promise<void> {
  const per = N / CHUNKS;
  const before = cpuTicks();
  let ms: number;
  if (run === 'ipvsadm') {
    writeFileSync('/run/tmp/trash-chunk.rules', restoreFile(ruleSet(N, M), c * per, (c + 1) * per));
    const fd = openSync('/run/tmp/trash-chunk.rules', 'r');
    const t0 = performance.now();
    const r = spawnSync('ipvsadm', ['-R'], { stdio: [fd, 'ignore', 'pipe'] });
    ms = performance.now() - t0;
    closeSync(fd);
    if (r.status !== 0) throw new Error(`ipvsadm -R: ${String(r.stderr)}`);
  } else {
    const w = writes(c * per, (c + 1) * per);
    const t0 = performance.now();
    const results = await kernel.applyBatch(w);
    ms = performance.now() - t0;
    const bad = results.filter((x) => x.status !== 'ok').length;
    if (bad) throw new Error(`${bad} writes failed`);
  }
  const after = cpuTicks();
  const used = { user: after.user - before.user, sys: after.sys - before.sys, idle: after.idle - before.idle, softirq: after.softirq - before.softirq };
  console.log(`TRASH ${JSON.stringify({ run, chunk: c, rules: (N / CHUNKS) * (M + 1), ms: Math.round(ms), jiffies: used })}`);
}

execFileSync('bash', ['-ec', ROUTE_DESTINATIONS]);
const kernel = await IpvsNetlink.open({ timeoutMs: 600_000 });
const runs: Array<{ run: string; waitS: number }> = [{ run: 'ours', waitS: 0 }, { run: 'ipvsadm', waitS: WAIT_S }, { run: 'ours', waitS: 0 }];
for (const [k, { run, waitS }] of runs.entries()) {
  execFileSync('ipvsadm', ['-C']);
  if (waitS > 0) await new Promise((r) => setTimeout(r, waitS * 1000));
  console.log(`TRASH ${JSON.stringify({ step: k + 1, run, cleared: 'ipvsadm -C', waitedS: waitS })}`);
  for (let c = 0; c < CHUNKS; c++) await chunk(run, c, kernel);
  const rules = execFileSync('ipvsadm', ['-S', '-n'], { maxBuffer: 1 << 28 }).toString().split('\n').filter(Boolean).length;
  console.log(`TRASH ${JSON.stringify({ step: k + 1, run, rulesInKernel: rules })}`);
}
execFileSync('ipvsadm', ['-C']);
kernel.close();
