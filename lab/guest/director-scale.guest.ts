// Guest side of lab/director-scale.ts (runs only inside the VM): what one director sync costs at
// N VIPs on lvs0 (all quiet: one ARP drop rule each), in a fresh network namespace. Prints
// `DIRSCALE {...}` lines: wall ms and the process's CPU ms of syncDirector from empty, of a no-op
// syncDirector (the periodic director check), of one adding K VIPs, and of observeDirector alone;
// a CPU profile of the no-op sync summarised by area; then the agent's LvsDevice over the same
// node: its director check (list), a quick bind of K more VIPs (../../dataplane/director/
// quick-bind.ts), the check after it, and a quick unbind of those K.
import { execFileSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { Session } from 'node:inspector/promises';
import { createRunner, inNetns } from '../../dataplane/exec.ts';
import { normalizeSpec, type DirectorSpec } from '../../dataplane/director/plan.ts';
import { createLvsDevice } from '../../dataplane/agent/lvs-device.ts';
import type { PlanService } from '../../api/plan.ts';
import { observeDirector, syncDirector } from '../../dataplane/director/setup.ts';
import { summarise, type CpuProfile } from '../../bench/agent/profile.ts';
import { REPO } from '../vm/guest-agent.ts';

if (process.env.LVS_IN_VM !== '1') throw new Error('runs only inside the VM: node lab/director-scale.ts');
const N = Number(process.env.LVS_DIRSCALE_N ?? '10000');
const K = 25;
const NS = 'dirscale';
const vip = (i: number) => `198.18.${i >> 8}.${i & 255}`;
const spec = (n: number): DirectorSpec => normalizeSpec({
  vips: Array.from({ length: n }, (_, i) => ({ address: vip(i), announce: false })), snat: [], natFamilies: [4], kernelRelease: '6.1.0',
});
execFileSync('ip', ['netns', 'add', NS]);
execFileSync('ip', ['-n', NS, 'link', 'set', 'lo', 'up']);
const opts = { run: createRunner({ timeoutMs: 900_000 }), target: { kind: 'named' as const, name: NS }, announceNow: false };
const cpuMs = () => { const c = process.cpuUsage(); return (c.user + c.system) / 1000; };
async function timed(what: string, fn: () => Promise<unknown>): Promise<void> {
  const c0 = cpuMs(), t0 = performance.now();
  await fn();
  console.log(`DIRSCALE ${JSON.stringify({ what, n: N, wallMs: Math.round(performance.now() - t0), cpuMs: Math.round(cpuMs() - c0) })}`);
}
try {
  await timed(`syncDirector from empty to ${N} VIPs`, () => syncDirector(opts, spec(N)));
  await timed('syncDirector, nothing to do', () => syncDirector(opts, spec(N)));
  await timed('observeDirector (all links)', () => observeDirector(inNetns(opts.run, opts.target), 'lvs0', true));
  await timed(`syncDirector adding ${K} VIPs`, () => syncDirector(opts, spec(N + K)));
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  await timed('syncDirector, nothing to do (profiled)', () => syncDirector(opts, spec(N + K)));
  const { profile } = await session.post('Profiler.stop');
  const s = summarise(profile as unknown as CpuProfile, REPO, 15);
  console.log(`DIRSCALE ${JSON.stringify({ profile: 'no-op sync', totalMs: Math.round(s.totalMs), areas: s.areas.slice(0, 10), functions: s.functions })}`);
  const svc = (i: number): PlanService => ({
    key: `TCP/${vip(i)}:80`, owner: { namespace: 'bench', name: `vs-${i}`, generation: 1 }, portName: 'http', vip: vip(i), family: 4, protocol: 'TCP', port: 80,
    forwarding: 'NAT', natReturnPath: 'Gateway', scheduler: { name: 'rr', flags: [] }, prepareRealServers: false, realServers: [], directors: ['n1'],
  });
  const services = Array.from({ length: N + 2 * K }, (_, i) => svc(i));
  const device = createLvsDevice({ run: opts.run, node: 'n1', plan: () => services, target: opts.target, kernelRelease: '6.1.0' });
  const upTo = (n: number) => services.slice(0, n).map((x) => x.vip);
  await timed(`LvsDevice: director check (list) at ${N + K} VIPs`, () => device.list());
  await timed(`LvsDevice: quick bind of ${K} more VIPs`, () => device.set(upTo(N + 2 * K)));
  await timed(`LvsDevice: director check after the quick bind`, () => device.list());
  await timed(`LvsDevice: quick unbind of ${K} VIPs`, () => device.set(upTo(N + K)));
  const bound = execFileSync('ip', ['-n', NS, '-o', 'addr', 'show', 'dev', 'lvs0']).toString().split('\n').filter((l) => l.includes('inet ')).length;
  console.log(`DIRSCALE ${JSON.stringify({ what: 'addresses on lvs0 at the end', n: bound, want: N + K })}`);
} finally {
  execFileSync('ip', ['netns', 'del', NS]);
}
