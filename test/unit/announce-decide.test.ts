// VIPPool spec.announce from the pool to the plan, through a PlanSlice to the agent, and the
// agent's pure decision (dataplane/announce/decide.ts): a lone director announces; several
// directors announce only through an election; `none` never announces.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assemblePlan, parsePlanSlice, slicePlan } from '../../api/plan-slice.ts';
import { buildPools, type VIPPoolLike } from '../../api/pool.ts';
import { resolve } from '../../api/resolve/index.ts';
import { announcePolicy, announcedVips, shouldAnnounce } from '../../dataplane/announce/decide.ts';
import { node, virtualServer } from '../lib/fixtures.ts';
import { ownerPlan, service } from '../lib/plan-fixtures.ts';

const test = suite('announce: pool -> plan -> slice -> decision');

const pool = (spec: Partial<NonNullable<VIPPoolLike['spec']>>): VIPPoolLike => ({
  metadata: { name: 'p', creationTimestamp: '2024-01-01T00:00:00Z' },
  spec: { addresses: ['192.0.2.0/24'], allocation: { namespaces: ['default'] }, ...spec },
});
const nodes = [node('n1', ['10.0.0.1'], { dir: 'yes' }), node('n2', ['10.0.0.2'], { dir: 'yes' }), node('n3', ['10.0.0.3'])];
const vs = virtualServer('web', { addresses: ['192.0.2.10'], ports: [{ name: 'http', port: 80 }], forwarding: 'DR', backends: { static: [{ address: '192.0.2.50' }] } } as never);
const run = (p: VIPPoolLike) => resolve({
  virtualServers: [vs], services: [], endpointSlices: [], nodes,
  admission: { pools: [{ ...p, spec: { ...p.spec!, staticRealServers: ['192.0.2.0/24'] } }], namespaces: [], serviceCIDRs: [] },
});

test('pool: absent announce is the CRD default l2; none; l2 interfaces deduplicated and sorted, junk dropped', () => {
  assert.equal(buildPools([pool({})]).pools[0]!.announce, { mode: 'L2' });
  assert.equal(buildPools([pool({ announce: { none: {} } })]).pools[0]!.announce, { mode: 'None' });
  assert.equal(buildPools([pool({ announce: { l2: { interfaces: ['eth1', 'bond0', 'eth1', 'a/b', 7 as never] } } })]).pools[0]!.announce, { mode: 'L2', interfaces: ['bond0', 'eth1'] });
});

test('resolve: the plan service carries the pool\'s announce (l2 with its interfaces), nothing for none', () => {
  assert.equal(run(pool({ directors: { nodeSelector: { dir: 'yes' } } })).services.map((s) => [s.announce, s.directors]), [[{}, ['n1', 'n2']]]);
  assert.equal(run(pool({ announce: { l2: { interfaces: ['eth1'] } } })).services[0]!.announce, { interfaces: ['eth1'] });
  assert.is(run(pool({ announce: { none: {} } })).services[0]!.announce, undefined);
});

test('a PlanSlice carries announce to the agent; a bad device name is an error naming the field', () => {
  const slices = slicePlan(ownerPlan('web', [service({ announce: { interfaces: ['eth1'] } }), service({ key: 'TCP/192.0.2.11:80', vip: '192.0.2.11', announce: {} })]))
    .map((s) => JSON.parse(JSON.stringify(s)));
  const parsed = slices.map((s) => parsePlanSlice(s));
  const back = assemblePlan(parsed.map((p) => (p.ok ? p.value : undefined)!));
  assert.ok(back.ok);
  assert.equal(back.ok && Object.fromEntries(back.value.services.map((s) => [s.vip, s.announce])), { '192.0.2.11': {}, [service().vip]: { interfaces: ['eth1'] } });
  slices[0].services[0].announce.interfaces = ['eth0', '../x'];
  const bad = parsePlanSlice(slices[0]);
  assert.equal(bad.ok ? '' : bad.field, 'services[0].announce.interfaces[1]');
  slices[0].services[0].announce = { bgp: {} };
  const newer = parsePlanSlice(slices[0]);
  assert.equal(newer.ok ? '' : newer.field, 'services[0].announce.bgp');
});

test('decision: a lone director announces; of several, only the elected one; without an election none; none never', () => {
  const lone = run(pool({ directors: { nodeSelector: { dir: 'yes' } } })).services.map((s) => ({ ...s, directors: ['n1'] }));
  const pair = run(pool({ directors: { nodeSelector: { dir: 'yes' } } })).services;
  const silent = run(pool({ announce: { none: {} } })).services.map((s) => ({ ...s, directors: ['n1'] }));
  const vip = '192.0.2.10';
  assert.ok(shouldAnnounce(announcedVips(lone).get(vip), vip, 'n1'));
  assert.not.ok(shouldAnnounce(announcedVips(lone).get(vip), vip, 'n2'), 'not a director of it');
  assert.not.ok(shouldAnnounce(announcedVips(pair).get(vip), vip, 'n1'), 'two directors and no election: silence, never both');
  const elect = (_vip: string, directors: readonly string[]) => directors.at(-1);
  assert.ok(shouldAnnounce(announcedVips(pair).get(vip), vip, 'n2', elect));
  assert.not.ok(shouldAnnounce(announcedVips(pair).get(vip), vip, 'n1', elect));
  assert.not.ok(shouldAnnounce(announcedVips(silent).get(vip), vip, 'n1'));
});

test('announcePolicy: follows the current plan (recomputed when the services array changes)', () => {
  let services = run(pool({ announce: { l2: { interfaces: ['eth1'] } } })).services.map((s) => ({ ...s, directors: ['n1'] }));
  const p = announcePolicy(() => services, 'n1');
  assert.ok(p.announce('192.0.2.10'));
  assert.equal(p.interfacesFor('192.0.2.10'), ['eth1']);
  services = services.map((s) => ({ ...s, directors: ['n1', 'n2'] }));
  assert.not.ok(p.announce('192.0.2.10'));
});

test.run();
