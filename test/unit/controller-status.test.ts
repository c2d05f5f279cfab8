// Status from a resolution: conditions (type, status, reason), lastTransitionTime kept unless
// the status changes, the diff that decides whether to write, and which changes make Events.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Reason, VirtualServerResolution } from '../../api/plan.ts';
import type { Condition, NodeReport, VirtualServerObject } from '../../kube/types.ts';
import { computeStatus, desiredConditions, eventTransitions, MAX_STATUS_REAL_SERVERS, programmedCondition, statusUpToDate, withTransitions } from '../../operator/status.ts';

const test = suite('controller: status');
const T0 = Date.parse('2025-03-01T10:00:00Z');

function resolution(reasons: Reason[] = [], ready = 2, draining = 0): VirtualServerResolution {
  const rs = [];
  for (let i = 0; i < ready; i++) rs.push({ portName: 'http', address: `10.0.0.${i + 1}`, port: 8080, weight: 1, state: 'Ready' as const });
  for (let i = 0; i < draining; i++) rs.push({ portName: 'http', address: `10.0.1.${i + 1}`, port: 8080, weight: 0, state: 'Draining' as const });
  return { ref: { namespace: 'ns', name: 'vs', generation: 3 }, services: ['TCP/203.0.113.1:80'], realServers: rs, directors: ['node-a'], reasons };
}

const byType = (cs: Array<{ type: string; status: string; reason: string }>) => Object.fromEntries(cs.map((c) => [c.type, `${c.status}/${c.reason}`]));

test('a clean resolution: Ready, no conflict, valid, backends resolved, Programmed awaiting agents', () => {
  assert.equal(byType(desiredConditions(resolution())), {
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
    const got = byType(desiredConditions(resolution(reasons)));
    for (const [type, v] of Object.entries(want)) assert.is(got[type], v, `${reasons.map((r) => r.type).join('+')}: ${type}`);
  }
  const msg = desiredConditions(resolution([{ type: 'ServiceNotFound', field: 'spec.backends.service.name', message: 'Service ns/web not found' }]))[0]!.message;
  assert.is(msg, 'spec.backends.service.name: Service ns/web not found', 'messages name the field');
});

test('lastTransitionTime changes only with the status of its condition', () => {
  const first = withTransitions(desiredConditions(resolution()), undefined, 3, T0);
  assert.ok(first.every((c) => c.lastTransitionTime === '2025-03-01T10:00:00Z' && c.observedGeneration === 3));
  const later = withTransitions(desiredConditions(resolution([], 1)), first, 4, T0 + 60_000);
  const ready = later.find((c) => c.type === 'Ready')!;
  assert.is(ready.lastTransitionTime, '2025-03-01T10:00:00Z', 'message changed, status did not');
  assert.is(ready.observedGeneration, 4);
  const broken = withTransitions(desiredConditions(resolution([{ type: 'NoReadyEndpoints', message: 'x' }], 0)), later, 4, T0 + 120_000);
  assert.is(broken.find((c) => c.type === 'Ready')!.lastTransitionTime, '2025-03-01T10:02:00Z');
  assert.is(broken.find((c) => c.type === 'Conflict')!.lastTransitionTime, '2025-03-01T10:00:00Z');
});

test('computeStatus: generation, directors, real servers, distinct ready addresses', () => {
  const vs: VirtualServerObject = { metadata: { name: 'vs', namespace: 'ns', generation: 3 } };
  const res = resolution([], 2, 1);
  res.realServers.push({ portName: 'https', address: '10.0.0.1', port: 8443, weight: 1, state: 'Ready', node: 'node-a', pod: { namespace: 'ns', name: 'p1' } });
  const st = computeStatus(vs, res, T0);
  assert.is(st.observedGeneration, 3);
  assert.equal(st.directors, ['node-a']);
  assert.is(st.readyRealServers, 2, 'a pod on two ports counts once');
  assert.equal(st.realServers![3], { port: 'https', address: '10.0.0.1', targetPort: 8443, weight: 1, state: 'Ready', node: 'node-a', pod: { namespace: 'ns', name: 'p1' } });
  assert.equal(st.realServers![2], { port: 'http', address: '10.0.1.1', targetPort: 8080, weight: 0, state: 'Draining' });
  const huge = resolution([], MAX_STATUS_REAL_SERVERS + 5);
  assert.is(computeStatus(vs, huge, T0).realServers!.length, MAX_STATUS_REAL_SERVERS, 'stays within the CRD bound');
});

test('statusUpToDate: equal regardless of key order, different on any owned field; foreign fields ignored', () => {
  const vs: VirtualServerObject = { metadata: { name: 'vs', namespace: 'ns', generation: 3 } };
  const desired = computeStatus(vs, resolution(), T0);
  const reordered = JSON.parse(JSON.stringify({ readyRealServers: desired.readyRealServers, realServers: desired.realServers, directors: desired.directors, services: desired.services, conditions: desired.conditions!.map((c) => Object.fromEntries(Object.entries(c).reverse())), observedGeneration: 3, agents: { x: 1 } }));
  assert.ok(statusUpToDate(reordered, desired));
  assert.not.ok(statusUpToDate(undefined, desired));
  assert.not.ok(statusUpToDate({ ...reordered, observedGeneration: 2 }, desired));
  const moved = structuredClone(reordered);
  moved.realServers[0].weight = 0;
  assert.not.ok(statusUpToDate(moved, desired));
  // Recomputing later from the stored status yields the same status: no write.
  const again = computeStatus({ ...vs, status: desired }, resolution(), T0 + 3_600_000);
  assert.ok(statusUpToDate(desired, again));
});

test('Programmed follows the directors\' own reports in status.nodes', () => {
  const res = resolution([], 1, 1);
  res.directors = ['node-a', 'node-b'];
  res.services = ['TCP/203.0.113.10:80'];
  const prog = (nodes: NodeReport[] | undefined, gen = 4) => programmedCondition(res, nodes, gen);
  assert.equal([prog(undefined).status, prog(undefined).reason], ['Unknown', 'AwaitingAgents']);
  const a = { name: 'node-a', observedGeneration: 4, director: true, programmed: true };
  const b = { name: 'node-b', observedGeneration: 4, director: true, programmed: true };
  assert.match(prog([a]).message, /node-b/, 'names the director still to report');
  assert.is(prog([a, { ...b, observedGeneration: 3 }]).status, 'Unknown', 'a report of an older generation does not count');
  assert.equal([prog([a, b]).status, prog([a, b]).reason], ['True', 'Programmed']);
  const failed = prog([a, { ...b, programmed: false, message: 'add destination: EINVAL' }]);
  assert.equal([failed.status, failed.reason], ['False', 'ProgrammingFailed']);
  assert.match(failed.message, /node-b: add destination: EINVAL/);
  assert.is(prog([a, b, { name: 'node-c', observedGeneration: 1, programmed: false }]).status, 'True', 'non-directors do not matter');
  const none = { ...res, directors: [] };
  assert.is(programmedCondition(none, [a], 4).status, 'False');
  // computeStatus reads the reports from the stored object and records the services won.
  const vs: VirtualServerObject = { metadata: { name: 'vs', namespace: 'ns', generation: 4 }, status: { nodes: [a, b] } };
  const st = computeStatus(vs, res, T0);
  assert.is(st.conditions!.find((c) => c.type === 'Programmed')!.status, 'True');
  assert.equal(st.services, ['TCP/203.0.113.10:80']);
});

test('Programmed=False names the node and the failing step of its report (kernel, lvs0, preparation)', () => {
  const res = resolution([], 1, 1);
  res.directors = ['n1'];
  res.services = ['TCP/203.0.113.10:80'];
  const n1 = { name: 'n1', observedGeneration: 4, director: true, programmed: false, message: 'kernel read-back failed: EPERM' };
  const c = programmedCondition(res, [n1], 4);
  assert.equal([c.status, c.reason, c.message], ['False', 'ProgrammingFailed', 'node n1: kernel read-back failed: EPERM']);
  assert.is(programmedCondition(res, [{ ...n1, observedGeneration: 3 }], 4).status, 'Unknown', 'a failure of an older generation is not this one\'s');
  // A real-server node that could not prepare its DR/TUN pods for this generation: not programmed.
  const ok = { ...n1, programmed: true, message: '' };
  const n2 = { name: 'n2', observedGeneration: 4, director: false, programmed: false, message: 'real-server preparation failed: pid 42: EPERM' };
  const p = programmedCondition(res, [ok, n2], 4);
  assert.equal([p.status, p.message], ['False', 'node n2: real-server preparation failed: pid 42: EPERM']);
  assert.is(programmedCondition(res, [ok, { ...n2, programmed: true, message: '' }], 4).status, 'True');
  // Through computeStatus, as the controller writes it.
  const vs: VirtualServerObject = { metadata: { name: 'vs', namespace: 'ns', generation: 4 }, status: { nodes: [n1] } };
  const cond = computeStatus(vs, res, T0).conditions!.find((x) => x.type === 'Programmed')!;
  assert.equal([cond.status, cond.message], ['False', 'node n1: kernel read-back failed: EPERM']);
});

test('events: Warnings for problems, Normal for recoveries and Ready, nothing for healthy first values', () => {
  const at = (reasons: Reason[], prev?: Condition[]) => withTransitions(desiredConditions(resolution(reasons)), prev, 1, T0);
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
