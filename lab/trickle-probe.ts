// Lab probe: what new services cost the cluster agent at N services (a cluster that grows, or is
// created: the controller publishes a plan per new VirtualServer). The real agent code over the
// in-memory fakes of the API and the kernel (dataplane/realserver/testing/fake-netns.ts stands in
// for ip, nft and sysctl, so their share is the fake's, not the real commands'), on a manual
// clock: N plans of one NAT service each, programmed; then RATE new plans (each a new VIP) per
// agent-second for SECONDS. Prints the CPU of that phase; PROFILE=<file> writes its CPU profile
// (summarise with bench/agent/profile.ts).
//
//   node_modules/.bin/node lab/trickle-probe.ts [N=10000] [RATE=25] [SECONDS=20]
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import pino from 'pino';
import { slicePlan } from '../api/plan-slice.ts';
import { FakeIpvsKernel } from '../dataplane/ipvs/testing/fake.ts';
import { ManualClock } from '../kube/clock.ts';
import { FakeKubeApi } from '../kube/testing/fake.ts';
import { PLAN_SLICES, type KubeObject } from '../kube/types.ts';
import { harness, ownerPlan, service } from '../test/lib/cluster-fixtures.ts';

const [N, RATE, SECONDS] = [10_000, 25, 20].map((d, i) => Number(process.argv[2 + i] ?? d)) as [number, number, number];
const vipOf = (i: number) => `198.18.${i >> 8}.${i & 255}`;
const plan = (i: number) => ownerPlan(`vs-${i}`, [service({
  vip: vipOf(i), key: `TCP/${vipOf(i)}:80`, realServers: [{ address: `10.1.${(i >> 8) & 255}.${i & 255}`, port: 8080, weight: 1, state: 'Ready' as const }],
})], { generation: 1 });
const cpuMs = () => { const c = process.cpuUsage(); return (c.user + c.system) / 1000; };
const clock = new ManualClock();
const api = new FakeKubeApi(() => clock.wallNow());
const kernel = new FakeIpvsKernel();
const publish = (i: number) => { for (const s of slicePlan(plan(i))) api.apply(PLAN_SLICES, s as unknown as KubeObject); };
for (let i = 0; i < N; i++) publish(i);
const h = harness('n1', { api, kernel, clock });
await h.start({ log: pino({ level: 'silent' }) });
for (let s = 0; s < 120 && kernel.snapshot().length < N; s++) await clock.advance(1_000);
for (let s = 0; s < 40; s++) await clock.advance(1_000); // past the first director check and verify pass
const session = process.env.PROFILE ? new Session() : undefined;
if (session) { session.connect(); await session.post('Profiler.enable'); await session.post('Profiler.start'); }
const c0 = cpuMs();
let next = N;
for (let s = 0; s < SECONDS; s++) {
  for (let k = 0; k < RATE; k++) publish(next++);
  await clock.advance(1_000);
}
const ms = Math.round(cpuMs() - c0);
if (session) writeFileSync(process.env.PROFILE!, JSON.stringify((await session.post('Profiler.stop')).profile));
console.log(`${N} services, then ${RATE} new per second for ${SECONDS} s: ${ms} ms CPU (${Math.round(ms / SECONDS)} ms per agent-second, the fakes' share included); programmed ${kernel.snapshot().length} of ${next}`);
await h.close();
