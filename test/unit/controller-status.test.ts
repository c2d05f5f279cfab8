// Status from a resolution: conditions (type, status, reason), lastTransitionTime kept unless
// the status changes, the diff that decides whether to write (and the patch that removes what we
// no longer set), which changes make Events, and that the status stays small whatever the plan.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Reason, VirtualServerResolution } from '../../api/plan.ts';
import type { Condition, VirtualServerObject } from '../../kube/types.ts';
import type { ConditionValue, ProgrammedSummary } from '../../operator/programmed.ts';
import type { Publication } from '../../operator/publish.ts';
import { computeStatus, desiredConditions, eventTransitions, MAX_STATUS_DIRECTORS, statusPatch, statusUpToDate, withTransitions } from '../../operator/status.ts';

const test = suite('controller: status');
const T0 = Date.parse('2025-03-01T10:00:00Z');

function resolution(reasons: Reason[] = [], ready = 2, draining = 0): VirtualServerResolution {
  const rs = [];
  for (let i = 0; i < ready; i++) rs.push({ portName: 'http', address: `10.0.0.${i + 1}`, port: 8080, weight: 1, state: 'Ready' as const });
  for (let i = 0; i < draining; i++) rs.push({ portName: 'http', address: `10.0.1.${i + 1}`, port: 8080, weight: 0, state: 'Draining' as const });
  return { ref: { namespace: 'ns', name: 'vs', generation: 3 }, services: ['TCP/203.0.113.1:80'], realServers: rs, directors: ['node-a'], reasons };
}

const AWAITING: ConditionValue = { type: 'Programmed', status: 'Unknown', reason: 'AwaitingAgents', message: 'waiting for 1 of 1 director(s) to program plan abc: node-a' };
const summary = (condition = AWAITING, nodes: ProgrammedSummary['nodes'] = [{ name: 'node-a', state: 'Waiting', message: 'no AgentReport from this node yet' }]): ProgrammedSummary => ({ condition, nodes, programmedNodes: 0 });
const PUB: Publication = { revision: 'abc', slices: 1, generation: 3, directors: ['node-a'], services: 1, resourceVersion: '10' };
const conditions = (res: VirtualServerResolution) => desiredConditions(res, AWAITING);

const byType = (cs: Array<{ type: string; status: string; reason: string }>) => Object.fromEntries(cs.map((c) => [c.type, `${c.status}/${c.reason}`]));

test('a clean resolution: Ready, no conflict, valid, backends resolved; Programmed as judged from the reports', () => {
  assert.equal(byType(conditions(resolution())), {
    Ready: 'True/Resolved', Programmed: 'Unknown/AwaitingAgents', Conflict: 'False/NoConflict', InvalidSpec: 'False/Valid', BackendsResolved: 'True/Resolved',
  });
});

test('each kind of reason lands on the right conditions', () => {
  const cases: Array<[Reason[], Record<string, string>]> = [
    [[{ type: 'InvalidSpec', field: 'spec.ports[0].port', message: 'out of range' }],
      { Ready: 'False/InvalidSpec', InvalidSpec: 'True/InvalidSpec', BackendsResolved: 'False/InvalidSpec', Conflict: 'False/NoConflict' }],
    [[{ type: 'Conflict', field: 'spec.addresses[0]', message: 'claimed' }],
      { Ready: 'False/Conflict', Conflict: 'True/AddressInUse', BackendsResolved: 'True/Resolved' }],
    [[{ type: 'ServiceNotFound', field: 'spec.backends.service.name', message: 'Service ns/web not found' }],
      { Ready: 'False/ServiceNotFound', BackendsResolved: 'False/ServiceNotFound' }],
    [[{ type: 'ServicePortNotFound', message: 'no port' }], { Ready: 'False/ServicePortNotFound', BackendsResolved: 'False/ServicePortNotFound' }],
    [[{ type: 'NoReadyEndpoints', field: 'spec.backends', message: 'none ready' }], { Ready: 'False/NoReadyEndpoints', BackendsResolved: 'True/Resolved' }],
    [[{ type: 'NoDirectors', field: 'spec.directors.nodeSelector', message: 'no node' }], { Ready: 'False/NoDirectors', BackendsResolved: 'True/Resolved' }],
    // Some endpoints excluded but others serve: still Ready, and BackendsResolved says what was dropped.
    [[{ type: 'PortRemapNotSupported', field: 'spec.ports[0]', message: 'excluded' }], { Ready: 'True/Resolved', BackendsResolved: 'False/PortRemapNotSupported' }],
    [[{ type: 'AddressFamilyMismatch', message: 'v6 backend' }], { Ready: 'True/Resolved', BackendsResolved: 'False/AddressFamilyMismatch' }],
    // The most fundamental problem names Ready's reason.
    [[{ type: 'NoReadyEndpoints', message: 'a' }, { type: 'Conflict', message: 'b' }], { Ready: 'False/Conflict' }],
  ];
  for (const [reasons, want] of cases) {
    const got = byType(conditions(resolution(reasons)));
    for (const [type, v] of Object.entries(want)) assert.is(got[type], v, `${reasons.map((r) => r.type).join('+')}: ${type}`);
  }
  const msg = conditions(resolution([{ type: 'ServiceNotFound', field: 'spec.backends.service.name', message: 'Service ns/web not found' }]))[0]!.message;
  assert.is(msg, 'spec.backends.service.name: Service ns/web not found', 'messages name the field');
});

test('lastTransitionTime changes only with the status of its condition', () => {
  const first = withTransitions(conditions(resolution()), undefined, 3, T0);
  assert.ok(first.every((c) => c.lastTransitionTime === '2025-03-01T10:00:00Z' && c.observedGeneration === 3));
  const later = withTransitions(conditions(resolution([], 1)), first, 4, T0 + 60_000);
  const ready = later.find((c) => c.type === 'Ready')!;
  assert.is(ready.lastTransitionTime, '2025-03-01T10:00:00Z', 'message changed, status did not');
  assert.is(ready.observedGeneration, 4);
  const broken = withTransitions(conditions(resolution([{ type: 'NoReadyEndpoints', message: 'x' }], 0)), later, 4, T0 + 120_000);
  assert.is(broken.find((c) => c.type === 'Ready')!.lastTransitionTime, '2025-03-01T10:02:00Z');
  assert.is(broken.find((c) => c.type === 'Conflict')!.lastTransitionTime, '2025-03-01T10:00:00Z');
});

test('computeStatus: generation, counts, directors and plan from the publication, node summary from Programmed', () => {
  const vs: VirtualServerObject = { metadata: { name: 'vs', namespace: 'ns', generation: 3 } };
  const res = resolution([], 2, 1);
  res.realServers.push({ portName: 'https', address: '10.0.0.1', port: 8443, weight: 1, state: 'Ready', node: 'node-a', pod: { namespace: 'ns', name: 'p1' } });
  const st = computeStatus(vs, res, PUB, summary(), T0);
  assert.equal({ ...st, conditions: undefined }, {
    observedGeneration: 3, conditions: undefined, services: ['TCP/203.0.113.1:80'], claims: [{ service: 'TCP/203.0.113.1:80', since: '2025-03-01T10:00:00Z' }],
    readyRealServers: 2, realServerCount: 3, directors: ['node-a'], directorCount: 1, plan: { revision: 'abc', slices: 1, generation: 3 },
    unprogrammedNodes: [{ name: 'node-a', state: 'Waiting', message: 'no AgentReport from this node yet' }], programmedNodes: 0,
  });
  assert.equal(st.conditions!.find((c) => c.type === 'Programmed')!.reason, 'AwaitingAgents', 'Programmed as judged');
  // A key held before keeps its time; an invalid spec keeps what it held.
  const held = { ...vs, status: { claims: [{ service: 'TCP/203.0.113.1:80', since: '2024-01-01T00:00:00Z' }, { service: 'TCP/203.0.113.1:81', since: '2024-01-01T00:00:00Z' }] } };
  assert.equal(computeStatus(held, res, PUB, summary(), T0).claims, [{ service: 'TCP/203.0.113.1:80', since: '2024-01-01T00:00:00Z' }]);
  const invalid = resolution([{ type: 'InvalidSpec', message: 'x' }], 0);
  assert.equal(computeStatus(held, { ...invalid, services: [] }, PUB, summary(), T0).claims, held.status.claims);
  // Nothing published (an invalid spec that never was valid): no plan, directors from the resolution.
  const bare = computeStatus(vs, res, undefined, summary(), T0);
  assert.is(bare.plan, undefined);
  assert.equal(bare.directors, ['node-a']);
});

test('the status stays small: 10,000 real servers and 5,000 directors give counts and bounded lists', () => {
  const vs: VirtualServerObject = { metadata: { name: 'vs', namespace: 'ns', generation: 3 } };
  const res = resolution([], 10_000);
  res.directors = Array.from({ length: 5000 }, (_, i) => `node-${String(i).padStart(4, '0')}`);
  const pub = { ...PUB, directors: res.directors, slices: 21 };
  const nodes = res.directors.slice(0, 32).map((name) => ({ name, state: 'Waiting' as const, message: 'has not synced this plan yet' }));
  const st = computeStatus(vs, res, pub, { condition: AWAITING, nodes, programmedNodes: 4968 }, T0);
  assert.is(st.directors!.length, MAX_STATUS_DIRECTORS);
  assert.is(st.directorCount, 5000);
  assert.is(st.readyRealServers, 10_000);
  assert.ok(JSON.stringify(st).length < 16 * 1024, `status is ${JSON.stringify(st).length} bytes`);
});

test('statusUpToDate: equal regardless of key order, different on any owned field; foreign fields ignored; legacy fields removed', () => {
  const vs: VirtualServerObject = { metadata: { name: 'vs', namespace: 'ns', generation: 3 } };
  const desired = computeStatus(vs, resolution(), PUB, summary(), T0);
  const reordered = JSON.parse(JSON.stringify({ ...Object.fromEntries(Object.entries(desired).reverse()), conditions: desired.conditions!.map((c) => Object.fromEntries(Object.entries(c).reverse())), agents: { x: 1 } }));
  assert.ok(statusUpToDate(reordered, desired));
  assert.not.ok(statusUpToDate(undefined, desired));
  assert.not.ok(statusUpToDate({ ...reordered, observedGeneration: 2 }, desired));
  assert.not.ok(statusUpToDate({ ...reordered, programmedNodes: 1 }, desired));
  assert.not.ok(statusUpToDate({ ...reordered, plan: { ...reordered.plan, revision: 'def' } }, desired));
  // Recomputing later from the stored status yields the same status: no write.
  const again = computeStatus({ ...vs, status: desired }, resolution(), PUB, summary(), T0 + 3_600_000);
  assert.ok(statusUpToDate(desired, again));
  // A status of an earlier version (real servers, agents' entries) is rewritten without them.
  const legacy = { ...reordered, realServers: [{ port: 'http', address: '10.0.0.1', targetPort: 8080, weight: 1, state: 'Ready' as const }] };
  assert.not.ok(statusUpToDate(legacy, desired));
  const patch = statusPatch(legacy, desired);
  assert.is(patch.realServers, null);
  assert.not.ok('nodes' in patch);
  // A plan no longer published is removed, not left behind.
  const unpublished = computeStatus(vs, resolution(), undefined, summary(), T0);
  assert.not.ok(statusUpToDate(desired, unpublished));
  assert.is(statusPatch(desired, unpublished).plan, null);
});

test('events: Warnings for problems, Normal for recoveries and Ready, nothing for healthy first values', () => {
  const at = (reasons: Reason[], prev?: Condition[]) => withTransitions(conditions(resolution(reasons)), prev, 1, T0);
  const healthy = at([]);
  assert.equal(eventTransitions(undefined, healthy).map((t) => `${t.eventType} ${t.type}=${t.to.status}`), ['Normal Ready=True']);
  const conflict = at([{ type: 'Conflict', message: 'x' }], healthy);
  assert.equal(eventTransitions(healthy, conflict).map((t) => `${t.eventType} ${t.type}=${t.to.status}`), ['Warning Ready=False', 'Warning Conflict=True']);
  assert.equal(eventTransitions(conflict, conflict), [], 'no transition, no event');
  assert.equal(eventTransitions(conflict, at([], conflict)).map((t) => `${t.eventType} ${t.type}=${t.to.status}`), ['Normal Ready=True', 'Normal Conflict=False']);
  const invalidAtBirth = at([{ type: 'InvalidSpec', message: 'bad' }]);
  assert.equal(eventTransitions(undefined, invalidAtBirth).map((t) => `${t.eventType} ${t.type}`), ['Warning InvalidSpec', 'Warning BackendsResolved']);
});

test.run();
