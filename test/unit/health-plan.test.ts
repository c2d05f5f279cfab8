// spec.healthCheck from the VirtualServer to the plan, through a PlanSlice to the agent, and back
// as the agent's report and the VirtualServer's status (pure parts). The CEL side is in
// test/invalid/health-check-*.yaml (unit tier in-process, apiserver tier on the real API server).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseAgentReport } from '../../api/agent-report.ts';
import { assemblePlan, parsePlanSlice, slicePlan } from '../../api/plan-slice.ts';
import { resolve } from '../../api/resolve/index.ts';
import { reportFor } from '../../dataplane/cluster/report.ts';
import type { VirtualServerObject } from '../../kube/types.ts';
import { healthStatus, healthTransitions } from '../../operator/health-status.ts';
import { Reports } from '../../operator/reports.ts';
import { node, virtualServer } from '../lib/fixtures.ts';
import { ownerPlan, service } from '../lib/plan-fixtures.ts';

const test = suite('health checks: plan, slice, report, status');
const statics = (healthCheck: unknown, extra: Record<string, unknown> = {}) =>
  virtualServer('db', { addresses: ['192.0.2.10'], ports: [{ name: 'pg', port: 5432 }], healthCheck, backends: { static: [{ address: '10.0.0.1' }, { address: '10.0.0.2', healthCheck: { port: 9187 } }] }, ...extra } as never);
const run = (vs: ReturnType<typeof statics>) => resolve({ virtualServers: [vs], services: [], endpointSlices: [], nodes: [node('n1', ['192.0.2.1'])], admission: { unrestricted: true } });

test('the resolver carries healthCheck with the CRD\'s defaults, and the override on its real server', () => {
  const plan = run(statics({ tcp: {} }));
  assert.equal(plan.services[0]!.healthCheck, { type: 'tcp', intervalSeconds: 2, timeoutSeconds: 1, failureThreshold: 3, successThreshold: 1, onFailure: 'Quiesce' });
  assert.equal(plan.services[0]!.realServers.map((r) => r.check), [undefined, { port: 9187 }]);
  const http = run(statics({ https: { expectedStatuses: [204, 200, 204] }, onFailure: 'Remove', intervalSeconds: 5, timeoutSeconds: 2 }));
  assert.equal(http.services[0]!.healthCheck, { type: 'https', path: '/', statuses: [200, 204], intervalSeconds: 5, timeoutSeconds: 2, failureThreshold: 3, successThreshold: 1, onFailure: 'Remove' });
});

test('what the CRD would refuse is InvalidSpec naming the field (stored objects written around the CRD)', () => {
  const reasons = (hc: unknown, extra: Record<string, unknown> = {}) => run(statics(hc, extra)).virtualServers.get('default/db')!.reasons.map((r) => `${r.field}: ${r.message}`);
  assert.equal(reasons({ tcp: {}, http: {} }), ['spec.healthCheck: healthCheck needs exactly one of tcp, http or https']);
  assert.equal(reasons({ tcp: {}, timeoutSeconds: 5 }), ['spec.healthCheck.timeoutSeconds: healthCheck.timeoutSeconds must not exceed healthCheck.intervalSeconds']);
  assert.equal(reasons({ http: { path: 'x y' } }), ['spec.healthCheck.http.path: path must start with / and hold only printable ASCII without spaces (at most 1024 characters)']);
  assert.equal(reasons(undefined), ['spec.backends.static[1].healthCheck: backends.static[].healthCheck overrides spec.healthCheck, which is not set']);
  assert.equal(run(statics({ tcp: {} })).virtualServers.get('default/db')!.reasons, []);
});

test('a PlanSlice carries it to the agent; a field the agent does not know is an error naming it', () => {
  const hc = { type: 'http' as const, path: '/healthz', statuses: [200], intervalSeconds: 2, timeoutSeconds: 1, failureThreshold: 3, successThreshold: 2, onFailure: 'Quiesce' as const };
  const plan = ownerPlan('db', [service({ healthCheck: hc, realServers: [{ address: '10.0.0.1', port: 80, weight: 1, state: 'Ready', check: { port: 81 } }] })]);
  const slices = slicePlan(plan).map((s) => JSON.parse(JSON.stringify(s)));
  const parsed = slices.map((s) => parsePlanSlice(s));
  assert.ok(parsed.every((p) => p.ok));
  const back = assemblePlan(parsed.map((p) => (p.ok ? p.value : undefined)!));
  assert.ok(back.ok && back.value.services[0]!.healthCheck?.path === '/healthz' && back.value.services[0]!.realServers[0]!.check?.port === 81);
  slices[0].services[0].healthCheck.grpc = {};
  const bad = parsePlanSlice(slices[0]);
  assert.equal(bad.ok ? '' : bad.field, 'services[0].healthCheck.grpc');
  assert.match(bad.ok ? '' : bad.message, /unknown field \(written by a newer version\?\)/);
});

test('report: down real servers by owner uid, one entry per (uid, address, port), sorted and counted; read back by the controller', () => {
  const owner = { uid: 'uid-db', virtualServer: 'default/db' };
  const keyOwners = new Map([['TCP/192.0.2.10:5432', owner], ['TCP/192.0.2.11:5432', owner]]);
  const down = (serviceKey: string, address: string) => ({ up: false, serviceKey, virtualServer: 'default/db', address, port: 5432, message: 'connection refused', since: Date.parse('2026-12-04T03:00:00.123Z') });
  const r = reportFor('n1', {
    syncedResourceVersion: '5', sync: { kind: 'ok', ops: 0, draining: 0, problems: [] }, keyOwners, frozen: [], prepared: [], prepErrors: [], addressOwners: new Map(),
    health: { checked: 2, down: [down('TCP/192.0.2.10:5432', '10.0.0.2'), down('TCP/192.0.2.11:5432', '10.0.0.2'), down('TCP/192.0.2.10:5432', '10.0.0.1')] },
  });
  assert.equal(r.health, {
    checked: 2, unhealthyCount: 2,
    unhealthy: [
      { uid: 'uid-db', virtualServer: 'default/db', address: '10.0.0.1', port: 5432, message: 'connection refused', since: '2026-12-04T03:00:00Z' },
      { uid: 'uid-db', virtualServer: 'default/db', address: '10.0.0.2', port: 5432, message: 'connection refused', since: '2026-12-04T03:00:00Z' },
    ],
  });
  const parsed = parseAgentReport(JSON.parse(JSON.stringify(r)));
  assert.ok(parsed.ok && parsed.value.health?.unhealthy.length === 2);
});

test('status: down per director from the reports, bounded; transitions become Events (down, and up only from a complete list)', () => {
  const reports = new Reports();
  const report = (node: string, addresses: string[]) => ({
    apiVersion: 'lvs.dev/v1alpha1', kind: 'AgentReport' as const, metadata: { name: node }, node, syncedResourceVersion: '1', nodeErrors: [], failing: [], failingCount: 0, frozen: [], frozenCount: 0, prepared: [],
    health: { checked: 3, unhealthyCount: addresses.length, unhealthy: addresses.map((address) => ({ uid: 'uid-db', virtualServer: 'default/db', address, port: 5432, message: 'status 500', since: '2026-12-04T03:00:00Z' })) },
  });
  const change = reports.set('n2', report('n2', ['10.0.0.2']));
  assert.equal([...change.uids.keys()], ['uid-db'], 'a health change marks the VirtualServer');
  reports.set('n1', report('n1', ['10.0.0.2', '10.0.0.1']));
  const vs = { metadata: { name: 'db', namespace: 'default', uid: 'uid-db' }, spec: { healthCheck: { tcp: {} } } } as unknown as VirtualServerObject;
  const st = healthStatus(vs, reports)!;
  assert.equal(st.down, 3);
  assert.equal(st.unhealthy.map((e) => `${e.node} ${e.address}`), ['n1 10.0.0.1', 'n1 10.0.0.2', 'n2 10.0.0.2']);
  assert.is(healthStatus({ ...vs, spec: {} } as VirtualServerObject, reports), undefined, 'no healthCheck, no health status');
  reports.set('n1', report('n1', ['10.0.0.1']));
  const t = healthTransitions(st, healthStatus(vs, reports));
  assert.equal(t, { down: [], up: [st.unhealthy[1]!] });
  const many = { down: 20, unhealthy: st.unhealthy.slice(0, 1) };
  assert.equal(healthTransitions(st, many).up, [], 'a truncated list does not say who came back');
});

test.run();
