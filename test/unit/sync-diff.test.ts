import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { desiredState } from '../../dataplane/sync/desired.ts';
import { diff, type DiffInput, type SyncOp } from '../../dataplane/sync/diff.ts';
import type { IpvsDestination, IpvsServiceState } from '../../dataplane/ipvs/types.ts';
import { planService, rs } from '../lib/sync-fixtures.ts';

const test = suite('sync: diff');
const NOW = 1_000_000;

function want(...ps: Parameters<typeof planService>[0][]) {
  return desiredState(ps.map((p) => planService(p)), 'node-a');
}

/** The kernel's read-back of desired state: HASHED set, tunnel attributes everywhere, counters. */
function readBack(states: IpvsServiceState[], conns: Record<string, number> = {}): IpvsServiceState[] {
  return states.map((s) => ({
    service: { ...s.service, flags: s.service.flags | 0x2 },
    destinations: s.destinations.map((d): IpvsDestination => ({
      tunnelType: 'ipip', tunnelPort: 0, tunnelFlags: 0, ...d,
      stats: { activeConns: conns[d.address] ?? 0, inactiveConns: 0, persistConns: 0, conns: 0, inPkts: 0, outPkts: 0, inBytes: 0, outBytes: 0 },
    })),
  }));
}

function run(input: Partial<DiffInput> & Pick<DiffInput, 'desired' | 'kernel'>) {
  return diff({ ownedVips: input.desired.map((s) => s.service.address), draining: new Map(), now: NOW, drainTimeoutMs: 60_000, ...input });
}

const show = (ops: SyncOp[]) => ops.map((o) => `${o.kind} ${o.key}${'dest' in o ? ` ${o.dest}` : ''}`);

test('from empty: each service before its destinations, sorted', () => {
  const d = want({ port: 443 }, {});
  assert.equal(show(run({ desired: d.services, kernel: [] }).ops), [
    'addService TCP/203.0.113.10:443', 'addDestination TCP/203.0.113.10:443 10.0.0.1:8080', 'addDestination TCP/203.0.113.10:443 10.0.0.2:8080',
    'addService TCP/203.0.113.10:80', 'addDestination TCP/203.0.113.10:80 10.0.0.1:8080', 'addDestination TCP/203.0.113.10:80 10.0.0.2:8080',
  ]);
});

test('the kernel read-back of desired state is no change (HASHED, unused tunnel attributes ignored)', () => {
  const d = want({ persistence: { timeoutSeconds: 30, netmask: '255.255.255.255' } }, { vip: '2001:db8::1', family: 6, realServers: [rs('2001:db8::2', 80)] });
  const r = run({ desired: d.services, kernel: readBack(d.services) });
  assert.equal(r.ops, []);
  assert.equal(r.retiredVips, []);
});

test('service attributes are edited in place; destination attributes too', () => {
  const before = want({});
  const after = want({ scheduler: { name: 'rr', flags: [] }, persistence: { timeoutSeconds: 60, netmask: '255.255.0.0' }, realServers: [rs('10.0.0.1', 8080, { weight: 7 }), rs('10.0.0.2', 8080)] });
  const r = run({ desired: after.services, kernel: readBack(before.services) });
  assert.equal(show(r.ops), ['updateService TCP/203.0.113.10:80', 'updateDestination TCP/203.0.113.10:80 10.0.0.1:8080']);
  assert.equal((r.ops[0] as Extract<SyncOp, { kind: 'updateService' }>).changed, ['scheduler', 'flags', 'timeout', 'netmask']);
  assert.equal((r.ops[1] as Extract<SyncOp, { kind: 'updateDestination' }>).changed, ['weight']);
});

test('a removed TCP destination with connections drains, and is deleted when they end', () => {
  const before = want({});
  const after = want({ realServers: [rs('10.0.0.2', 8080)] });
  const r1 = run({ desired: after.services, kernel: readBack(before.services, { '10.0.0.1': 4 }) });
  assert.equal(show(r1.ops), ['drainDestination TCP/203.0.113.10:80 10.0.0.1:8080']);
  assert.is((r1.ops[0] as Extract<SyncOp, { kind: 'drainDestination' }>).destination.weight, 0);
  assert.equal([...r1.draining], [['TCP/203.0.113.10:80 -> 10.0.0.1:8080', NOW]]);
  assert.is(r1.nextDeadline, NOW + 60_000);
  // Next sync: already at weight 0, still busy → nothing to do, the drain start is kept.
  const drained = readBack(before.services, { '10.0.0.1': 4 });
  drained[0]!.destinations[0]!.weight = 0;
  const r2 = run({ desired: after.services, kernel: drained, draining: r1.draining, now: NOW + 5_000 });
  assert.equal(r2.ops, []);
  assert.equal([...r2.draining], [['TCP/203.0.113.10:80 -> 10.0.0.1:8080', NOW]]);
  // Past the deadline it goes, busy or not.
  const r3 = run({ desired: after.services, kernel: drained, draining: r2.draining, now: NOW + 60_000 });
  assert.equal(show(r3.ops), ['deleteDestination TCP/203.0.113.10:80 10.0.0.1:8080']);
  assert.is((r3.ops[0] as Extract<SyncOp, { kind: 'deleteDestination' }>).reason, 'deadline');
  assert.equal(r3.draining.size, 0);
});

test('an idle removed destination and any UDP one are deleted at once', () => {
  const tcp = run({ desired: want({ realServers: [rs('10.0.0.2', 8080)] }).services, kernel: readBack(want({}).services) });
  assert.equal(show(tcp.ops), ['deleteDestination TCP/203.0.113.10:80 10.0.0.1:8080']);
  const udpBefore = want({ protocol: 'UDP', port: 53 });
  const udp = run({ desired: want({ protocol: 'UDP', port: 53, realServers: [] }).services, kernel: readBack(udpBefore.services, { '10.0.0.1': 9, '10.0.0.2': 9 }) });
  assert.equal(show(udp.ops), ['deleteDestination UDP/203.0.113.10:53 10.0.0.1:8080', 'deleteDestination UDP/203.0.113.10:53 10.0.0.2:8080']);
  assert.equal(udp.draining.size, 0);
});

test('a removed service: busy destinations drain first, then one DEL_SERVICE', () => {
  const before = want({}, { port: 443 });
  const kernel = readBack(before.services, { '10.0.0.1': 2 });
  const r1 = run({ desired: want({}).services, kernel });
  assert.equal(show(r1.ops), ['drainDestination TCP/203.0.113.10:443 10.0.0.1:8080', 'deleteDestination TCP/203.0.113.10:443 10.0.0.2:8080']);
  const idle = readBack(before.services);
  const r2 = run({ desired: want({}).services, kernel: idle, draining: r1.draining });
  assert.equal(show(r2.ops), ['deleteService TCP/203.0.113.10:443']);
});

test('services of other owners are left alone: other VIPs (same port), fwmark, frozen keys', () => {
  const ours = want({});
  const foreign = readBack(want({ vip: '198.51.100.99' }).services);
  const fwmark = { service: { family: 4 as const, protocol: 'TCP' as const, address: '0.0.0.0', port: 0, fwmark: 7, scheduler: 'rr', flags: 2, timeout: 0, netmask: '255.255.255.255' }, destinations: [] };
  const r = run({ desired: ours.services, kernel: [...foreign, fwmark, ...readBack(ours.services)] });
  assert.equal(r.ops, []);
  const frozen = want({ port: 443, scheduler: { name: 'rr', flags: ['sh-port'] } }, {});
  assert.equal(frozen.frozen, ['TCP/203.0.113.10:443']);
  const kernel = readBack(want({ port: 443 }, {}).services);
  const r2 = run({ desired: frozen.services, kernel, ownedVips: frozen.ownedVips, frozen: frozen.frozen });
  assert.equal(r2.ops, [], 'the frozen service on an owned VIP is not torn down');
});

test('retiring VIPs: their services are removed, and the VIP is reported once empty', () => {
  const old = readBack(want({ vip: '198.51.100.5' }).services, { '10.0.0.1': 1 });
  const r1 = run({ desired: [], kernel: old, ownedVips: [], retiringVips: ['198.51.100.5'] });
  assert.equal(show(r1.ops), ['drainDestination TCP/198.51.100.5:80 10.0.0.1:8080', 'deleteDestination TCP/198.51.100.5:80 10.0.0.2:8080']);
  assert.equal(r1.retiredVips, []);
  const r2 = run({ desired: [], kernel: readBack(want({ vip: '198.51.100.5' }).services), ownedVips: [], retiringVips: ['198.51.100.5'] });
  assert.equal(show(r2.ops), ['deleteService TCP/198.51.100.5:80']);
  assert.equal(r2.retiredVips, ['198.51.100.5']);
  const r3 = run({ desired: [], kernel: old, ownedVips: [] });
  assert.equal(r3.ops, [], 'without ownership the same services are foreign');
});

test('deterministic: shuffled inputs give the same operations', () => {
  const before = want({}, { port: 443, realServers: [rs('10.0.0.9', 1), rs('10.0.0.8', 1)] }, { vip: '198.51.100.3' });
  const after = want({ realServers: [rs('10.0.0.3', 1), rs('10.0.0.2', 8080, { weight: 4 })] }, { port: 8443 });
  const kernel = readBack(before.services, { '10.0.0.9': 1 });
  const a = run({ desired: after.services, kernel, retiringVips: ['198.51.100.3'] });
  const shuffled = kernel.map((s) => ({ ...s, destinations: [...s.destinations].reverse() })).reverse();
  const b = run({ desired: [...after.services].reverse(), kernel: shuffled, retiringVips: ['198.51.100.3'] });
  assert.equal(b.ops, a.ops);
  assert.ok(a.ops.length > 5);
});

test.run();
