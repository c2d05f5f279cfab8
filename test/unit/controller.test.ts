// The controller end to end against the in-memory API: informers -> world -> queue -> reconcile
// -> PlanSlices, status and events. Assertions are on end states (stored slices and status, write
// counts, events).
import pino from 'pino';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Controller } from '../../operator/controller.ts';
import { buildAgentReport } from '../../api/agent-report.ts';
import { openPool } from '../lib/pools.ts';
import { FakeKubeApi } from '../../kube/testing/fake.ts';
import { KubeApiError } from '../../kube/errors.ts';
import { AGENT_REPORTS, ENDPOINT_SLICES, EVENTS, NODES, PLAN_SLICES, SERVICES, VIRTUAL_SERVERS, type Condition, type KubeObject, type VirtualServerObject, VIP_POOLS } from '../../kube/types.ts';
import type { OwnerPlan } from '../../api/plan-slice.ts';
import { planRealServers, publishedPlan } from '../lib/published-plan.ts';
import { node, service, serviceVs, slice, staticVs, until } from './controller-fixtures.ts';

const test = suite('controller');

function start(api: FakeKubeApi, identity = 'c1'): Controller {
  const c = new Controller({ api, identity, leaderElection: false, retryBackoff: { baseMs: 5, maxMs: 50 }, informerBackoff: { baseMs: 5, maxMs: 50 } });
  void c.start();
  return c;
}

const stored = (api: FakeKubeApi, name: string) => api.peek<VirtualServerObject>(VIRTUAL_SERVERS, 'default', name)!;
const cond = (api: FakeKubeApi, name: string, type: string): Condition | undefined => stored(api, name).status?.conditions?.find((c) => c.type === type);
/** The plan published for a VirtualServer, assembled from the stored slices as an agent would. */
function planOf(api: FakeKubeApi, name: string): OwnerPlan {
  const got = publishedPlan(api.all(PLAN_SLICES), stored(api, name).metadata.uid!);
  if (!got.ok) throw new Error(`${name}: ${got.field}: ${got.message}`);
  return got.value;
}
const rsOf = (api: FakeKubeApi, name: string) => planRealServers(planOf(api, name)).map(({ key: _k, ...r }) => r);
const sliceWrites = (api: FakeKubeApi) => ['create', 'replace', 'delete'].reduce((n, op) => n + api.count(op as 'create', 'planslices'), 0);
const settled = (c: Controller) => until(() => c.idle(), 'controller idle');
async function quiesce(c: Controller): Promise<void> {
  await settled(c);
  await new Promise((r) => setTimeout(r, 20));
  await settled(c);
}

function cluster(): FakeKubeApi {
  const api = new FakeKubeApi();
  api.apply(VIP_POOLS, openPool());
  api.apply(NODES, node('node-a', { 'lvs.dev/director': 'true' }, '192.0.2.1'));
  api.apply(NODES, node('node-b', {}, '192.0.2.2'));
  api.apply(SERVICES, service('web'));
  api.apply(ENDPOINT_SLICES, slice('web-1', 'web', [{ ip: '10.244.1.5', pod: 'web-1' }, { ip: '10.244.1.6', pod: 'web-2', node: 'node-b' }]));
  return api;
}

test('a Service-backed VirtualServer follows its EndpointSlices: ready, terminating, removed', async () => {
  const api = cluster();
  api.apply(VIRTUAL_SERVERS, serviceVs('web', 'web'));
  const c = start(api);
  await until(() => stored(api, 'web').status?.readyRealServers === 2, 'two ready real servers');
  const st = stored(api, 'web').status!;
  assert.equal(st.observedGeneration, 1);
  assert.equal(st.directors, ['node-a', 'node-b']);
  assert.is(st.realServerCount, 2);
  assert.equal(rsOf(api, 'web'), [
    { portName: 'http', address: '10.244.1.5', port: 8080, weight: 1, state: 'Ready', node: 'node-a', pod: { namespace: 'default', name: 'web-1' } },
    { portName: 'http', address: '10.244.1.6', port: 8080, weight: 1, state: 'Ready', node: 'node-b', pod: { namespace: 'default', name: 'web-2' } },
  ]);
  assert.equal(planOf(api, 'web').directors, ['node-a', 'node-b']);
  assert.equal(st.plan, { revision: api.all<KubeObject & { revision: string }>(PLAN_SLICES)[0]!.revision, slices: 1, generation: 1 });
  assert.equal(cond(api, 'web', 'Ready')?.status, 'True');
  assert.equal(cond(api, 'web', 'Programmed')?.reason, 'AwaitingAgents');
  assert.equal(cond(api, 'web', 'BackendsResolved')?.status, 'True');

  api.apply(ENDPOINT_SLICES, slice('web-1', 'web', [{ ip: '10.244.1.5', pod: 'web-1' }, { ip: '10.244.1.6', pod: 'web-2', node: 'node-b', ready: false, serving: true, terminating: true }]));
  await until(() => stored(api, 'web').status?.readyRealServers === 1, 'one ready after terminating');
  assert.equal(rsOf(api, 'web')[1], { portName: 'http', address: '10.244.1.6', port: 8080, weight: 0, state: 'Draining', node: 'node-b', pod: { namespace: 'default', name: 'web-2' } });

  api.apply(ENDPOINT_SLICES, slice('web-1', 'web', [{ ip: '10.244.1.5', pod: 'web-1' }]));
  await until(() => stored(api, 'web').status?.realServerCount === 1, 'terminating endpoint removed');
  await quiesce(c);
  assert.equal(rsOf(api, 'web').map((r) => r.address), ['10.244.1.5']);
  // One write for each change, none for the controller's own status and slice updates coming back.
  assert.is(c.statusWrites.get('default/web'), 3);
  assert.equal([api.count('create', 'planslices'), api.count('replace', 'planslices'), api.count('delete', 'planslices')], [1, 2, 0]);
  await c.stop();
});

test('lastTransitionTime moves only when a condition status changes', async () => {
  const api = cluster();
  api.apply(VIRTUAL_SERVERS, serviceVs('web', 'web'));
  const c = start(api);
  await until(() => cond(api, 'web', 'Ready')?.status === 'True', 'ready');
  const before = stored(api, 'web').status!.conditions!;
  // Force the Ready message to change (2 -> 1 ready) while its status stays True.
  const old = before.find((x) => x.type === 'Ready')!;
  const patched = structuredClone(stored(api, 'web'));
  for (const x of patched.status!.conditions!) x.lastTransitionTime = '2000-01-01T00:00:00Z';
  await api.patchStatus(VIRTUAL_SERVERS, 'default', 'web', { status: patched.status });
  api.apply(ENDPOINT_SLICES, slice('web-1', 'web', [{ ip: '10.244.1.5', pod: 'web-1' }]));
  await until(() => stored(api, 'web').status?.readyRealServers === 1, 'one ready');
  const ready = cond(api, 'web', 'Ready')!;
  assert.is(ready.status, 'True');
  assert.is.not(ready.message, old.message);
  assert.is(ready.lastTransitionTime, '2000-01-01T00:00:00Z');
  api.apply(ENDPOINT_SLICES, slice('web-1', 'web', []));
  await until(() => cond(api, 'web', 'Ready')?.status === 'False', 'not ready without endpoints');
  assert.is.not(cond(api, 'web', 'Ready')!.lastTransitionTime, '2000-01-01T00:00:00Z');
  assert.is(cond(api, 'web', 'Ready')!.reason, 'NoReadyEndpoints');
  assert.is(cond(api, 'web', 'Conflict')!.lastTransitionTime, '2000-01-01T00:00:00Z');
  await c.stop();
});

test('same (VIP, protocol, port) twice: Conflict on the later only, cleared when the first is deleted', async () => {
  const api = cluster();
  api.apply(VIRTUAL_SERVERS, serviceVs('first', 'web'));
  const c = start(api);
  await until(() => cond(api, 'first', 'Ready')?.status === 'True', 'first ready');
  api.apply(VIRTUAL_SERVERS, serviceVs('second', 'web'));
  await until(() => cond(api, 'second', 'Conflict')?.status === 'True', 'second in conflict');
  await quiesce(c);
  assert.is(cond(api, 'first', 'Conflict')?.status, 'False');
  assert.is(cond(api, 'second', 'Ready')?.status, 'False');
  assert.is(cond(api, 'second', 'Ready')?.reason, 'Conflict');
  assert.match(cond(api, 'second', 'Conflict')!.message, /default\/first/);
  type Ev = KubeObject & { type: string; reason: string; regarding: { name: string } };
  // Events are recorded right after the status write: wait for them too.
  const events = (type: string) => api.all<Ev>(EVENTS).filter((e) => e.type === type && e.regarding.name === 'second').map((e) => e.reason).sort();
  await until(() => events('Warning').length > 0, 'warning event');
  await quiesce(c);
  assert.equal(events('Warning'), ['AddressInUse']);

  api.remove(VIRTUAL_SERVERS, 'default', 'first');
  await until(() => cond(api, 'second', 'Conflict')?.status === 'False', 'conflict cleared');
  assert.is(cond(api, 'second', 'Ready')?.status, 'True');
  await until(() => events('Normal').length >= 2, 'recovery events');
  await quiesce(c);
  assert.equal(events('Normal'), ['NoConflict', 'Resolved']);
  await c.stop();
});

test('a restarted controller converges without writing anything', async () => {
  const api = cluster();
  api.apply(VIRTUAL_SERVERS, serviceVs('web', 'web'));
  api.apply(VIRTUAL_SERVERS, staticVs('legacy', ['198.51.100.7', '192.0.2.2']));
  const c1 = start(api);
  await until(() => cond(api, 'legacy', 'Ready')?.status === 'True' && cond(api, 'web', 'Ready')?.status === 'True', 'both ready');
  await quiesce(c1);
  await c1.stop();
  const writes = api.count('patchStatus', 'virtualservers');
  const slices = sliceWrites(api);
  assert.is(slices, 2, 'one slice each');
  const c2 = start(api, 'c2');
  await until(() => c2.synced(), 'c2 synced');
  await quiesce(c2);
  assert.is(api.count('patchStatus', 'virtualservers'), writes);
  assert.is(sliceWrites(api), slices, 'no slice rewritten');
  assert.is(c2.statusWrites.size, 0);
  // The static backend on node-b's address is attributed to node-b.
  assert.equal(rsOf(api, 'legacy').map((r) => [r.address, r.node ?? null]), [['192.0.2.2', 'node-b'], ['198.51.100.7', null]]);
  await c2.stop();
});

test('a status write that conflicts is re-read and retried; other errors back off and retry', async () => {
  const api = cluster();
  api.apply(VIRTUAL_SERVERS, serviceVs('web', 'web'));
  api.failNext('patchStatus', new KubeApiError('patch', 409, 'conflict', { reason: 'Conflict' }), 'virtualservers');
  api.failNext('patchStatus', new KubeApiError('patch', 500, 'etcd timeout'), 'virtualservers');
  const c = start(api);
  await until(() => cond(api, 'web', 'Ready')?.status === 'True', 'ready despite failures');
  await quiesce(c);
  assert.is(c.statusWrites.get('default/web'), 1);
  assert.ok(api.count('get', 'virtualservers') >= 1, 're-read after 409');
  const text = await c.metrics.registry.getSingleMetricAsString('lvs_operator_reconciles_total');
  assert.match(text, /result="error"\} 1/);
  await c.stop();
});

test('a node label change marks only VirtualServers whose directors change; heartbeats mark nothing', async () => {
  const api = cluster();
  const sel = { directors: { nodeSelector: { 'lvs.dev/director': 'true' } } };
  api.apply(VIRTUAL_SERVERS, staticVs('selective', ['198.51.100.7'], '203.0.113.30', sel));
  const c = start(api);
  await until(() => stored(api, 'selective').status?.directors?.length === 1, 'one director');
  await quiesce(c);
  const runs = () => c.metrics.registry.getSingleMetricAsString('lvs_operator_reconciles_total');
  const before = await runs();
  const hb = node('node-b', {}, '192.0.2.2');
  hb.status!.conditions = [{ type: 'Ready', status: 'False' }];
  api.apply(NODES, hb);
  await quiesce(c);
  assert.is(await runs(), before, 'a condition-only node update reconciles nothing');
  api.apply(NODES, node('node-b', { 'lvs.dev/director': 'true' }, '192.0.2.2'));
  await until(() => stored(api, 'selective').status?.directors?.length === 2, 'node-b became a director');
  assert.equal(stored(api, 'selective').status!.directors, ['node-a', 'node-b']);
  await c.stop();
});

test('watch history compacted while disconnected: relist catches up, including deletions', async () => {
  const api = cluster();
  api.apply(VIRTUAL_SERVERS, serviceVs('web', 'web'));
  const c = start(api);
  await until(() => cond(api, 'web', 'Ready')?.status === 'True', 'ready');
  await quiesce(c);
  api.failNext('watch', new KubeApiError('watch', 503, 'apiserver restarting'), 'endpointslices');
  api.closeWatches();
  api.remove(ENDPOINT_SLICES, 'default', 'web-1');
  api.compact();
  await until(() => cond(api, 'web', 'Ready')?.reason === 'NoReadyEndpoints', 'deletion seen through relist', 5000);
  assert.is(stored(api, 'web').status!.realServerCount, 0);
  await quiesce(c);
  assert.equal(planOf(api, 'web').services.map((x) => x.realServers.length), [0], 'the published plan follows');
  await c.stop();
});

test('statusWrites is bounded by the VirtualServers that exist: a deleted one is pruned', async () => {
  const api = cluster();
  for (let i = 0; i < 5; i++) api.apply(VIRTUAL_SERVERS, serviceVs(`web-${i}`, 'web'));
  const c = start(api);
  try {
    await until(() => c.statusWrites.size === 5, 'five written');
    for (let i = 0; i < 5; i++) api.remove(VIRTUAL_SERVERS, 'default', `web-${i}`);
    await until(() => c.virtualServers.size === 0, 'deletes seen');
    await quiesce(c);
    assert.is(c.statusWrites.size, 0);
  } finally {
    await c.stop();
  }
});

/**
 * The in-memory API with `methods` slowed as an API server under load: a call for which `delay`
 * gives a number first runs `before` (which may change the cluster), then waits that long, is
 * recorded in `calls` as "method plural name", and goes on; undefined: straight through.
 */
function slowed(api: FakeKubeApi, methods: string[], delay: () => number | undefined, before?: (what: string) => void): { api: FakeKubeApi; calls: string[] } {
  const calls: string[] = [];
  const proxy = new Proxy(api, {
    get(target, prop, recv) {
      const v = Reflect.get(target, prop, recv) as unknown;
      if (typeof v !== 'function') return v;
      const fn = (v as (...a: unknown[]) => unknown).bind(target);
      if (!methods.includes(String(prop))) return fn;
      return async (...args: unknown[]) => {
        const ms = delay();
        if (ms === undefined) return fn(...args);
        const what = `${String(prop)} ${String((args[0] as { plural?: string }).plural)}`;
        before?.(what);
        await new Promise((r) => setTimeout(r, ms));
        const obj = args[2] as { metadata?: { name?: string } } | string | undefined;
        calls.push(`${what} ${typeof obj === 'string' ? obj : String(obj?.metadata?.name)}`);
        return fn(...args);
      };
    },
  });
  return { api: proxy, calls };
}

test('a slow reconcile is logged with where its time went (queue wait and steps); the queue wait is a histogram', async () => {
  const api = cluster();
  api.apply(VIRTUAL_SERVERS, serviceVs('web', 'web'));
  // The status write takes 60 ms: an API server under load.
  const { api: slowApi } = slowed(api, ['patchStatus'], () => 60);
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (l: string) => { lines.push(JSON.parse(l) as Record<string, unknown>); } });
  const c = new Controller({ api: slowApi, identity: 'c1', leaderElection: false, logger, slowReconcileMs: 50, retryBackoff: { baseMs: 5, maxMs: 50 }, informerBackoff: { baseMs: 5, maxMs: 50 } });
  void c.start();
  await until(() => cond(api, 'web', 'Ready')?.status === 'True', 'ready');
  await quiesce(c);
  const slow = lines.filter((l) => l.msg === 'slow reconcile' && l.vs === 'default/web');
  assert.ok(slow.length >= 1, JSON.stringify(lines.map((l) => l.msg)));
  const steps = slow[0]!.steps as Record<string, number>;
  assert.ok(steps.status! >= 50, `the status write's time is charged to it: ${JSON.stringify(slow[0])}`);
  assert.ok(typeof steps.resolve === 'number' && steps.resolve < 50, JSON.stringify(steps));
  assert.ok(typeof slow[0]!.queuedMs === 'number');
  const text = await c.metrics.registry.getSingleMetricAsString('lvs_operator_queue_wait_seconds');
  assert.match(text, /lvs_operator_queue_wait_seconds_count [1-9]/);
  await c.stop();
});

test('a change marked while the plan is written is published before the status write; the status follows', async () => {
  const api = cluster();
  api.apply(VIRTUAL_SERVERS, serviceVs('web', 'web'));
  let changed = false;
  // A slow API server: every write takes 80 ms. During the first PlanSlice write the second
  // endpoint starts terminating (the event marks the key while its run is in flight).
  const { api: slowApi, calls } = slowed(api, ['create', 'replace', 'patchStatus'], () => 80, (what) => {
    if (what !== 'create planslices' || changed) return;
    changed = true;
    api.apply(ENDPOINT_SLICES, slice('web-1', 'web', [{ ip: '10.244.1.5', pod: 'web-1' }, { ip: '10.244.1.6', pod: 'web-2', node: 'node-b', ready: false, serving: true, terminating: true }]));
  });
  const c = new Controller({ api: slowApi, identity: 'c1', leaderElection: false, retryBackoff: { baseMs: 5, maxMs: 50 }, informerBackoff: { baseMs: 5, maxMs: 50 } });
  void c.start();
  await until(() => stored(api, 'web').status?.readyRealServers === 1, 'the status says one ready, one draining', 5000);
  await quiesce(c);
  const firstStatus = calls.findIndex((x) => x.startsWith('patchStatus virtualservers'));
  const replaced = calls.findIndex((x) => x.startsWith('replace planslices'));
  assert.ok(firstStatus > replaced && replaced > 0,
    `the Draining plan is written before any status write: ${calls.join(', ')}`);
  assert.equal(rsOf(api, 'web')[1]!.state, 'Draining');
  assert.equal(cond(api, 'web', 'Ready')?.status, 'True');
  await c.stop();
});

test('endpoints that change on every PlanSlice write still get the status written (bounded deferral)', async () => {
  const api = cluster();
  api.apply(VIRTUAL_SERVERS, serviceVs('web', 'web'));
  let writes = 0;
  const eps = (n: number) => slice('web-1', 'web', [{ ip: '10.244.1.5', pod: 'web-1' }, { ip: '10.244.1.6', pod: 'web-2', node: 'node-b', ready: n % 2 === 0 }]);
  // Each of the first 8 PlanSlice writes flips the second endpoint: the key is always marked again.
  const { api: slowApi, calls } = slowed(api, ['create', 'replace', 'patchStatus'], () => 30, (what) => {
    if (what.endsWith(' planslices') && ++writes <= 8) api.apply(ENDPOINT_SLICES, eps(writes));
  });
  const c = new Controller({ api: slowApi, identity: 'c1', leaderElection: false, retryBackoff: { baseMs: 5, maxMs: 50 }, informerBackoff: { baseMs: 5, maxMs: 50 } });
  void c.start();
  await until(() => writes >= 9, 'the flipping stopped', 5000);
  await quiesce(c);
  const sliceWrites = calls.map((x, i) => (/ planslices /.test(x) ? i : -1)).filter((i) => i >= 0);
  const firstStatus = calls.findIndex((x) => x.startsWith('patchStatus virtualservers'));
  assert.ok(firstStatus >= 0 && firstStatus < sliceWrites[7]!, `a status write came while the endpoints kept changing: ${calls.join(', ')}`);
  assert.equal(stored(api, 'web').status?.readyRealServers, 2, 'the status ends with the last state (the 8th flip: both ready)');
  await c.stop();
});

test('a wave of status refreshes (an agent reports every plan synced) does not hold an EndpointSlice change', async () => {
  const api = cluster();
  const N = 30;
  for (let i = 0; i < N; i++) {
    api.apply(SERVICES, service(`s${i}`));
    api.apply(ENDPOINT_SLICES, slice(`s${i}-1`, `s${i}`, [{ ip: `10.244.2.${i + 1}`, pod: `p${i}` }]));
    api.apply(VIRTUAL_SERVERS, serviceVs(`s${i}`, `s${i}`, `203.0.113.${100 + i}`));
  }
  let slow = false;
  const { api: slowApi, calls } = slowed(api, ['replace', 'patchStatus'], () => (slow ? 20 : undefined));
  const c = new Controller({ api: slowApi, identity: 'c1', leaderElection: false, workers: 1, retryBackoff: { baseMs: 5, maxMs: 50 }, informerBackoff: { baseMs: 5, maxMs: 50 } });
  void c.start();
  await until(() => api.all(PLAN_SLICES).length === N && c.idle(), 'every plan published', 5000);
  await quiesce(c);
  slow = true;
  // The director reports every plan synced: each VirtualServer's Programmed condition changes (a
  // status write of 20 ms each); right after, one pod of the last VirtualServer starts terminating.
  const rvs = api.all<KubeObject>(PLAN_SLICES).map((x) => BigInt(x.metadata.resourceVersion!));
  const top = rvs.reduce((a, b) => (a > b ? a : b)).toString();
  api.apply(AGENT_REPORTS, buildAgentReport('node-a', { syncedResourceVersion: top, nodeErrors: [], failing: [], frozen: [], prepared: [] }) as unknown as KubeObject);
  await until(() => calls.length > 0, 'the status wave started');
  api.apply(ENDPOINT_SLICES, slice(`s${N - 1}-1`, `s${N - 1}`, [{ ip: `10.244.2.${N}`, pod: `p${N - 1}`, ready: false, serving: true, terminating: true }]));
  await until(() => calls.some((x) => x.startsWith('replace planslices')), 'the change published', 5000);
  const at = calls.findIndex((x) => x.startsWith('replace planslices'));
  const statusBefore = calls.slice(0, at).filter((x) => x.startsWith('patchStatus virtualservers')).length;
  assert.ok(statusBefore <= 3, `the Draining plan waited for ${statusBefore} status writes: ${calls.slice(0, at + 1).join(', ')}`);
  await quiesce(c);
  assert.ok(calls.filter((x) => x.startsWith('patchStatus virtualservers')).length >= N - 1, 'the wave was written after it');
  await c.stop();
});

test('the echo of a status write that records claims does not mark the VIP neighbours as changes', async () => {
  const api = cluster();
  const N = 20;
  const at = (i: number) => staticVs(`p${i}`, ['10.1.0.1'], '203.0.113.70', { ports: [{ name: 'http', port: 8000 + i, protocol: 'TCP', targetPort: 8080 }] });
  for (let i = 0; i < N - 1; i++) api.apply(VIRTUAL_SERVERS, at(i));
  const c = start(api);
  await until(() => api.all(PLAN_SLICES).length === N - 1, 'every plan published', 5000);
  await quiesce(c);
  const runs = async () => [...(await c.metrics.registry.getSingleMetricAsString('lvs_operator_reconciles_total')).matchAll(/result="[a-z]+"\} (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
  const before = await runs();
  // A new VirtualServer on the VIP marks its N - 1 neighbours (it may contest their ports). Its
  // status write then records its claim; the echo must not mark them all again.
  api.apply(VIRTUAL_SERVERS, at(N - 1));
  await until(() => stored(api, `p${N - 1}`).status?.claims?.length === 1, 'the claim recorded', 5000);
  await quiesce(c);
  assert.equal(stored(api, `p${N - 1}`).status?.claims?.map((x) => x.service), [`TCP/203.0.113.70:${8000 + N - 1}`]);
  const added = (await runs()) - before;
  assert.ok(added <= N + 3, `${added} reconciles after one VirtualServer joined ${N - 1} on its VIP`);
  await c.stop();
});

test.run();
