// The IPVS codec against bytes a real kernel sent (test/fixtures/netlink, see its README): the
// decoder must yield what ipvsadm programmed and what ipvsadm itself reads back; the encoder must
// round-trip and refuse bad input naming the field.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { addressToBytes, bytesToAddress, hostPort } from '../../dataplane/ipvs/address.ts';
import {
  CMD_ATTR, DEST_ATTR, SVC_ATTR, decodeDestination, decodeInfo, decodeService, decodeTimeouts, describeService,
  encodeDestination, encodeDestinationKey, encodeService, encodeServiceKey, encodeTimeouts, serviceKeyOf, sortedByServiceKey,
} from '../../dataplane/ipvs/codec.ts';
import { IpvsError } from '../../dataplane/ipvs/errors.ts';
import {
  Attrs, AttrWriter, NetlinkCodecError, NLMSG_DONE, NLMSG_ERROR, parseDone, parseError, parseGenl, splitMessages,
  type NlMessage,
} from '../../dataplane/ipvs/nla.ts';
import type { IpvsDestination, IpvsService } from '../../dataplane/ipvs/types.ts';

const dir = join(dirname(fileURLToPath(import.meta.url)), '../fixtures/netlink');
const datagrams = (file: string): Buffer[] =>
  readFileSync(join(dir, file), 'utf8').split('\n').filter((l) => l && !l.startsWith('#')).map((l) => Buffer.from(l, 'hex'));
const messages = (file: string): NlMessage[] => datagrams(file).flatMap(splitMessages);
/** The data messages of a dump, after checking it ends with exactly one clean NLMSG_DONE. */
function dumpBody(file: string): Attrs[] {
  const all = messages(file);
  const last = all.at(-1)!;
  assert.is(last.type, NLMSG_DONE, `${file} ends with NLMSG_DONE`);
  assert.is(parseDone(last), 0);
  const body = all.slice(0, -1);
  for (const m of body) assert.ok(m.type >= 16, `${file}: data message has a genl family type, got ${m.type}`);
  return body.map((m) => new Attrs(parseGenl(m).attrs, 'reply'));
}
const withoutStats = <T extends { stats?: unknown }>(x: T): Omit<T, 'stats'> => {
  const { stats: _s, ...rest } = x;
  return rest;
};

// What program.txt told the kernel (ipvsadm defaults: IPv4 mask 255.255.255.255, no flags).
const v4 = { family: 4 as const, flags: 0, timeout: 0, netmask: '255.255.255.255' };
const EXPECTED_SERVICES: IpvsService[] = [
  { ...v4, protocol: 'TCP', address: '0.0.0.0', port: 0, fwmark: 7, scheduler: 'rr' },
  { ...v4, protocol: 'SCTP', address: '203.0.113.13', port: 9000, scheduler: 'lc' },
  { ...v4, protocol: 'TCP', address: '203.0.113.10', port: 80, scheduler: 'wrr' },
  // mh-port = SCHED2 (0x10), persistent = 0x1; an IPv6 netmask is a prefix length.
  { family: 6, protocol: 'TCP', address: '2001:db8::10', port: 443, scheduler: 'mh', flags: 0x11, timeout: 300, netmask: '64' },
  // sh-fallback|sh-port = SCHED1|SCHED2, persistent.
  { ...v4, protocol: 'UDP', address: '203.0.113.11', port: 53, scheduler: 'sh', flags: 0x19, timeout: 600, netmask: '255.255.255.0' },
  // one-packet = 0x4, persistent, the sip persistence engine.
  { ...v4, protocol: 'UDP', address: '203.0.113.12', port: 5060, scheduler: 'rr', flags: 0x5, timeout: 60, pe: 'sip' },
];
const d4 = (address: string, port: number, rest: Partial<IpvsDestination>): IpvsDestination =>
  ({ family: 4, address, port, forward: 'masq', weight: 1, upperThreshold: 0, lowerThreshold: 0, ...rest });
const EXPECTED_DESTS: Record<string, IpvsDestination[]> = {
  'dests-FWM_7_IPv4_.hex': [
    d4('10.0.0.5', 0, { forward: 'tunnel', weight: 5, tunnelType: 'gue', tunnelPort: 6080, tunnelFlags: 2 }),
    d4('10.0.0.7', 0, { forward: 'tunnel', weight: 4, tunnelType: 'gre', tunnelPort: 0, tunnelFlags: 1 }),
  ],
  'dests-SCTP_203.0.113.13_9000.hex': [],
  'dests-TCP_203.0.113.10_80.hex': [
    d4('10.0.0.2', 8080, { weight: 3 }),
    d4('10.0.0.3', 8080, { weight: 1, upperThreshold: 100, lowerThreshold: 10 }),
  ],
  'dests-TCP_2001_db8_10_443.hex': [
    d4('10.0.0.6', 443, { forward: 'tunnel', tunnelType: 'ipip', tunnelPort: 0, tunnelFlags: 0 }),
    { ...d4('2001:db8::20', 8443, { weight: 7 }), family: 6 },
  ],
  'dests-UDP_203.0.113.11_53.hex': [d4('10.0.0.4', 53, { forward: 'droute', weight: 2 })],
  'dests-UDP_203.0.113.12_5060.hex': [],
};
const destFile = (s: IpvsService) => `dests-${describeService(s).replace(/[^\w.]+/g, '_')}.hex`;
const byAddr = (a: IpvsDestination, b: IpvsDestination) => (a.address < b.address ? -1 : 1);

const decodedServices = () => dumpBody('services.hex').map((a) => decodeService(a));
const decodedDests = (s: IpvsService) => dumpBody(destFile(s)).map((a) => decodeDestination(a, s.family)).sort(byAddr);

/** ipvsadm -Ln tables: "TCP 203.0.113.10:80" / "FWM 7" → numeric columns, per destination too. */
function ipvsadmTable(file: string): Map<string, number[]> {
  const rows = new Map<string, number[]>();
  let service = '';
  for (const line of readFileSync(join(dir, file), 'utf8').split('\n')) {
    const t = line.trim().split(/\s+/);
    if (['TCP', 'UDP', 'SCTP', 'FWM'].includes(t[0]!)) {
      service = `${t[0]} ${t[1]}`;
      rows.set(service, t.slice(2).map(Number));
    } else if (t[0] === '->' && /\d$/.test(t[1]!)) {
      rows.set(`${service} -> ${t[1]}`, t.slice(2).filter((x) => /^\d+$/.test(x)).map(Number));
    }
  }
  return rows;
}
const label = (s: IpvsService) => (s.fwmark ? `FWM ${s.fwmark}` : `${s.protocol} ${hostPort(s.address, s.port)}`);

const kernel = suite('ipvs codec: bytes captured from Linux 6.1');

kernel('without counters (the listing sync\'s decode): the same services, no stats', () => {
  const lean = dumpBody('services.hex').map((a) => decodeService(a, { stats: false }));
  assert.ok(decodedServices().every((s) => s.stats !== undefined), 'the full decode has counters');
  assert.ok(lean.every((s) => !('stats' in s)));
  assert.equal(lean, decodedServices().map(withoutStats));
});

kernel('the service dump decodes to exactly what ipvsadm programmed', () => {
  const got = decodedServices().map(withoutStats);
  assert.equal(got.sort((a, b) => (label(a) < label(b) ? -1 : 1)),
    [...EXPECTED_SERVICES].sort((a, b) => (label(a) < label(b) ? -1 : 1)));
});

kernel('a service dump packs several messages into one datagram', () => {
  const first = datagrams('services.hex')[0]!;
  assert.ok(splitMessages(first).length >= 6, 'all six services in the first datagram');
});

kernel('each destination dump decodes to what ipvsadm programmed (mixed families, tunnels, thresholds)', () => {
  for (const s of decodedServices()) {
    assert.equal(decodedDests(s).map(withoutStats), EXPECTED_DESTS[destFile(s)], destFile(s));
  }
});

kernel('decoded counters equal what ipvsadm --stats / --persistent-conn / --thresholds read', () => {
  const stats = ipvsadmTable('ipvsadm-stats.txt');
  const persist = ipvsadmTable('ipvsadm-persistent.txt');
  const thresholds = ipvsadmTable('ipvsadm-thresholds.txt');
  let nonZero = 0;
  for (const s of decodedServices()) {
    const st = s.stats!;
    assert.equal([st.conns, st.inPkts, st.outPkts, st.inBytes, st.outBytes], stats.get(label(s)), label(s));
    for (const d of decodedDests(s)) {
      const key = `${label(s)} -> ${hostPort(d.address, d.port)}`;
      const ds = d.stats!;
      assert.equal([ds.conns, ds.inPkts, ds.outPkts, ds.inBytes, ds.outBytes], stats.get(key), `${key} stats`);
      assert.equal([d.weight, ds.persistConns, ds.activeConns, ds.inactiveConns], persist.get(key), `${key} conns`);
      assert.equal([d.upperThreshold, d.lowerThreshold, ds.activeConns, ds.inactiveConns], thresholds.get(key), `${key} thresholds`);
      nonZero += ds.inPkts;
    }
  }
  assert.is(nonZero, 4, 'the captured traffic (3 UDP datagrams, 1 SYN) shows up');
});

kernel('GET_INFO and GET_CONFIG replies', () => {
  const [info, ack] = messages('info.hex');
  assert.equal(decodeInfo(new Attrs(parseGenl(info!).attrs, 'info')), { version: '1.2.1', connTableSize: 4096 });
  assert.equal(parseError(ack!), { errno: 0 }, 'the reply is followed by an ACK');
  const [config] = messages('config.hex');
  assert.equal(decodeTimeouts(new Attrs(parseGenl(config!).attrs, 'config')), { tcp: 1000, tcpFin: 100, udp: 200 });
});

kernel('kernel errors: EEXIST and ESRCH with the request echoed', () => {
  const [eexist] = messages('error-eexist.hex');
  const [esrch] = messages('error-esrch.hex');
  assert.is(eexist!.type, NLMSG_ERROR);
  assert.equal(parseError(eexist!), { errno: 17 });
  assert.equal(parseError(esrch!), { errno: 3 });
  // The echoed request starts after the int error: our own DEL_SERVICE, sent with seq = reply seq.
  assert.is(esrch!.payload.readUInt32LE(4 + 8), esrch!.seq);
});

const codec = suite('ipvs codec: encode');

codec('every decoded kernel object survives encode → decode unchanged', () => {
  for (const s of decodedServices()) {
    const svc = withoutStats(s);
    assert.equal(decodeService(new Attrs(encodeService(svc), 'enc')), svc, label(s));
    for (const d of decodedDests(s)) {
      const dest = withoutStats(d);
      assert.equal(decodeDestination(new Attrs(encodeDestination(s, dest), 'enc'), s.family), dest, `${label(s)} ${d.address}`);
    }
  }
});

codec('every forwarding method maps to its IP_VS_CONN_F_* number and back', () => {
  const s = EXPECTED_SERVICES[2]!;
  const numbers = { masq: 0, local: 1, tunnel: 2, droute: 3, bypass: 4 } as const;
  for (const [forward, n] of Object.entries(numbers)) {
    const d = d4('10.0.0.9', 80, { forward: forward as IpvsDestination['forward'] });
    if (forward === 'tunnel') Object.assign(d, { tunnelType: 'ipip', tunnelPort: 0, tunnelFlags: 0 });
    const enc = new Attrs(encodeDestination(s, d), 'e');
    assert.is(enc.nested(CMD_ATTR.DEST, 'd')!.u32(DEST_ATTR.FWD_METHOD, 'fwd'), n, forward);
    assert.equal(decodeDestination(enc, 4), d, forward);
  }
});

codec('identifying attributes are byte-identical to the kernel\'s', () => {
  const [first] = dumpBody('dests-TCP_2001_db8_10_443.hex');
  const kernelDest = first!.nested(CMD_ATTR.DEST, 'dest')!;
  const ours = new Attrs(encodeDestinationKey(EXPECTED_SERVICES[3]!, { family: 4, address: '10.0.0.6', port: 443 }), 'enc');
  const oursDest = ours.nested(CMD_ATTR.DEST, 'dest')!;
  for (const t of [DEST_ATTR.ADDR, DEST_ATTR.PORT, DEST_ATTR.ADDR_FAMILY]) assert.equal(oursDest.raw(t), kernelDest.raw(t), `attr ${t}`);
  const kernelSvc = dumpBody('services.hex').map((a) => a.nested(CMD_ATTR.SERVICE, 's')!).find((a) => a.u16(SVC_ATTR.AF, 'af') === 10)!;
  const oursSvc = new Attrs(encodeService(EXPECTED_SERVICES[3]!), 'enc').nested(CMD_ATTR.SERVICE, 's')!;
  for (const t of [SVC_ATTR.AF, SVC_ATTR.PROTOCOL, SVC_ATTR.ADDR, SVC_ATTR.PORT, SVC_ATTR.NETMASK, SVC_ATTR.TIMEOUT, SVC_ATTR.SCHED_NAME]) {
    assert.equal(oursSvc.raw(t), kernelSvc.raw(t), `service attr ${t}`);
  }
});

codec('sortedByServiceKey: the kernel\'s services in service-key order (IPv4, IPv6 spellings, fwmarks), input untouched', () => {
  const mixed = [...decodedServices(), ...decodedServices().map((s) => (s.family === 6 ? { ...s, address: s.address.toUpperCase() } : s))].reverse();
  const before = mixed.map((s) => s.address);
  const keys = sortedByServiceKey(mixed).map(serviceKeyOf);
  assert.equal(keys, mixed.map(serviceKeyOf).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
  assert.ok(keys.length > 4 && keys.some((k) => k.startsWith('FWM')) && keys.some((k) => k.includes(':')), keys.join(' '));
  assert.equal(mixed.map((s) => s.address), before);
});

codec('a fwmark service key carries AF and FWMARK only; a key-only dest omits the full-entry fields', () => {
  const key = new Attrs(encodeServiceKey({ family: 6, protocol: 'TCP', address: '::', port: 0, fwmark: 9 }), 'k').nested(CMD_ATTR.SERVICE, 's')!;
  assert.equal(key.types().sort((a, b) => a - b), [SVC_ATTR.AF, SVC_ATTR.FWMARK]);
  assert.is(key.u32(SVC_ATTR.FWMARK, 'fwmark'), 9);
  const d = new Attrs(encodeDestinationKey(EXPECTED_SERVICES[2]!, { family: 4, address: '10.0.0.2', port: 8080 }), 'k').nested(CMD_ATTR.DEST, 'd')!;
  assert.equal(d.types().sort((a, b) => a - b), [DEST_ATTR.ADDR, DEST_ATTR.PORT, DEST_ATTR.ADDR_FAMILY]);
});

codec('HASHED is never sent and is masked out of what the kernel reports', () => {
  const svc = { ...EXPECTED_SERVICES[2]!, flags: 0x2 | 0x4 };
  const flags = new Attrs(encodeService(svc), 'e').nested(CMD_ATTR.SERVICE, 's')!.raw(SVC_ATTR.FLAGS)!;
  assert.equal([flags.readUInt32LE(0), flags.readUInt32LE(4)], [0x4, 0xffffffff], '{flags, mask}: replace every bit');
  const kernelFlags = dumpBody('services.hex')[0]!.nested(CMD_ATTR.SERVICE, 's')!.raw(SVC_ATTR.FLAGS)!;
  assert.is(kernelFlags.readUInt32LE(0) & 0x2, 0x2, 'the kernel reports HASHED on a live service');
});

codec('timeouts encode as three u32 attributes', () => {
  assert.equal(decodeTimeouts(new Attrs(encodeTimeouts({ tcp: 900, tcpFin: 0, udp: 5 }), 't')), { tcp: 900, tcpFin: 0, udp: 5 });
});

const throwsField = (fn: () => unknown, field: string, reason: RegExp) => {
  try {
    fn();
  } catch (err) {
    assert.instance(err, NetlinkCodecError);
    assert.is((err as NetlinkCodecError).field, field);
    assert.match((err as Error).message, reason);
    return;
  }
  assert.unreachable(`expected a NetlinkCodecError on ${field}`);
};

codec('bad input is refused naming the field and the reason', () => {
  const s = EXPECTED_SERVICES[2]!;
  const d = EXPECTED_DESTS['dests-TCP_203.0.113.10_80.hex']![0]!;
  throwsField(() => encodeService({ ...s, port: 70000 }), 'service.port', /70000 is not an integer 0\.\.65535/);
  throwsField(() => encodeService({ ...s, address: '2001:db8::1' }), 'service.address', /not an IPv4 address/);
  throwsField(() => encodeService({ ...s, family: 5 as 4 }), 'service.family', /not 4 or 6/);
  throwsField(() => encodeService({ ...s, protocol: 'ICMP' as 'TCP' }), 'service.protocol', /TCP, UDP, SCTP/);
  throwsField(() => encodeService({ ...s, scheduler: 'a-very-long-scheduler' }), 'service.scheduler', /1\.\.15/);
  throwsField(() => encodeService({ ...s, scheduler: '' }), 'service.scheduler', /module name/);
  throwsField(() => encodeService({ ...EXPECTED_SERVICES[3]!, netmask: '129' }), 'service.netmask', /prefix length 1\.\.128/);
  throwsField(() => encodeService({ ...s, netmask: '255.255.0' }), 'service.netmask', /not an IPv4 address/);
  throwsField(() => encodeService({ ...s, timeout: -1 }), 'service.timeout', /-1/);
  throwsField(() => encodeDestination(s, { ...d, weight: -1 }), 'destination.weight', /-1 is not an integer/);
  throwsField(() => encodeDestination(s, { ...d, forward: 'nat' as 'masq' }), 'destination.forward', /masq, local, tunnel, droute, bypass/);
  throwsField(() => encodeDestination(s, { ...d, tunnelType: 'vxlan' as 'gue' }), 'destination.tunnelType', /ipip, gue, gre/);
  throwsField(() => encodeDestination(s, { ...d, address: '10.0.0.300' }), 'destination.address', /not an IPv4 address/);
});

codec('malformed kernel bytes are refused naming the attribute set', () => {
  const good = dumpBody('services.hex')[0]!.raw(CMD_ATTR.SERVICE)!;
  const cut = Buffer.concat([new AttrWriter().put(CMD_ATTR.SERVICE, good.subarray(0, 30)).bytes()]);
  throwsField(() => decodeService(new Attrs(cut, 'reply')), 'reply.service', /claims \d+ bytes/);
  const noAf = new AttrWriter().nested(CMD_ATTR.SERVICE, (w) => w.u32(SVC_ATTR.FWMARK, 1)).bytes();
  throwsField(() => decodeService(new Attrs(noAf, 'reply')), 'reply.service.af', /missing/);
  // A real destination whose PORT is repeated with one byte (the last occurrence wins, as in nla_parse).
  const kernelDest = dumpBody('dests-TCP_203.0.113.10_80.hex')[0]!.raw(CMD_ATTR.DEST)!;
  const shortPort = new AttrWriter().put(CMD_ATTR.DEST, Buffer.concat([kernelDest, new AttrWriter().u8(DEST_ATTR.PORT, 1).bytes()])).bytes();
  throwsField(() => decodeDestination(new Attrs(shortPort, 'reply'), 4), 'reply.destination.port', /1 bytes, expected 2/);
  throwsField(() => splitMessages(Buffer.alloc(20, 0xff)), 'nlmsghdr', /claims \d+ bytes, 20 left/);
});

const addr = suite('ipvs codec: addresses');

addr('nf_inet_addr bytes and canonical text', () => {
  assert.is(addressToBytes(4, '192.0.2.1', 'a').toString('hex'), 'c0000201' + '0'.repeat(24));
  assert.is(addressToBytes(6, '2001:DB8:0:0::1', 'a').toString('hex'), '20010db8' + '0'.repeat(22) + '01');
  assert.is(addressToBytes(6, '::ffff:192.0.2.1', 'a').toString('hex'), '0'.repeat(20) + 'ffffc0000201');
  assert.is(bytesToAddress(6, Buffer.from('20010db8000000000001000000000001', 'hex')), '2001:db8::1:0:0:1');
  assert.is(bytesToAddress(6, Buffer.alloc(16)), '::');
  for (const a of ['2001:db8::1', 'fe80::1:0:0:0', '::1', '::ffff:192.0.2.1', '1:2:3:4:5:6:7:8']) {
    assert.is(bytesToAddress(6, addressToBytes(6, a, 'a')), a);
  }
});

const errors = suite('ipvs errors');

errors('messages name the operation, the object and the likely cause; fields are typed', () => {
  const e = new IpvsError('addDestination', 22, { object: '10.0.0.3:8080 to TCP 203.0.113.10:80' });
  assert.match(e.message, /^add destination 10\.0\.0\.3:8080 to TCP 203\.0\.113\.10:80: EINVAL — real server address/);
  assert.equal([e.op, e.errno, e.code, e.object], ['addDestination', 22, 'EINVAL', '10.0.0.3:8080 to TCP 203.0.113.10:80']);
  assert.is(new IpvsError('addService', 2, { object: 'TCP 203.0.113.10:80', scheduler: 'foo' }).message,
    'add service TCP 203.0.113.10:80: ENOENT — scheduler module ip_vs_foo not available');
  assert.match(new IpvsError('addService', 17, { object: 'x' }).message, /EEXIST — already exists$/);
  assert.match(new IpvsError('deleteService', 3, { object: 'x' }).message, /ESRCH — no such service$/);
  assert.match(new IpvsError('addService', 1, { object: 'x' }).message, /EPERM — needs CAP_NET_ADMIN$/);
  assert.match(new IpvsError('deleteDestination', 2, { object: 'x' }).message, /ENOENT — no such destination/);
  assert.is(new IpvsError('open', 2, {}).message, 'open IPVS netlink: ENOENT — kernel has no IPVS (modprobe ip_vs)');
  assert.is(new IpvsError('addService', 17, 'short form').message, 'addService: EEXIST (short form)', 'the original form still works');
});

kernel.run();
codec.run();
addr.run();
errors.run();
