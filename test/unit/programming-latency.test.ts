// The network-programming latency and the sync metrics: the controller stamps a PlanSlice revision
// with when its change happened (operator/publish.ts), the agent measures from it to the end of
// the sync that programmed it (dataplane/cluster/programming-latency.ts), and /metrics shows that
// and every sync (dataplane/agent/metrics.ts).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CHANGE_TIME_ANNOTATION, OWNER_UID_LABEL, slicePlan, type OwnerPlan, type PlanSliceObject } from '../../api/plan-slice.ts';
import { createAgentMetrics } from '../../dataplane/agent/metrics.ts';
import { ProgrammingLatency } from '../../dataplane/cluster/programming-latency.ts';
import type { SyncResult } from '../../dataplane/sync/sync.ts';
import { changeTime, stampChangeTime, type SliceOp } from '../../operator/publish.ts';
import { PLAN_SLICES, type KubeObject } from '../../kube/types.ts';
import { harness, ownerPlan, service, VIP } from '../lib/cluster-fixtures.ts';

const iso = (ms: number) => new Date(ms).toISOString();
const meta = (name: string, changedAt: number | undefined, uid = 'u1') => ({
  name, labels: { [OWNER_UID_LABEL]: uid }, ...(changedAt !== undefined ? { annotations: { [CHANGE_TIME_ANNOTATION]: iso(changedAt) } } : {}),
});

const pure = suite('programming latency: bookkeeping');

pure('a revision is measured once, from its change to the end of the sync that read it', () => {
  const l = new ProgrammingLatency();
  l.seen(meta('a', 1_000));
  l.syncStarts(new Set());
  assert.equal(l.syncEnded(true, 1_750), [0.75]);
  l.syncStarts(new Set());
  assert.equal(l.syncEnded(true, 9_000), [], 'nothing new: nothing measured');
});

pure('a retry keeps it waiting: the next success counts from the change, not from the retry', () => {
  const l = new ProgrammingLatency();
  l.seen(meta('a', 1_000));
  l.syncStarts(new Set());
  assert.equal(l.syncEnded(false, 1_500), []);
  assert.is(l.waiting, 1);
  l.syncStarts(new Set());
  assert.equal(l.syncEnded(true, 4_000), [3]);
});

pure('revisions before a sync count once, from the earliest; one seen during a sync waits for the next', () => {
  const l = new ProgrammingLatency();
  l.seen(meta('a', 1_000));
  l.seen(meta('a', 1_200));
  l.syncStarts(new Set());
  l.seen(meta('a', 1_400));
  assert.equal(l.syncEnded(true, 2_000), [1]);
  l.syncStarts(new Set());
  assert.equal(l.syncEnded(true, 2_400), [1]);
});

pure('a frozen plan is not programmed: its slice waits; deleted slices and slices without the annotation are not measured', () => {
  const l = new ProgrammingLatency();
  l.seen(meta('a', 1_000, 'frozen-uid'));
  l.seen(meta('b', 1_000));
  l.seen(meta('c', undefined));
  l.seen({ name: 'd', annotations: { [CHANGE_TIME_ANNOTATION]: 'yesterday' } });
  l.syncStarts(new Set(['frozen-uid']));
  assert.equal(l.syncEnded(true, 3_000), [2]);
  assert.is(l.waiting, 1);
  l.deleted('a');
  assert.is(l.waiting, 0);
});

pure('a change time ahead of this clock (skew) counts as 0, not negative', () => {
  const l = new ProgrammingLatency();
  l.seen(meta('a', 5_000));
  l.syncStarts(new Set());
  assert.equal(l.syncEnded(true, 4_000), [0]);
});

pure.run();

const stamp = suite('programming latency: the controller\'s change time');

const stored = (changedAt?: number): PlanSliceObject => ({ ...slicePlan(ownerPlan('web', [service()]))[0]!, ...(changedAt !== undefined ? { metadata: { name: 's', annotations: { [CHANGE_TIME_ANNOTATION]: iso(changedAt) } } } : {}) });

stamp('the EndpointSlice trigger time when newer than the stored revision\'s, else now', () => {
  assert.is(changeTime(5_000, [], 9_000), 5_000, 'first revision: the trigger');
  assert.is(changeTime(5_000, [stored(4_000)], 9_000), 5_000, 'a Pod change after the last revision');
  assert.is(changeTime(5_000, [stored(6_000)], 9_000), 9_000, 'the Pod change was in the last revision already: something else changed now');
  assert.is(changeTime(undefined, [stored(6_000)], 9_000), 9_000, 'no EndpointSlice trigger: resolve time');
  assert.is(changeTime(12_000, [], 9_000), 9_000, 'a trigger ahead of this clock: resolve time');
  assert.is(changeTime(5_000, [], 9_000, 7_000), 9_000, 'a new VirtualServer over Pods that changed before it: resolve time');
  assert.is(changeTime(8_000, [], 9_000, 7_000), 8_000, 'Pods that changed after it was created: the trigger');
});

stamp('creates and replaces carry it; deletes do not; the content compared before writing is unchanged', () => {
  const [s] = slicePlan(ownerPlan('web', [service()]));
  const ops: SliceOp[] = [{ op: 'create', slice: s! }, { op: 'replace', slice: s! }, { op: 'delete', name: 'old' }];
  const out = stampChangeTime(ops, Date.UTC(2026, 11, 4, 22, 0, 0, 125));
  assert.equal(out.map((o) => (o.op === 'delete' ? 'delete' : o.slice.metadata.annotations?.[CHANGE_TIME_ANNOTATION])), ['2026-12-04T22:00:00.125Z', '2026-12-04T22:00:00.125Z', 'delete']);
  assert.is(s!.metadata.annotations, undefined, 'the desired slice itself is not modified');
});

stamp.run();

const agent = suite('programming latency: the cluster agent measures it and /metrics shows it');

function annotated(plan: OwnerPlan, changedAt: number): KubeObject[] {
  return slicePlan(plan).map((s) => ({ ...s, metadata: { ...s.metadata, annotations: { [CHANGE_TIME_ANNOTATION]: iso(changedAt) } } }) as unknown as KubeObject);
}

agent('change → kernel: measured when the sync that programmed it ends; a failing sync delays it; the first list is not measured', async () => {
  const h = harness('n1');
  const seen: number[] = [];
  const results: Array<[string, number]> = [];
  const metrics = { programmed: (s: readonly number[]) => seen.push(...s), synced: (r: SyncResult, sec: number) => results.push([r.kind, sec]) };
  const rs = (address: string) => [{ address, port: 8080, weight: 1, state: 'Ready' as const }];
  // Written long before this agent started (a restart): programmed, not measured.
  for (const s of annotated(ownerPlan('web', [service()]), h.clock.wallNow() - 3_600_000)) h.api.apply(PLAN_SLICES, s);
  await h.start({ metrics });
  try {
    assert.equal(h.view(), [`TCP/${VIP}:80 -> 10.244.1.5:8080 w=1`]);
    assert.equal(seen, [], 'the first list is not measured');
    assert.equal(results[0]?.[0], 'ok');
    for (const s of annotated(ownerPlan('web', [service({ realServers: rs('10.244.1.6') })], { generation: 2 }), h.clock.wallNow() - 400)) h.api.apply(PLAN_SLICES, s);
    await h.clock.advance(1_100);
    assert.equal(h.view(), [`TCP/${VIP}:80 -> 10.244.1.6:8080 w=1`]);
    assert.equal(seen.length, 1);
    assert.ok(seen[0]! >= 0.4 && seen[0]! < 1.6, `a change: ${seen[0]} s`);
    // The next revision meets a kernel that refuses: no measurement until the retry succeeds.
    h.kernel.fail('addDestination', 'ENOMEM', { times: 1 });
    const changedAt = h.clock.wallNow();
    for (const s of annotated(ownerPlan('web', [service({ realServers: rs('10.244.1.7') })], { generation: 3 }), changedAt)) h.api.apply(PLAN_SLICES, s);
    await h.clock.advance(500); // the retry comes after the 1 s backoff
    assert.ok(results.some(([k]) => k === 'retry'), `a retry: ${JSON.stringify(results)}`);
    assert.equal(seen.length, 1, 'not programmed yet: not measured');
    await h.clock.advance(5_000);
    assert.equal(h.view(), [`TCP/${VIP}:80 -> 10.244.1.7:8080 w=1`]);
    assert.equal(seen.length, 2);
    assert.ok(seen[1]! >= 1, `measured from the change, the retry's backoff included: ${seen[1]} s`);
    assert.ok(seen[1]! <= (h.clock.wallNow() - changedAt) / 1000, 'no later than now');
  } finally { await h.close(); }
});

agent('/metrics: sync duration by read-back, syncs by result, operations, errors, last success, programming histogram', async () => {
  const m = await createAgentMetrics();
  const base = { ops: 3, draining: 1, problems: [] };
  m.synced({ kind: 'ok', read: 'full', ...base } as SyncResult, 0.2, 1_700_000_000_000);
  m.synced({ kind: 'ok', read: 2, ...base, ops: 0 } as SyncResult, 0.004, 1_700_000_001_000);
  m.synced({ kind: 'retry', after: 1_000, errors: [{ op: 'addDestination', error: new Error('ENOMEM') }], read: 2, ...base } as SyncResult, 0.03, 1_700_000_002_000);
  m.synced({ kind: 'ok', read: 17, verified: 17, ...base, ops: 0 } as SyncResult, 0.02, 1_700_000_003_000);
  m.synced({ kind: 'ok', read: 18, verified: 17, ...base, ops: 0 } as SyncResult, 0.02, 1_700_000_004_000);
  m.synced({ kind: 'ok', read: 0, listed: 10_000, ...base, ops: 0 } as SyncResult, 0.4, 1_700_000_005_000);
  m.programmed([0.3, 1.5]);
  const body = await m.registry.metrics();
  for (const line of [
    'lvs_agent_sync_duration_seconds_count{read="full"} 1',
    'lvs_agent_sync_duration_seconds_bucket{le="0.005",read="partial"} 1',
    'lvs_agent_sync_duration_seconds_count{read="partial"} 3',
    'lvs_agent_syncs_total{read="verify",result="ok"} 1',
    'lvs_agent_syncs_total{read="full",result="ok"} 1',
    'lvs_agent_syncs_total{read="listing",result="ok"} 1',
    'lvs_agent_syncs_total{read="partial",result="retry"} 1',
    'lvs_agent_sync_operations_total 6',
    'lvs_agent_sync_errors_total{op="addDestination"} 1',
    'lvs_agent_last_successful_sync_timestamp_seconds 1700000005',
    'lvs_agent_draining_destinations 1',
    'lvs_agent_network_programming_duration_seconds_bucket{le="0.5"} 1',
    'lvs_agent_network_programming_duration_seconds_bucket{le="2"} 2',
    'lvs_agent_network_programming_duration_seconds_count 2',
  ]) assert.ok(body.includes(line), `${line} not in /metrics:\n${body.split('\n').filter((l) => l.startsWith('lvs_agent_s') || l.startsWith('lvs_agent_n') || l.startsWith('lvs_agent_l') || l.startsWith('lvs_agent_d')).join('\n')}`);
});

agent.run();
