// Guest side of `node lab/director-scale.ts OUT --check` (runs only inside the VM): the agent's
// periodic director check (its LvsDevice's list(), as dataplane/sync/director-check.ts starts it)
// at N quiet VIPs on lvs0, with commands from the spawner as the agent runs them, in the VM's own
// network namespace (as the DaemonSet's agent in the node's). After the VIPs are bound, CHECKS
// checks one after the other. Prints `DIRCHECK {...}` lines: per check the wall time, this
// process's CPU and the CPU of the commands (the spawner shell's reaped children, from
// /proc/PID/stat); then per command (argv without addresses) how many ran and their wall times;
// then a CPU profile of one more check, summarised by area.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Session } from 'node:inspector/promises';
import { createSpawner } from '../../dataplane/spawner.ts';
import type { Runner } from '../../dataplane/exec.ts';
import { createLvsDevice } from '../../dataplane/agent/lvs-device.ts';
import type { PlanService } from '../../api/plan.ts';
import { summarise, type CpuProfile } from '../../bench/agent/profile.ts';
import { REPO } from '../vm/guest-agent.ts';

if (process.env.LVS_IN_VM !== '1') throw new Error('runs only inside the VM: node lab/director-scale.ts OUT --check');
const N = Number(process.env.LVS_DIRSCALE_N ?? '400');
const CHECKS = Number(process.env.LVS_DIRCHECK_CHECKS ?? '10');
const vip = (i: number) => `198.18.${i >> 8}.${i & 255}`;

const spawner = createSpawner({ timeoutMs: 900_000 });
const calls = new Map<string, number[]>();
const run: Runner = async (cmd, args, opts) => {
  const t0 = performance.now();
  try {
    return await spawner.run(cmd, args, opts);
  } finally {
    const what = [cmd, ...args.filter((a) => !/^[\d.:/]+$/.test(a))].join(' ');
    calls.set(what, [...(calls.get(what) ?? []), performance.now() - t0]);
  }
};
const ms = (x: number) => Math.round(x * 10) / 10;
const selfCpuMs = () => { const c = process.cpuUsage(); return (c.user + c.system) / 1000; };
/** utime+stime of the shell's children it has waited for (fields 16 and 17 of /proc/PID/stat), in ms. */
const commandsCpuMs = () => {
  const pid = spawner.shellPid;
  if (!pid) return 0;
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[13]) + Number(f[14])) * 10; // fields 16, 17 after pid and comm; USER_HZ = 100
};

const svc = (i: number): PlanService => ({
  key: `TCP/${vip(i)}:80`, owner: { namespace: 'bench', name: `vs-${i}`, generation: 1 }, portName: 'http', vip: vip(i), family: 4, protocol: 'TCP', port: 80,
  forwarding: 'NAT', natReturnPath: 'Gateway', scheduler: { name: 'rr', flags: [] }, prepareRealServers: false, realServers: [], directors: ['n1'],
});
const services = Array.from({ length: N }, (_, i) => svc(i));
const device = createLvsDevice({ run, node: 'n1', plan: () => services, kernelRelease: '6.1.0' });

async function check(label: string): Promise<void> {
  const c0 = selfCpuMs(), k0 = commandsCpuMs(), t0 = performance.now();
  await device.list();
  console.log(`DIRCHECK ${JSON.stringify({ what: label, n: N, wallMs: ms(performance.now() - t0), agentCpuMs: ms(selfCpuMs() - c0), commandsCpuMs: commandsCpuMs() - k0 })}`);
}

const t0 = performance.now();
await device.set(services.map((s) => s.vip));
console.log(`DIRCHECK ${JSON.stringify({ what: `bind ${N} VIPs`, n: N, wallMs: ms(performance.now() - t0) })}`);
await check('first check (the spec is built)');
calls.clear();
for (let i = 0; i < CHECKS; i++) await check('check');
for (const [what, walls] of [...calls].sort((a, b) => a[0].localeCompare(b[0]))) {
  const sorted = [...walls].sort((a, b) => a - b);
  console.log(`DIRCHECK ${JSON.stringify({ command: what, perCheck: walls.length / CHECKS, wallMsP50: ms(sorted[Math.floor(sorted.length / 2)]!), wallMsMax: ms(sorted.at(-1)!) })}`);
}
const session = new Session();
session.connect();
await session.post('Profiler.enable');
await session.post('Profiler.start');
await check('check (profiled)');
const { profile } = await session.post('Profiler.stop');
const s = summarise(profile as unknown as CpuProfile, REPO, 12);
console.log(`DIRCHECK ${JSON.stringify({ profile: 'check', totalMs: Math.round(s.totalMs), areas: s.areas.slice(0, 8), functions: s.functions })}`);
spawner.close();
