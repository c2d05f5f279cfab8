// End-state tests of one sync against the in-memory kernel: what the kernel holds afterwards, not
// which calls were made.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { PlanService } from '../../api/plan.ts';
import { FakeIpvsKernel } from '../../dataplane/ipvs/testing/fake.ts';
import { createSyncer, type SyncerOptions, type VipBinder } from '../../dataplane/sync/sync.ts';
import { ManualClock, captureLog, planService, rs } from '../lib/sync-fixtures.ts';

const test = suite('sync: end state in the kernel');
const WEB = 'TCP/203.0.113.10:80';

function setup(plan: PlanService[], over: Partial<SyncerOptions> = {}) {
  const kernel = (over.kernel as FakeIpvsKernel | undefined) ?? new FakeIpvsKernel();
  const clock = new ManualClock();
  const logs = captureLog();
  const state = { plan };
  const syncer = createSyncer({ kernel, node: 'node-a', plan: () => state.plan, log: logs.log, clock, drainTimeoutMs: 60_000, ...over });
  return { kernel, clock, logs, state, syncer };
}

/** The kernel as compact lines: "TCP/vip:port sched flags timeout netmask" and "  addr:port fwd w=N". */
function view(k: FakeIpvsKernel): string[] {
  return k.snapshot().flatMap((s) => [
    `${s.service.protocol}/${s.service.address}:${s.service.port} ${s.service.scheduler} f=${s.service.flags} t=${s.service.timeout} ${s.service.netmask}`,
    ...s.destinations.map((d) => `  ${d.address}:${d.port} ${d.forward} w=${d.weight}`),
  ]);
}

async function foreignService(k: FakeIpvsKernel) {
  const svc = { family: 4 as const, protocol: 'TCP' as const, address: '198.51.100.99', port: 80, scheduler: 'rr', flags: 0, timeout: 0, netmask: '255.255.255.255' };
  await k.addService(svc);
  await k.addDestination(svc, { family: 4, address: '10.9.9.9', port: 80, forward: 'droute', weight: 3, upperThreshold: 0, lowerThreshold: 0 });
  k.setConnections('TCP/198.51.100.99:80', '10.9.9.9:80', { active: 5 });
}

test('from empty to desired, and a second sync changes nothing', async () => {
  const { kernel, syncer } = setup([planService(), planService({ vip: '198.51.100.1', protocol: 'UDP', port: 53, forwarding: 'DR', scheduler: { name: 'sh', flags: ['sh-port'] }, realServers: [rs('10.0.0.5', 53)] })]);
  const r1 = await syncer.sync();
  assert.is(r1.kind, 'ok');
  assert.equal(view(kernel), [
    'TCP/203.0.113.10:80 wlc f=0 t=0 255.255.255.255', '  10.0.0.1:8080 masq w=1', '  10.0.0.2:8080 masq w=1',
    'UDP/198.51.100.1:53 sh f=16 t=0 255.255.255.255', '  10.0.0.5:53 droute w=1',
  ]);
  const before = kernel.mutations;
  const r2 = await syncer.sync();
  assert.equal([r2.kind, r2.ops, kernel.mutations], ['ok', 0, before]);
});

test('scheduler and persistence change in place: connections and objects survive', async () => {
  const { kernel, state, syncer } = setup([planService()]);
  await syncer.sync();
  kernel.setConnections(WEB, '10.0.0.1:8080', { active: 12, inactive: 3 });
  const ids = [kernel.objectId(WEB), kernel.objectId(WEB, '10.0.0.1:8080')];
  state.plan = [planService({ scheduler: { name: 'mh', flags: ['mh-fallback'] }, persistence: { timeoutSeconds: 600, netmask: '255.255.255.0' } })];
  assert.is((await syncer.sync()).kind, 'ok');
  assert.equal(view(kernel)[0], 'TCP/203.0.113.10:80 mh f=9 t=600 255.255.255.0');
  assert.equal([kernel.objectId(WEB), kernel.objectId(WEB, '10.0.0.1:8080')], ids);
  assert.is(kernel.snapshot()[0]?.destinations[0]?.stats?.activeConns, 12);
});

test('a weight change is made in place', async () => {
  const { kernel, state, syncer } = setup([planService()]);
  await syncer.sync();
  const id = kernel.objectId(WEB, '10.0.0.2:8080');
  state.plan = [planService({ realServers: [rs('10.0.0.1', 8080), rs('10.0.0.2', 8080, { weight: 9 })] })];
  await syncer.sync();
  assert.equal(view(kernel).slice(1), ['  10.0.0.1:8080 masq w=1', '  10.0.0.2:8080 masq w=9']);
  assert.is(kernel.objectId(WEB, '10.0.0.2:8080'), id);
});

test('a removed TCP real server drains at weight 0 and is deleted when its connections end', async () => {
  const { kernel, state, syncer, clock } = setup([planService()]);
  await syncer.sync();
  kernel.setConnections(WEB, '10.0.0.1:8080', { active: 1, inactive: 2 });
  state.plan = [planService({ realServers: [rs('10.0.0.2', 8080)] })];
  const r1 = await syncer.sync();
  assert.equal([r1.kind, r1.draining], ['drainPending', 1]);
  assert.equal(view(kernel).slice(1), ['  10.0.0.1:8080 masq w=0', '  10.0.0.2:8080 masq w=1']);
  clock.tick(5_000);
  kernel.setConnections(WEB, '10.0.0.1:8080', { active: 0, inactive: 1 });
  assert.is((await syncer.sync()).kind, 'drainPending');
  assert.is(view(kernel).length, 3, 'one inactive connection still holds it');
  kernel.setConnections(WEB, '10.0.0.1:8080', { inactive: 0 });
  assert.is((await syncer.sync()).kind, 'ok');
  assert.equal(view(kernel).slice(1), ['  10.0.0.2:8080 masq w=1']);
});

test('the drain deadline deletes a destination that still has connections', async () => {
  const { kernel, state, syncer, clock } = setup([planService()]);
  await syncer.sync();
  kernel.setConnections(WEB, '10.0.0.1:8080', { active: 40 });
  state.plan = [planService({ realServers: [rs('10.0.0.2', 8080)] })];
  const r1 = await syncer.sync();
  assert.equal(r1.kind === 'drainPending' && r1.after <= 60_000, true);
  clock.tick(59_999);
  await syncer.sync();
  assert.is(view(kernel).length, 3);
  clock.tick(1);
  assert.is((await syncer.sync()).kind, 'ok');
  assert.equal(view(kernel).slice(1), ['  10.0.0.2:8080 masq w=1']);
});

test('UDP real servers and services are removed at once, connections or not', async () => {
  const udp = (over: Partial<PlanService> = {}) => planService({ protocol: 'UDP', port: 53, ...over });
  const { kernel, state, syncer } = setup([udp(), udp({ port: 123 })]);
  await syncer.sync();
  kernel.setConnections('UDP/203.0.113.10:53', '10.0.0.1:8080', { active: 0, inactive: 30 });
  kernel.setConnections('UDP/203.0.113.10:123', '10.0.0.1:8080', { inactive: 30 });
  state.plan = [udp({ realServers: [rs('10.0.0.2', 8080)] })];
  assert.is((await syncer.sync()).kind, 'ok');
  assert.equal(view(kernel), ['UDP/203.0.113.10:53 wlc f=0 t=0 255.255.255.255', '  10.0.0.2:8080 masq w=1']);
});

test('a removed TCP service drains its busy destinations, then goes', async () => {
  const { kernel, state, syncer } = setup([planService(), planService({ port: 443 })]);
  await syncer.sync();
  kernel.setConnections('TCP/203.0.113.10:443', '10.0.0.2:8080', { active: 1 });
  state.plan = [planService()];
  assert.is((await syncer.sync()).kind, 'drainPending');
  assert.equal(view(kernel).slice(0, 2), ['TCP/203.0.113.10:443 wlc f=0 t=0 255.255.255.255', '  10.0.0.2:8080 masq w=0']);
  kernel.setConnections('TCP/203.0.113.10:443', '10.0.0.2:8080', { active: 0 });
  assert.is((await syncer.sync()).kind, 'ok');
  assert.equal(view(kernel)[0], 'TCP/203.0.113.10:80 wlc f=0 t=0 255.255.255.255');
  assert.is(view(kernel).length, 3);
});

test('foreign services (other VIPs, same port) are left exactly as found', async () => {
  const kernel = new FakeIpvsKernel();
  await foreignService(kernel);
  const foreign = () => kernel.snapshot().filter((s) => s.service.address === '198.51.100.99');
  const before = foreign();
  const { state, syncer } = setup([planService({ realServers: [rs('10.9.9.9', 80)] })], { kernel });
  await syncer.sync();
  state.plan = [];
  await syncer.sync();
  await syncer.sync();
  assert.equal(foreign(), before);
  assert.is(kernel.snapshot().length, 1, 'ours is gone, theirs stays');
});

test('outside edits on our service are undone by the next sync', async () => {
  const { kernel, syncer } = setup([planService()]);
  await syncer.sync();
  const want = view(kernel);
  const svc = kernel.snapshot()[0]!.service;
  const d1 = kernel.snapshot()[0]!.destinations[0]!;
  await kernel.updateDestination(svc, { ...d1, weight: 100 });
  await kernel.deleteDestination(svc, { family: 4, address: '10.0.0.2', port: 8080 });
  await kernel.addDestination(svc, { ...d1, address: '10.0.0.77' });
  await kernel.updateService({ ...svc, scheduler: 'rr' });
  assert.is.not(view(kernel).join('\n'), want.join('\n'));
  assert.is((await syncer.sync()).kind, 'ok');
  assert.equal(view(kernel), want);
});

test('restart safety: a new syncer over a programmed kernel performs no operation', async () => {
  const plan = [planService(), planService({ vip: '2001:db8::10', family: 6, realServers: [rs('2001:db8::2', 80)], persistence: { timeoutSeconds: 30, netmask: '64' } }), planService({ forwarding: 'TUN', port: 81, tunnel: { type: 'gue', port: 5555, flags: ['csum'] } })];
  const first = setup(plan);
  await first.syncer.sync();
  const before = first.kernel.mutations;
  const second = setup(plan, { kernel: first.kernel });
  const r = await second.syncer.sync();
  assert.equal([r.kind, r.ops, first.kernel.mutations], ['ok', 0, before]);
});

test('a failing operation on one service does not hold back the others', async () => {
  const { kernel, state, syncer } = setup([]);
  kernel.fail('addDestination', 'EINVAL', { dest: '10.0.0.66:80' });
  kernel.fail('addService', 'ENOMEM', { key: 'TCP/198.51.100.2:80', times: 1 });
  state.plan = [
    planService({ realServers: [rs('10.0.0.66', 80), rs('10.0.0.1', 80)], port: 80 }),
    planService({ vip: '198.51.100.2' }),
    planService({ vip: '198.51.100.3' }),
  ];
  const r = await syncer.sync();
  assert.is(r.kind, 'retry');
  if (r.kind !== 'retry') return;
  assert.equal(r.errors.map((e) => `${e.op} ${e.key} ${e.dest ?? ''} ${e.code}`).sort(), [
    'addDestination TCP/203.0.113.10:80 10.0.0.66:80 EINVAL',
    'addService TCP/198.51.100.2:80  ENOMEM',
  ]);
  assert.equal(view(kernel), [
    'TCP/198.51.100.3:80 wlc f=0 t=0 255.255.255.255', '  10.0.0.1:8080 masq w=1', '  10.0.0.2:8080 masq w=1',
    'TCP/203.0.113.10:80 wlc f=0 t=0 255.255.255.255', '  10.0.0.1:80 masq w=1',
  ]);
  kernel.clearFailures();
  assert.is((await syncer.sync()).kind, 'ok');
  assert.is(view(kernel).length, 9);
});

test('the order of the plan does not change the kernel end state', async () => {
  const plan = [
    planService({ vip: '198.51.100.9', realServers: [rs('10.0.0.9', 1), rs('10.0.0.10', 1)] }),
    planService({ protocol: 'SCTP', port: 9 }),
    planService({ vip: '2001:db8::1', family: 6, realServers: [rs('2001:db8::b', 80), rs('2001:db8::a', 80)] }),
  ];
  const a = setup(plan);
  await a.syncer.sync();
  const b = setup([...plan].reverse().map((p) => ({ ...p, realServers: [...p.realServers].reverse() })));
  await b.syncer.sync();
  assert.equal(b.kernel.snapshot(), a.kernel.snapshot());
});

test('an invalid plan entry leaves its kernel service as it is and is reported', async () => {
  const { kernel, state, syncer } = setup([planService()]);
  await syncer.sync();
  const before = view(kernel);
  state.plan = [planService({ scheduler: { name: 'wlc', flags: ['sh-port'] }, realServers: [] })];
  const r = await syncer.sync();
  assert.is(r.kind, 'ok');
  assert.equal(r.problems.map((p) => `${p.key} ${p.field}`), [`${WEB} scheduler.flags[0]`]);
  assert.equal(view(kernel), before);
});

test('held keys: the kernel service stays exactly as it is, its VIP stays bound, without any plan entry', async () => {
  const bound = new Set<string>();
  const vips: VipBinder = { list: async () => [...bound], set: async (want) => { bound.clear(); for (const v of want) bound.add(v); } };
  const other = planService({ vip: '198.51.100.1' });
  const held = { keys: [] as string[] };
  const { kernel, state, syncer } = setup([planService(), other], { vips, held: () => held.keys });
  await syncer.sync();
  const web = ['TCP/203.0.113.10:80 wlc f=0 t=0 255.255.255.255', '  10.0.0.1:8080 masq w=1', '  10.0.0.2:8080 masq w=1'];
  assert.equal(view(kernel).slice(3), web);
  // The owner of WEB becomes unusable: no plan entry, only its key held; the other owner's service goes.
  state.plan = [];
  held.keys = [WEB];
  const r = await syncer.sync();
  assert.is(r.kind, 'ok');
  assert.equal(view(kernel), web);
  assert.equal([...bound], ['203.0.113.10'], 'held VIP stays bound; the removed one is unbound');
  // A plan entry for a held key is not built (the hold wins) and is reported.
  state.plan = [planService({ scheduler: { name: 'rr', flags: [] } })];
  const r2 = await syncer.sync();
  assert.equal(r2.problems.map((p) => `${p.key} ${p.field}`), [`${WEB} key`]);
  assert.equal(view(kernel)[0], 'TCP/203.0.113.10:80 wlc f=0 t=0 255.255.255.255');
  held.keys = [];
  await syncer.sync();
  assert.equal(view(kernel)[0], 'TCP/203.0.113.10:80 rr f=0 t=0 255.255.255.255', 'released: the plan applies');
});

test('VIPs: bound after their services exist, unbound only once their services are gone (also after a restart)', async () => {
  const bound = new Set<string>(['198.51.100.200']); // left over from an earlier run
  const order: string[] = [];
  const vips: VipBinder = {
    list: async () => [...bound],
    set: async (want) => {
      for (const v of want) if (!bound.has(v)) order.push(`bind ${v} services=${kernel.snapshot().length}`);
      for (const v of bound) if (!want.includes(v)) order.push(`unbind ${v}`);
      bound.clear();
      for (const v of want) bound.add(v);
    },
  };
  const kernel = new FakeIpvsKernel();
  const leftover = setup([planService({ vip: '198.51.100.200' })], { kernel });
  await leftover.syncer.sync();
  kernel.setConnections('TCP/198.51.100.200:80', '10.0.0.1:8080', { active: 1 });
  const { state, syncer } = setup([planService()], { kernel, vips }); // restarted agent, new plan
  assert.is((await syncer.sync()).kind, 'drainPending');
  assert.equal(order, ['bind 203.0.113.10 services=2']);
  assert.equal([...bound].sort(), ['198.51.100.200', '203.0.113.10'], 'still draining: stays bound');
  kernel.setConnections('TCP/198.51.100.200:80', '10.0.0.1:8080', { active: 0 });
  assert.is((await syncer.sync()).kind, 'ok');
  assert.equal([...bound], ['203.0.113.10']);
  assert.equal(kernel.snapshot().map((s) => s.service.address), ['203.0.113.10']);
  state.plan = [];
  await syncer.sync();
  assert.equal([...bound], []);
  assert.equal(kernel.snapshot(), []);
});

test('kernel read failures back off exponentially; success resets the backoff', async () => {
  const { kernel, syncer } = setup([planService()], { backoff: { initialMs: 100, maxMs: 350 } });
  kernel.fail('dump', 'ENOBUFS', { times: 4 });
  const afters: number[] = [];
  for (let i = 0; i < 4; i++) {
    const r = await syncer.sync();
    if (r.kind === 'retry') afters.push(r.after);
  }
  assert.equal(afters, [100, 200, 350, 350]);
  assert.is((await syncer.sync()).kind, 'ok');
  kernel.fail('dump', 'EIO', { times: 1 });
  const r = await syncer.sync();
  assert.equal(r.kind === 'retry' && [r.after, r.errors[0]?.op, r.errors[0]?.code], [100, 'dump', 'EIO']);
});

test('operation logs carry the fixed keys node, op, vip, vs', async () => {
  const { logs, syncer } = setup([planService()]);
  await syncer.sync();
  const add = logs.lines.find((l) => l.op === 'addService');
  assert.ok(add, 'addService logged');
  assert.equal([add.node, add.vip, add.vs, add.service], ['node-a', '203.0.113.10', 'default/web', WEB]);
});

test('lvs0 deleted by hand while a removed service drains: the drain still finishes, lvs0 is re-bound', async () => {
  // Within one agent process the VIPs it owned are remembered (not only read back from lvs0), so a
  // VIP that vanished with lvs0 still counts as ours until its services are drained and removed.
  const bound = new Set<string>();
  const vips: VipBinder = { list: async () => [...bound], set: async (want) => { bound.clear(); for (const v of want) bound.add(v); } };
  const other = planService({ vip: '198.51.100.7', owner: { namespace: 'default', name: 'other', generation: 1 } });
  const { kernel, state, syncer } = setup([planService(), other], { vips });
  await syncer.sync();
  assert.equal([...bound].sort(), ['198.51.100.7', '203.0.113.10']);
  kernel.setConnections(WEB, '10.0.0.1:8080', { active: 3 });
  state.plan = [other];
  assert.is((await syncer.sync()).kind, 'drainPending');
  bound.clear(); // ip link del lvs0
  assert.is((await syncer.sync()).kind, 'drainPending');
  assert.equal(view(kernel).filter((l) => l.startsWith('TCP/203.0.113.10')).length, 1, 'the draining service is not orphaned');
  assert.equal([...bound], ['198.51.100.7'], 'lvs0 got the live VIP back');
  kernel.setConnections(WEB, '10.0.0.1:8080', { active: 0 });
  assert.is((await syncer.sync()).kind, 'ok');
  assert.equal(kernel.snapshot().map((s) => s.service.address), ['198.51.100.7']);
});

test('a restart while a removed service drains, with lvs0 deleted: the recorded VIP is still retired', async () => {
  const bound = new Set<string>();
  const vips: VipBinder = { list: async () => [...bound], set: async (want) => { bound.clear(); for (const v of want) bound.add(v); } };
  const other = planService({ vip: '198.51.100.7', owner: { namespace: 'default', name: 'other', generation: 1 } });
  const first = setup([planService(), other], { vips });
  await first.syncer.sync();
  first.kernel.setConnections(WEB, '10.0.0.1:8080', { active: 3 });
  first.state.plan = [other];
  const r = await first.syncer.sync();
  assert.equal(r.retiring, ['203.0.113.10'], 'what the owner record keeps');
  bound.clear(); // ip link del lvs0, then the agent restarts
  const web = () => view(first.kernel).filter((l) => l.startsWith('TCP/203.0.113.10')).length;
  const orphaned = setup([other], { kernel: first.kernel, vips });
  first.kernel.setConnections(WEB, '10.0.0.1:8080', { active: 0 });
  assert.is((await orphaned.syncer.sync()).kind, 'ok');
  assert.is(web(), 1, 'without the record the idle service is no longer known as ours: orphaned for good');
  first.kernel.setConnections(WEB, '10.0.0.1:8080', { active: 3 });
  const restarted = setup([other], { kernel: first.kernel, vips, retiringVips: r.retiring! });
  assert.is((await restarted.syncer.sync()).kind, 'drainPending');
  const still = view(first.kernel);
  const at = still.findIndex((l) => l.startsWith('TCP/203.0.113.10'));
  assert.ok(at >= 0 && still[at + 1]?.startsWith('  10.0.0.1:8080 ') && still[at + 1]?.endsWith(' w=0'), `drained at weight 0, not cut:\n${still.join('\n')}`);
  first.kernel.setConnections(WEB, '10.0.0.1:8080', { active: 0 });
  const done = await restarted.syncer.sync();
  assert.is(done.kind, 'ok');
  assert.equal(first.kernel.snapshot().map((s) => s.service.address), ['198.51.100.7']);
  assert.equal(done.retiring, []);
});

test.run();
