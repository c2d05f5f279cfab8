// Guest suite of test/kernel/ipvs-client.test.ts (runs inside the VM): our generic-netlink IPVS
// client against the real kernel, cross-checked with ipvsadm (an independent client):
// `ipvsadm -S -n` must list exactly the rules we sent, `-Ln --thresholds` / `--persistent-conn`
// the numbers, and our own read-back must equal what we sent.
import { execFileSync } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { IpvsError, IpvsNetlink } from '../../../dataplane/ipvs/netlink.ts';
import type { IpvsDestination, IpvsService, IpvsServiceKey } from '../../../dataplane/ipvs/types.ts';
import { assertInVm, run } from '../../../lab/guest/netns.ts';

assertInVm();
const ipvsadm = (...args: string[]) => run(['ipvsadm', ...args]);
/** `ipvsadm -S -n` lines of one service (selector like "-t 203.0.113.20:80" or "-f 7"), rule and destinations. */
function saved(selector: string): string[] {
  const n = selector.split(' ').length;
  return ipvsadm('-S', '-n').split('\n').filter((l) => l.split(' ').slice(1, 1 + n).join(' ') === selector);
}
/** Numeric columns of a destination row in an `ipvsadm -Ln <option>` table. */
function row(option: string, service: string, dest: string): number[] {
  let inService = false;
  for (const line of ipvsadm('-Ln', option).split('\n')) {
    const t = line.trim().split(/\s+/);
    if (['TCP', 'UDP', 'SCTP', 'FWM'].includes(t[0]!)) inService = `${t[0]} ${t[1]}` === service;
    else if (inService && t[0] === '->' && t[1] === dest) return t.slice(2).map(Number);
  }
  throw new Error(`no row ${service} -> ${dest} in ipvsadm -Ln ${option}`);
}
const strip = <T extends { stats?: unknown }>(x: T): Omit<T, 'stats'> => { const { stats: _s, ...rest } = x; return rest; };
async function rejects(p: Promise<unknown>): Promise<IpvsError> {
  try { await p; } catch (err) { assert.instance(err, IpvsError); return err as IpvsError; }
  assert.unreachable('expected an IpvsError');
  throw new Error('unreachable');
}

const SVC_F = { PERSISTENT: 0x1, ONEPACKET: 0x4, SCHED1: 0x8, SCHED2: 0x10 };
/** ipvsadm's defaults: no flags, not persistent, a full-length persistence netmask. */
const svc = (over: Partial<IpvsService>): IpvsService =>
  ({ family: 4, protocol: 'TCP', address: '203.0.113.20', port: 80, scheduler: 'wrr', flags: 0, timeout: 0, netmask: over.family === 6 ? '128' : '255.255.255.255', ...over });
const dest = (address: string, port: number, over: Partial<IpvsDestination> = {}): IpvsDestination =>
  ({ family: address.includes(':') ? 6 : 4, address, port, forward: 'masq', weight: 1, upperThreshold: 0, lowerThreshold: 0, ...over });
const key = (s: IpvsServiceKey) => JSON.stringify([s.family, s.fwmark ?? 0, s.protocol, s.address, s.port]);

let k: IpvsNetlink;
const test = suite('ipvs netlink client on a real kernel');

test.before(async () => {
  // Real servers live "behind" d0: 10.0.0.0/24 and 2001:db8::/64 are on-link, 10.0.0.1 is local.
  run(['bash', '-ec', 'ip link add d0 type dummy; ip link set d0 up; ip addr add 10.0.0.1/24 dev d0; ip -6 addr add 2001:db8::1/64 dev d0 nodad']);
  k = await IpvsNetlink.open({ timeoutMs: 60_000 });
});
test.after(async () => { await k?.close(); });

/** What we read back for these services equals what we sent; returns the kernel's view. */
async function readBack(sent: IpvsService[]): Promise<void> {
  const have = new Map((await k.services()).map((s) => [key(s), strip(s)]));
  for (const s of sent) assert.equal(have.get(key(s)), s, `read-back of ${key(s)}`);
}

test('info agrees with ipvsadm\'s header', async () => {
  const info = await k.info();
  assert.is(ipvsadm('-Ln').split('\n')[0], `IP Virtual Server version ${info.version} (size=${info.connTableSize})`);
  assert.is(info.version, '1.2.1');
});

test('every scheduler, with sh and mh flags', async () => {
  const names = ['rr', 'wrr', 'lc', 'wlc', 'lblc', 'lblcr', 'dh', 'sh', 'sed', 'nq', 'mh', 'fo', 'ovf'];
  const services = names.map((scheduler, i) => svc({ port: 8000 + i, scheduler, flags: scheduler === 'sh' || scheduler === 'mh' ? SVC_F.SCHED1 | SVC_F.SCHED2 : 0 }));
  await Promise.all(services.map((s) => k.addService(s)));
  const all = ipvsadm('-S', '-n').split('\n').filter((l) => l.startsWith('-A -t 203.0.113.20:80'));
  assert.equal(all, names.map((n, i) =>
    `-A -t 203.0.113.20:${8000 + i} -s ${n}${n === 'sh' || n === 'mh' ? ` -b ${n}-fallback,${n}-port` : ''}`));
  await readBack(services);
});

test('IPv6, fwmark (v4 and v6), persistence with netmasks, one-packet, the sip engine, SCTP', async () => {
  const cases: Array<[IpvsService, string, string]> = [
    [svc({ family: 6, address: '2001:db8::10', port: 443, scheduler: 'mh', flags: SVC_F.PERSISTENT | SVC_F.SCHED2, timeout: 300, netmask: '64' }),
      '-t [2001:db8::10]:443', '-A -t [2001:db8::10]:443 -s mh -p 300 -M 64 -b mh-port'],
    [svc({ fwmark: 7, address: '0.0.0.0', port: 0, scheduler: 'rr' }), '-f 7', '-A -f 7 -s rr'],
    [svc({ family: 6, fwmark: 8, address: '::', port: 0, scheduler: 'wlc', flags: SVC_F.PERSISTENT, timeout: 120, netmask: '128' }),
      '-f 8', '-A -f 8 -6 -s wlc -p 120'],
    [svc({ protocol: 'UDP', address: '203.0.113.21', port: 5060, scheduler: 'rr', flags: SVC_F.PERSISTENT | SVC_F.ONEPACKET, timeout: 60, pe: 'sip' }),
      '-u 203.0.113.21:5060', '-A -u 203.0.113.21:5060 -s rr -p 60 --pe sip -o'],
    [svc({ protocol: 'SCTP', address: '203.0.113.22', port: 9000, scheduler: 'lc' }), '--sctp-service 203.0.113.22:9000', '-A --sctp-service 203.0.113.22:9000 -s lc'],
    [svc({ protocol: 'UDP', address: '203.0.113.23', port: 53, scheduler: 'sh', flags: SVC_F.PERSISTENT | SVC_F.SCHED1, timeout: 600, netmask: '255.255.255.0' }),
      '-u 203.0.113.23:53', '-A -u 203.0.113.23:53 -s sh -p 600 -M 255.255.255.0 -b sh-fallback'],
  ];
  for (const [s] of cases) await k.addService(s);
  for (const [s, selector, line] of cases) assert.equal(saved(selector), [line], JSON.stringify(s));
  await readBack(cases.map(([s]) => s));
});

test('updateService (SET_SERVICE) changes scheduler, flags and persistence in place, destinations kept', async () => {
  const base = svc({ port: 80 });
  await k.addService(base);
  await k.addDestination(base, dest('10.0.0.2', 8080));
  const persistent = { ...base, scheduler: 'sh', flags: SVC_F.PERSISTENT | SVC_F.SCHED2, timeout: 300, netmask: '255.255.0.0' };
  await k.updateService(persistent);
  assert.equal(saved('-t 203.0.113.20:80'), ['-A -t 203.0.113.20:80 -s sh -p 300 -M 255.255.0.0 -b sh-port', '-a -t 203.0.113.20:80 -r 10.0.0.2:8080 -m -w 1']);
  await readBack([persistent]);
  const plain = { ...base, scheduler: 'rr' };
  await k.updateService(plain);
  assert.equal(saved('-t 203.0.113.20:80')[0], '-A -t 203.0.113.20:80 -s rr');
  await readBack([plain]);
});

const V4 = svc({ address: '203.0.113.30', scheduler: 'wlc' });
const V6 = svc({ family: 6, address: '2001:db8::30', scheduler: 'wlc' });
const V4_DESTS = [
  dest('10.0.0.2', 8080, { weight: 3, upperThreshold: 100, lowerThreshold: 10 }),
  dest('10.0.0.3', 80, { forward: 'droute', weight: 2 }),
  dest('10.0.0.4', 80, { forward: 'tunnel', tunnelType: 'ipip', tunnelPort: 0, tunnelFlags: 0 }),
  dest('10.0.0.5', 80, { forward: 'tunnel', weight: 4, tunnelType: 'gue', tunnelPort: 6080, tunnelFlags: 1 }),
  dest('10.0.0.6', 80, { forward: 'tunnel', weight: 5, tunnelType: 'gre', tunnelPort: 0, tunnelFlags: 1 }),
  dest('10.0.0.7', 80, { forward: 'tunnel', weight: 6, tunnelType: 'gue', tunnelPort: 6081, tunnelFlags: 2 }),
];
const V6_DESTS = [
  dest('10.0.0.8', 80, { forward: 'tunnel', tunnelType: 'ipip', tunnelPort: 0, tunnelFlags: 0 }),
  dest('2001:db8::20', 8443, { weight: 7 }),
];

test('destinations of every forwarding method and tunnel type, IPv6 and mixed family', async () => {
  await k.addService(V4);
  await k.addService(V6);
  await Promise.all([...V4_DESTS.map((d) => k.addDestination(V4, d)), ...V6_DESTS.map((d) => k.addDestination(V6, d))]);
  assert.equal(saved('-t 203.0.113.30:80'), [
    '-A -t 203.0.113.30:80 -s wlc',
    '-a -t 203.0.113.30:80 -r 10.0.0.2:8080 -m -w 3',
    '-a -t 203.0.113.30:80 -r 10.0.0.3:80 -g -w 2',
    '-a -t 203.0.113.30:80 -r 10.0.0.4:80 -i -w 1 --tun-type ipip',
    '-a -t 203.0.113.30:80 -r 10.0.0.5:80 -i -w 4 --tun-type gue --tun-port 6080 --tun-csum',
    '-a -t 203.0.113.30:80 -r 10.0.0.6:80 -i -w 5 --tun-type gre --tun-csum',
    '-a -t 203.0.113.30:80 -r 10.0.0.7:80 -i -w 6 --tun-type gue --tun-port 6081 --tun-remcsum',
  ]);
  assert.equal(saved('-t [2001:db8::30]:80'), [
    '-A -t [2001:db8::30]:80 -s wlc',
    '-a -t [2001:db8::30]:80 -r 10.0.0.8:80 -i -w 1 --tun-type ipip',
    '-a -t [2001:db8::30]:80 -r [2001:db8::20]:8443 -m -w 7',
  ]);
  assert.equal(row('--thresholds', 'TCP 203.0.113.30:80', '10.0.0.2:8080').slice(0, 2), [100, 10]);
  // Weight PersistConn ActiveConn InActConn
  assert.equal(row('--persistent-conn', 'TCP [2001:db8::30]:80', '[2001:db8::20]:8443'), [7, 0, 0, 0]);
  assert.equal((await k.destinations(V4)).map(strip), V4_DESTS);
  const linkLocal = await rejects(k.addDestination(V6, dest('fe80::5', 80)));
  assert.equal([linkLocal.code, linkLocal.object], ['EINVAL', '[fe80::5]:80 to TCP [2001:db8::30]:80']);
  assert.equal((await k.destinations(V6)).map(strip), V6_DESTS);
});

test('updateDestination (SET_DEST), deleteDestination, deleteService', async () => {
  const changed = { ...V4_DESTS[0]!, forward: 'droute' as const, weight: 0, upperThreshold: 0, lowerThreshold: 0 };
  await k.updateDestination(V4, changed);
  await k.deleteDestination(V4, V4_DESTS[1]!);
  const lines = saved('-t 203.0.113.30:80');
  assert.equal(lines.slice(0, 3), ['-A -t 203.0.113.30:80 -s wlc', '-a -t 203.0.113.30:80 -r 10.0.0.2:8080 -g -w 0', '-a -t 203.0.113.30:80 -r 10.0.0.4:80 -i -w 1 --tun-type ipip']);
  assert.equal(row('--thresholds', 'TCP 203.0.113.30:80', '10.0.0.2:8080').slice(0, 2), [0, 0]);
  assert.equal((await k.destinations(V4)).map(strip), [changed, ...V4_DESTS.slice(2)]);
  await k.deleteService(V6);
  assert.equal(saved('-t [2001:db8::30]:80'), []);
});

test('kernel errors are typed IpvsErrors naming the operation, the object and the cause', async () => {
  const eexist = await rejects(k.addService(V4));
  assert.equal([eexist.op, eexist.code, eexist.errno], ['addService', 'EEXIST', 17]);
  assert.is(eexist.message, 'add service TCP 203.0.113.30:80: EEXIST — already exists');
  assert.is((await rejects(k.addDestination(V4, V4_DESTS[2]!))).message, 'add destination 10.0.0.4:80 to TCP 203.0.113.30:80: EEXIST — already exists');

  const missing = svc({ address: '198.51.100.99', port: 1 });
  const esrch = await rejects(k.deleteService(missing));
  assert.equal([esrch.op, esrch.code, esrch.errno], ['deleteService', 'ESRCH', 3]);
  assert.is(esrch.message, 'delete service TCP 198.51.100.99:1: ESRCH — no such service');
  assert.is((await rejects(k.updateService(missing))).code, 'ESRCH');
  assert.is((await rejects(k.addDestination(missing, dest('10.0.0.2', 80)))).code, 'ESRCH');

  const noSched = await rejects(k.addService(svc({ port: 81, scheduler: 'foo' })));
  assert.is(noSched.message, 'add service TCP 203.0.113.20:81: ENOENT — scheduler module ip_vs_foo not available');
  const noDest = await rejects(k.deleteDestination(V4, { family: 4, address: '10.0.0.99', port: 80 }));
  assert.is(noDest.message, 'delete destination 10.0.0.99:80 from TCP 203.0.113.30:80: ENOENT — no such destination in this service');
  assert.is((await rejects(k.updateDestination(V4, dest('10.0.0.99', 80)))).code, 'ENOENT');
});

test('EINVAL: destinations that are not unicast here, or an IPv6 real server behind an IPv4 VIP without TUN', async () => {
  for (const address of ['10.0.0.255', '224.0.0.9', '0.0.0.0']) {
    const e = await rejects(k.addDestination(V4, dest(address, 80)));
    assert.equal([e.op, e.code, e.errno], ['addDestination', 'EINVAL', 22], address);
    assert.match(e.message, new RegExp(`^add destination ${address.replace(/\./g, '\\.')}:80 to TCP 203\\.0\\.113\\.30:80: EINVAL — real server address`));
  }
  assert.is((await rejects(k.addDestination(V4, dest('2001:db8::40', 80)))).code, 'EINVAL');
  // The kernel checks the address type (inet_addr_type), not reachability: a unicast address
  // without any route is accepted.
  assert.throws(() => run(['ip', 'route', 'get', '192.0.2.77']), /unreachable/i, 'precondition: no route');
  await k.addDestination(V4, dest('192.0.2.77', 80));
  await k.deleteDestination(V4, dest('192.0.2.77', 80));
  assert.is((await rejects(k.addDestination(V4, dest('10.0.0.9', 80, { upperThreshold: 5, lowerThreshold: 10 })))).code, 'ERANGE');
});

test('bad input never reaches the kernel: EINVAL naming the field', async () => {
  const e = await rejects(k.addService(svc({ port: 70000 })));
  assert.equal([e.op, e.code], ['addService', 'EINVAL']);
  assert.match(e.message, /service\.port: 70000 is not an integer 0\.\.65535/);
  assert.not.match(ipvsadm('-S', '-n'), /70000|4464/);
});

test('EPERM without CAP_NET_ADMIN', () => {
  const script = `import { IpvsNetlink } from ${JSON.stringify(new URL('../../../dataplane/ipvs/netlink.ts', import.meta.url).pathname)};
    const k = await IpvsNetlink.open();
    const e = await k.addService({ family: 4, protocol: 'TCP', address: '203.0.113.40', port: 80, scheduler: 'rr', flags: 0, timeout: 0, netmask: '255.255.255.255' }).catch((e) => e);
    const d = await k.dump().catch((e) => e);
    console.log(JSON.stringify([e.op, e.code, e.message, d.op, d.code]));
    await k.close();`;
  const out = execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(JSON.parse(out), ['addService', 'EPERM', 'add service TCP 203.0.113.40:80: EPERM — needs CAP_NET_ADMIN', 'dumpServices', 'EPERM']);
});

test('timeouts round-trip; a zero leaves that timeout as it was', async () => {
  await k.setTimeouts({ tcp: 1000, tcpFin: 100, udp: 200 });
  assert.equal(await k.getTimeouts(), { tcp: 1000, tcpFin: 100, udp: 200 });
  assert.match(ipvsadm('-L', '--timeout'), /Timeout \(tcp tcpfin udp\): 1000 100 200/);
  await k.setTimeouts({ tcp: 0, tcpFin: 0, udp: 250 });
  assert.equal(await k.getTimeouts(), { tcp: 1000, tcpFin: 100, udp: 250 });
});

test('pipelined: 200 services × 5 destinations programmed and dumped back exactly', async () => {
  for (const s of await k.services()) await k.deleteService(s);
  const want = Array.from({ length: 200 }, (_, i) => {
    const six = i % 4 === 3;
    const service = svc(six
      ? { family: 6, address: `2001:db8:1::${(i + 1).toString(16)}`, port: 10000 + i, scheduler: 'rr' }
      : { protocol: i % 2 ? 'UDP' : 'TCP', address: '203.0.113.100', port: 10000 + i, scheduler: 'wlc' });
    const destinations = Array.from({ length: 5 }, (_, j) =>
      dest(six ? `2001:db8:2:${(i + 1).toString(16)}::${j + 1}` : `10.1.${i}.${j + 1}`, 8000 + j, { weight: j + 1 }));
    return { service, destinations };
  });
  let t = Date.now();
  await Promise.all(want.flatMap(({ service, destinations }) => [k.addService(service), ...destinations.map((d) => k.addDestination(service, d))]));
  const addMs = Date.now() - t;
  t = Date.now();
  const got = await k.dump();
  const dumpMs = Date.now() - t;
  const sortKey = (s: IpvsService) => (s.family === 6 ? `TCP/[${s.address}]:${s.port}` : `${s.protocol}/${s.address}:${s.port}`);
  const expected = [...want].sort((a, b) => (sortKey(a.service) < sortKey(b.service) ? -1 : 1));
  assert.equal(got.map((s) => ({ service: strip(s.service), destinations: s.destinations.map(strip) })), expected);
  // ipvsadm sees the same 1200 rules.
  const lines = ipvsadm('-S', '-n').trim().split('\n');
  assert.is(lines.filter((l) => l.startsWith('-A ')).length, 200);
  assert.is(lines.filter((l) => l.startsWith('-a ')).length, 1000);
  assert.ok(lines.includes('-a -t [2001:db8:1::c8]:10199 -r [2001:db8:2:c8::5]:8004 -m -w 5'));
  assert.ok(lines.includes('-a -u 203.0.113.100:10197 -r 10.1.197.3:8002 -m -w 3'));
  const one = await IpvsNetlink.open({ timeoutMs: 60_000, dumpConcurrency: 1 });
  t = Date.now();
  assert.equal((await one.dump()).length, 200);
  const serialMs = Date.now() - t;
  await one.close();
  console.log(`# 1200 pipelined adds ${addMs} ms; dump 200×5 with 4 sockets ${dumpMs} ms, with 1 socket ${serialMs} ms`);
});

test.run();
