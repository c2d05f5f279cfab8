// The controller's published plans against the in-memory API, as end states: the PlanSlices of a
// VirtualServer assemble to what it resolved, follow its changes (growing, shrinking), go with
// it, are swept when orphaned, are kept through an invalid edit, are emptied when it loses its
// keys, are repaired when someone deletes one, and are never rewritten for nothing; Programmed
// follows the AgentReports.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { buildAgentReport, type ReportException } from '../../api/agent-report.ts';
import { slicePlan, type PlanSliceObject } from '../../api/plan-slice.ts';
import { ManualClock, settle } from '../../kube/clock.ts';
import { Controller } from '../../operator/controller.ts';
import { FakeKubeApi, partitionable } from '../../kube/testing/fake.ts';
import { openPool } from '../lib/pools.ts';
import { KubeApiError } from '../../kube/errors.ts';
import { AGENT_REPORTS, ENDPOINT_SLICES, NODES, PLAN_SLICES, SERVICES, VIRTUAL_SERVERS, type Condition, type VirtualServerObject, VIP_POOLS } from '../../kube/types.ts';
import { planRealServers, publishedPlan } from '../lib/published-plan.ts';
import { node, service, serviceVs, slice, staticVs, until, type Ep } from './controller-fixtures.ts';

const test = suite('controller: plans');

function start(api: FakeKubeApi): Controller {
  const c = new Controller({ api, identity: 'c1', leaderElection: false, retryBackoff: { baseMs: 5, maxMs: 50 }, informerBackoff: { baseMs: 5, maxMs: 50 } });
  void c.start();
  return c;
}

const stored = (api: FakeKubeApi, name: string) => api.peek<VirtualServerObject>(VIRTUAL_SERVERS, 'default', name)!;
const cond = (api: FakeKubeApi, name: string, type: string): Condition | undefined => stored(api, name).status?.conditions?.find((c) => c.type === type);
const slicesOf = (api: FakeKubeApi, uid: string) => api.all<PlanSliceObject>(PLAN_SLICES).filter((s) => s.owner.uid === uid).sort((a, b) => a.index - b.index);
const writes = (api: FakeKubeApi) => (['create', 'replace', 'delete'] as const).map((op) => api.count(op, 'planslices'));
async function quiesce(c: Controller): Promise<void> {
  await until(() => c.idle(), 'controller idle');
  await new Promise((r) => setTimeout(r, 20));
  await until(() => c.idle(), 'controller idle');
}

function plan(api: FakeKubeApi, name: string) {
  const got = publishedPlan(api.all(PLAN_SLICES), stored(api, name).metadata.uid!);
  if (!got.ok) throw new Error(`${name}: ${got.field}: ${got.message}`);
  return got.value;
}

/** n endpoints in EndpointSlices of at most 100, as the EndpointSlice controller writes them. */
function endpoints(api: FakeKubeApi, n: number, svc = 'web'): void {
  const eps: Ep[] = Array.from({ length: n }, (_, i) => ({ ip: `10.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, pod: `${svc}-${i}`, node: i % 2 ? 'node-b' : 'node-a' }));
  const existing = api.all(ENDPOINT_SLICES).filter((s) => s.metadata.labels?.['kubernetes.io/service-name'] === svc);
  const names = new Set<string>();
  for (let i = 0; i * 100 < n; i++) {
    names.add(`${svc}-${i}`);
    api.apply(ENDPOINT_SLICES, slice(`${svc}-${i}`, svc, eps.slice(i * 100, (i + 1) * 100)));
  }
  for (const s of existing) if (!names.has(s.metadata.name)) api.remove(ENDPOINT_SLICES, 'default', s.metadata.name);
}

function cluster(): FakeKubeApi {
  const api = new FakeKubeApi();
  api.apply(VIP_POOLS, openPool());
  api.apply(NODES, node('node-a', {}, '192.0.2.1'));
  api.apply(NODES, node('node-b', {}, '192.0.2.2'));
  api.apply(SERVICES, service('web'));
  return api;
}

test('2,500 endpoints: three slices that assemble to the resolution; grown, shrunk, and not rewritten for nothing', async () => {
  const api = cluster();
  endpoints(api, 2500);
  api.apply(VIRTUAL_SERVERS, serviceVs('web', 'web'));
  const c = start(api);
  try {
    await until(() => stored(api, 'web').status?.plan?.slices === 3, 'three slices published', 5000);
    await quiesce(c);
    const uid = stored(api, 'web').metadata.uid!;
    const p = plan(api, 'web');
    assert.equal(p.owner, { namespace: 'default', name: 'web', uid, generation: 1 });
    assert.equal(p.directors, ['node-a', 'node-b']);
    assert.is(planRealServers(p).length, 2500);
    assert.ok(planRealServers(p).every((r) => r.port === 8080 && r.weight === 1 && r.state === 'Ready'));
    assert.equal(slicesOf(api, uid).map((s) => s.metadata.labels?.['lvs.dev/owner-uid']), [uid, uid, uid]);
    assert.equal(writes(api), [3, 0, 0]);
    const st = stored(api, 'web').status!;
    assert.equal([st.readyRealServers, st.realServerCount, st.plan!.revision], [2500, 2500, slicesOf(api, uid)[0]!.revision]);

    // A second reconcile of an unchanged VirtualServer writes nothing.
    const statusWrites = api.count('patchStatus', 'virtualservers');
    c.queue.add('default/web');
    await quiesce(c);
    assert.equal([writes(api), api.count('patchStatus', 'virtualservers')], [[3, 0, 0], statusWrites]);

    endpoints(api, 500);
    await until(() => stored(api, 'web').status?.plan?.slices === 1, 'shrunk to one slice', 5000);
    await quiesce(c);
    assert.equal(slicesOf(api, uid).map((s) => s.metadata.name), [`${uid}-0`], 'the higher indexes are deleted');
    assert.is(planRealServers(plan(api, 'web')).length, 500);
  } finally {
    await c.stop();
  }
});

test('the slice cache keeps a content hash, not the entries; a real server someone edits in a slice is put back', async () => {
  const api = cluster();
  endpoints(api, 3);
  api.apply(VIRTUAL_SERVERS, serviceVs('web', 'web'));
  const c = start(api);
  try {
    await until(() => stored(api, 'web').status?.plan?.slices === 1, 'published');
    await quiesce(c);
    const uid = stored(api, 'web').metadata.uid!;
    const cached = c.planSlices.list();
    assert.equal(cached.map((s) => [s.metadata.name, 'services' in s, s.serviceKeys]), [[`${uid}-0`, false, ['TCP/203.0.113.10:80']]]);
    assert.is(c.published.pending, 0, 'every write of ours echoed');
    const before = writes(api);
    const s = slicesOf(api, uid)[0]!;
    api.apply(PLAN_SLICES, { ...s, services: s.services.map((x) => ({ ...x, realServers: x.realServers.map((r, i) => (i === 0 ? { ...r, weight: 9 } : r)) })) });
    await until(() => writes(api)[1] === before[1]! + 1, 'the edited slice replaced');
    await quiesce(c);
    assert.ok(planRealServers(plan(api, 'web')).every((r) => r.weight === 1), 'the weight put back');
    assert.equal(writes(api), [before[0], before[1]! + 1, before[2]]);
  } finally {
    await c.stop();
  }
});

test('a deleted VirtualServer\'s slices are deleted; slices of VirtualServers that no longer exist are deleted', async () => {
  const api = cluster();
  endpoints(api, 3);
  // Left behind by a VirtualServer deleted while no controller ran.
  const orphan = slicePlan({ owner: { namespace: 'default', name: 'gone', uid: 'uid-gone', generation: 2 }, directors: ['node-a'], services: [] })[0]!;
  api.apply(PLAN_SLICES, orphan);
  api.apply(VIRTUAL_SERVERS, serviceVs('web', 'web'));
  api.apply(VIRTUAL_SERVERS, staticVs('other', ['198.51.100.7']));
  const c = start(api);
  try {
    await until(() => api.peek(PLAN_SLICES, undefined, orphan.metadata.name) === undefined, 'orphan deleted');
    await until(() => stored(api, 'web').status?.plan !== undefined && stored(api, 'other').status?.plan !== undefined, 'both published');
    const uid = stored(api, 'web').metadata.uid!;
    assert.is(slicesOf(api, uid).length, 1);
    api.remove(VIRTUAL_SERVERS, 'default', 'web');
    await until(() => slicesOf(api, uid).length === 0, 'slices deleted with the VirtualServer');
    await quiesce(c);
    assert.is(slicesOf(api, stored(api, 'other').metadata.uid!).length, 1, 'the other VirtualServer keeps its plan');
  } finally {
    await c.stop();
  }
});

test('an invalid edit keeps the published plan untouched; a lost conflict publishes an empty plan; a deleted slice comes back', async () => {
  const api = cluster();
  api.apply(VIRTUAL_SERVERS, staticVs('first', ['198.51.100.7'], '203.0.113.30'));
  const c = start(api);
  try {
    await until(() => stored(api, 'first').status?.plan !== undefined, 'published');
    await quiesce(c);
    const uid = stored(api, 'first').metadata.uid!;
    const before = slicesOf(api, uid);
    const bad = staticVs('first', ['198.51.100.7'], '203.0.113.30');
    (bad.spec!.ports as Array<{ port: number }>)[0]!.port = 0;
    api.apply(VIRTUAL_SERVERS, bad);
    await until(() => cond(api, 'first', 'InvalidSpec')?.status === 'True', 'InvalidSpec');
    await quiesce(c);
    assert.equal(slicesOf(api, uid), before, 'slices untouched (same resourceVersions)');
    assert.match(cond(api, 'first', 'InvalidSpec')!.message, /spec\.ports\[0\]\.port/);
    assert.equal(stored(api, 'first').status!.plan!.generation, 1, 'the kept plan is generation 1\'s');
    assert.is(stored(api, 'first').status!.observedGeneration, 2);
    assert.match(cond(api, 'first', 'Programmed')!.message, /the plan of generation 1, kept while the spec is invalid/);

    api.apply(VIRTUAL_SERVERS, staticVs('first', ['198.51.100.7'], '203.0.113.30'));
    await until(() => stored(api, 'first').status?.plan?.generation === 3, 'valid again: republished');
    // A younger VirtualServer claiming the same (VIP, protocol, port) loses it: its plan is empty.
    api.apply(VIRTUAL_SERVERS, staticVs('second', ['198.51.100.8'], '203.0.113.30'));
    await until(() => cond(api, 'second', 'Conflict')?.status === 'True', 'second in conflict');
    await quiesce(c);
    assert.equal(plan(api, 'second').services, []);
    assert.equal(plan(api, 'first').services.map((s) => s.key), ['TCP/203.0.113.30:80']);

    const victim = slicesOf(api, uid)[0]!;
    api.remove(PLAN_SLICES, undefined, victim.metadata.name);
    await until(() => slicesOf(api, uid).length === 1, 'a slice someone deleted is written again');
    assert.equal(plan(api, 'first').services.map((s) => s.key), ['TCP/203.0.113.30:80']);
  } finally {
    await c.stop();
  }
});

test('leading again after a lost lease sweeps orphans whose pending retry the lost lease dropped', async () => {
  const clock = new ManualClock();
  const fake = new FakeKubeApi(() => clock.now());
  fake.apply(VIP_POOLS, openPool());
  fake.apply(NODES, node('node-a', {}, '192.0.2.1'));
  const net = partitionable(fake);
  const c = new Controller({
    api: net.api, identity: 'c1', clock, random: () => 0, retryBackoff: { baseMs: 60_000, maxMs: 60_000 },
    leaderElection: { namespace: 'lvs-system', name: 'lvs-operator', leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 },
  });
  await c.start();
  await until(() => c.isLeader() && c.idle(), 'leading, idle');
  // An orphan whose deletion fails once: its retry waits a minute (manual clock).
  fake.failNext('delete', new KubeApiError('delete planslices', 500, 'etcd timeout'), 'planslices');
  const orphan = slicePlan({ owner: { namespace: 'default', name: 'gone', uid: 'uid-gone', generation: 1 }, directors: [], services: [] })[0]!;
  fake.apply(PLAN_SLICES, orphan);
  await until(() => c.idle(), 'first attempt failed');
  assert.ok(fake.peek(PLAN_SLICES, undefined, orphan.metadata.name), 'still there, retry pending');
  // The lease is lost (the queue and its pending retries go), then won back: nothing but the
  // sweep on leading says the orphan is there.
  net.cut(true);
  for (let t = 0; t < 12_000 && c.isLeader(); t += 500) await clock.advance(500);
  assert.not.ok(c.isLeader(), 'stepped down');
  net.cut(false);
  for (let t = 0; t < 30_000 && !c.isLeader(); t += 500) await clock.advance(500);
  assert.ok(c.isLeader(), 'leading again');
  await until(() => fake.peek(PLAN_SLICES, undefined, orphan.metadata.name) === undefined, 'orphan swept');
  await settle();
  await c.stop();
});

test('a 409 on a slice write is retried with backoff until the plan is published', async () => {
  const api = cluster();
  api.failNext('create', new KubeApiError('create planslices', 409, 'already exists', { reason: 'AlreadyExists' }), 'planslices');
  api.apply(VIRTUAL_SERVERS, staticVs('web', ['198.51.100.7']));
  const c = start(api);
  try {
    await until(() => stored(api, 'web').status?.plan !== undefined, 'published after the retry');
    await quiesce(c);
    assert.is(slicesOf(api, stored(api, 'web').metadata.uid!).length, 1);
    assert.match(await c.metrics.registry.getSingleMetricAsString('lvs_operator_reconciles_total'), /result="error"\} 1/);
  } finally {
    await c.stop();
  }
});

test('Programmed follows the AgentReports of the directors', async () => {
  const api = cluster();
  api.apply(VIRTUAL_SERVERS, staticVs('web', ['198.51.100.7']));
  const c = start(api);
  const put = (nodeName: string, synced: string, o: { nodeErrors?: string[]; failing?: ReportException[] } = {}) =>
    api.apply(AGENT_REPORTS, buildAgentReport(nodeName, { syncedResourceVersion: synced, nodeErrors: o.nodeErrors ?? [], failing: o.failing ?? [], frozen: [], prepared: [] }));
  try {
    await until(() => stored(api, 'web').status?.plan !== undefined, 'published');
    await quiesce(c);
    assert.equal([cond(api, 'web', 'Programmed')?.status, stored(api, 'web').status!.unprogrammedNodes!.map((n) => `${n.name} ${n.state}`)], ['Unknown', ['node-a Waiting', 'node-b Waiting']]);
    const rv = slicesOf(api, stored(api, 'web').metadata.uid!)[0]!.metadata.resourceVersion!;
    put('node-a', rv);
    await until(() => stored(api, 'web').status?.programmedNodes === 1, 'node-a programmed');
    assert.is(cond(api, 'web', 'Programmed')?.status, 'Unknown');
    put('node-b', String(Number(rv) - 1));
    await quiesce(c);
    assert.equal(stored(api, 'web').status!.unprogrammedNodes, [{ name: 'node-b', state: 'Waiting', message: 'has not synced this plan yet' }]);
    put('node-b', String(Number(rv) + 5));
    await until(() => cond(api, 'web', 'Programmed')?.status === 'True', 'Programmed=True');
    assert.equal([stored(api, 'web').status!.unprogrammedNodes, stored(api, 'web').status!.programmedNodes], [[], 2]);
    put('node-b', String(Number(rv) + 6), { nodeErrors: ['kernel read-back failed: EPERM'] });
    await until(() => cond(api, 'web', 'Programmed')?.status === 'False', 'Programmed=False');
    assert.is(cond(api, 'web', 'Programmed')!.message, 'node node-b: kernel read-back failed: EPERM');
    const uid = stored(api, 'web').metadata.uid!;
    put('node-b', String(Number(rv) + 7), { failing: [{ uid, virtualServer: 'default/web', message: 'TCP/203.0.113.20:80: netlink newDest failed: EINVAL' }] });
    await until(() => /newDest/.test(cond(api, 'web', 'Programmed')?.message ?? ''), 'failing names the step');
    put('node-b', String(Number(rv) + 8));
    await until(() => cond(api, 'web', 'Programmed')?.status === 'True', 'recovered');
  } finally {
    await c.stop();
  }
});

test.run();
