// The listing sync (dataplane/sync/listing.ts): a sync that brings new owned VIPs, and with the
// verifier the periodic full read-back, list the services once instead of reading every service
// and its destinations back, and still end exactly where a full sync would: the new VIPs' services
// added and bound, extras on owned VIPs removed, a foreign service on a new VIP refused, a desired
// service deleted by hand added again. Whatever else changed in the scope makes it full, as before.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { PlanService } from '../../api/plan.ts';
import { FakeIpvsKernel } from '../../dataplane/ipvs/testing/fake.ts';
import type { IpvsService } from '../../dataplane/ipvs/types.ts';
import { addedVips, listingReads } from '../../dataplane/sync/listing.ts';
import { desiredState } from '../../dataplane/sync/desired.ts';
import { scopeOf, viewOf } from '../../dataplane/sync/partial.ts';
import { createSyncer, type VipBinder } from '../../dataplane/sync/sync.ts';
import { ManualClock, captureLog, planService, rs } from '../lib/sync-fixtures.ts';

const test = suite('sync: new owned VIPs without a full read-back');
const VIP = '203.0.113.10', NEW = '203.0.113.20';

/** n services on VIP, ports 1000.., two real servers each. */
function plan(n: number): PlanService[] {
  return Array.from({ length: n }, (_, i) => planService({
    vip: VIP, port: 1000 + i, owner: { namespace: 'default', name: `web-${i}`, generation: 1 },
    realServers: [rs(`10.0.${i}.1`, 8080), rs(`10.0.${i}.2`, 8080)],
  }));
}

const onNew = (port = 80) => planService({ vip: NEW, port, owner: { namespace: 'default', name: `new-${port}`, generation: 1 }, realServers: [rs('10.1.0.1', 8080)] });

function svc(address: string, port: number): IpvsService {
  return { family: 4, protocol: 'TCP', address, port, scheduler: 'rr', flags: 0, timeout: 0, netmask: '255.255.255.255' };
}

async function addByHand(k: FakeIpvsKernel, address: string, port: number): Promise<void> {
  await k.addService(svc(address, port));
  await k.addDestination(svc(address, port), { family: 4, address: '10.9.9.9', port: 80, forward: 'masq', weight: 1, upperThreshold: 0, lowerThreshold: 0 });
}

function setup(initial: PlanService[], vips?: VipBinder) {
  const kernel = new FakeIpvsKernel();
  const state = { plan: initial };
  const syncer = createSyncer({ kernel, node: 'node-a', plan: () => state.plan, log: captureLog().log, clock: new ManualClock(), fullResyncIntervalMs: 60_000, ...(vips ? { vips } : {}) });
  return { kernel, state, syncer };
}

const strip = (k: FakeIpvsKernel) => k.snapshot().map((s) => ({ service: s.service, destinations: s.destinations.map(({ stats: _, ...d }) => d) }));

/** What a fresh full sync of `p` leaves in a kernel prepared by `prepare`. */
async function reference(p: PlanService[], prepare?: (k: FakeIpvsKernel) => Promise<void>): Promise<unknown> {
  const kernel = new FakeIpvsKernel();
  await prepare?.(kernel);
  await createSyncer({ kernel, node: 'node-a', plan: () => p, log: captureLog().log, clock: new ManualClock() }).sync();
  return strip(kernel);
}

test('a new VIP: the services listed once, nothing else read; its service added; the end state a full sync gives', async () => {
  const { kernel, state, syncer } = setup(plan(50));
  const asked: unknown[] = [];
  const list = kernel.services.bind(kernel);
  kernel.services = (opts) => { asked.push(opts); return list(opts); };
  await syncer.sync();
  state.plan = [...plan(50), onNew()];
  const r = await syncer.sync();
  assert.equal([r.kind, r.read, r.newVips, r.ops], ['ok', 0, 1, 2]);
  assert.equal(asked, [{ stats: false }], 'listed without the counters');
  assert.equal(kernel.reads, { dump: 1, readService: 0, services: 1 });
  assert.equal(strip(kernel), await reference(state.plan));
  // The view moved to the new scope: the next change on the new VIP is an ordinary partial sync.
  state.plan = [...plan(50), { ...onNew(), realServers: [rs('10.1.0.1', 8080), rs('10.1.0.2', 8080)] }];
  const next = await syncer.sync();
  assert.equal([next.read, next.newVips], [1, undefined]);
  assert.equal(kernel.reads, { dump: 1, readService: 1, services: 1 });
  assert.equal(strip(kernel), await reference(state.plan));
});

test('with it, a change elsewhere is read back, and a service added by hand on an owned VIP is removed', async () => {
  const { kernel, state, syncer } = setup(plan(20));
  await syncer.sync();
  await addByHand(kernel, VIP, 9999);
  state.plan = [...plan(20).map((s, i) => (i === 4 ? { ...s, realServers: [rs('10.0.4.1', 8080)] } : s)), onNew()];
  const r = await syncer.sync();
  assert.equal([r.kind, r.read, r.newVips], ['ok', 2, 1], 'the changed service and the extra one');
  assert.equal(kernel.reads, { dump: 1, readService: 2, services: 1 });
  assert.equal(strip(kernel), await reference(state.plan));
  assert.not.ok(kernel.snapshot().some((s) => s.service.port === 9999), 'TCP/203.0.113.10:9999 removed');
});

test('a foreign service on the new VIP (another port): refused exactly as a full sync refuses it, the sync full', async () => {
  const foreign = (k: FakeIpvsKernel) => addByHand(k, NEW, 443);
  const { kernel, state, syncer } = setup(plan(10));
  await foreign(kernel);
  await syncer.sync();
  state.plan = [...plan(10), onNew()];
  const r = await syncer.sync();
  assert.equal([r.read, r.newVips, r.refused?.map((x) => x.vip)], ['full', undefined, [NEW]]);
  assert.equal(strip(kernel), await reference(state.plan, foreign), 'the foreign service left as found, the refused one not added');
  assert.ok(strip(kernel).some((s) => s.service.address === NEW && s.service.port === 443));
});

test('a VIP removed while another is added: full (the removed one must be retired)', async () => {
  const { kernel, state, syncer } = setup([...plan(5), onNew()]);
  await syncer.sync();
  state.plan = [...plan(5).map((s) => ({ ...s, vip: '203.0.113.30' }))];
  const r = await syncer.sync();
  assert.equal([r.read, r.newVips], ['full', undefined]);
  assert.equal(strip(kernel), await reference(state.plan));
});

test('with lvs0: the new VIP bound after its services exist; lvs0 edited by hand makes the sync full', async () => {
  const b = { bound: [] as string[], lists: 0, servicesAtSet: [] as number[] };
  const box: { kernel?: FakeIpvsKernel } = {};
  const vips: VipBinder = {
    async list() { b.lists++; return [...b.bound]; },
    async set(v) { b.servicesAtSet.push(box.kernel!.snapshot().length); b.bound = [...v]; },
  };
  const { kernel, state, syncer } = setup(plan(5), vips);
  box.kernel = kernel;
  await syncer.sync();
  state.plan = [...plan(5), onNew()];
  const r = await syncer.sync();
  assert.equal([r.read, r.newVips, b.bound], [0, 1, [VIP, NEW]]);
  assert.equal(b.servicesAtSet, [5, 6], 'bound once the new VIP\'s service was in the kernel');
  b.bound = [VIP];
  state.plan = [...plan(5), onNew(), onNew(81), planService({ vip: '203.0.113.40', owner: { namespace: 'default', name: 'x', generation: 1 } })];
  const again = await syncer.sync();
  assert.equal([again.read, again.newVips, b.bound], ['full', undefined, [VIP, NEW, '203.0.113.40']]);
  assert.equal(kernel.reads.dump, 2);
});

test('addedVips: only additions with the same frozen keys; listingReads gives up when reading one by one costs more', () => {
  const before = new Set(['10.0.0.1']);
  assert.equal(addedVips(before, scopeOf(['10.0.0.1'], []), ['10.0.0.1', '10.0.0.2'], scopeOf(['10.0.0.1', '10.0.0.2'], [])), ['10.0.0.2']);
  assert.is(addedVips(before, scopeOf(['10.0.0.1'], []), ['10.0.0.2'], scopeOf(['10.0.0.2'], [])), undefined, 'one removed');
  assert.is(addedVips(before, scopeOf(['10.0.0.1'], ['TCP/10.0.0.1:1']), ['10.0.0.1', '10.0.0.2'], scopeOf(['10.0.0.1', '10.0.0.2'], [])), undefined, 'frozen keys changed');
  assert.is(addedVips(before, scopeOf(['10.0.0.1'], []), ['10.0.0.1'], scopeOf(['10.0.0.1'], [])), undefined, 'nothing added');
  // 100 services in the kernel, 40 of them changed: 80 requests one by one, against 100 for a dump.
  const planned = desiredState(plan(100), 'node-a', []);
  const view = viewOf(planned.services, new Map(), new Map(), scopeOf(planned.ownedVips, planned.frozen));
  const listed = planned.services.map((s) => s.service);
  const changed = desiredState(plan(100).map((s, i) => (i < 40 ? { ...s, realServers: [rs('10.7.7.7', 80)] } : s)), 'node-a', []);
  assert.is(listingReads(view, changed, new Map(), listed)?.present.size, 40);
  const more = desiredState(plan(100).map((s, i) => (i < 51 ? { ...s, realServers: [rs('10.7.7.7', 80)] } : s)), 'node-a', []);
  assert.is(listingReads(view, more, new Map(), listed), undefined, '51 changed: 102 requests against a dump of 100');
});

test.run();
