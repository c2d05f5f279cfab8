// The batch encoder (dataplane/ipvs/encoder.ts) against the codec the kernel tier verified:
// byte-identical messages for many random services and destinations of both families, the same
// NetlinkCodecError for bad input, and the very bytes of a NEW_SERVICE request Linux 6.1 echoed back
// in its EEXIST error (test/fixtures/netlink/error-eexist.hex).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CMD, encodeDestination, encodeDestinationKey, encodeService, encodeServiceKey, IPVS_GENL_VERSION,
} from '../../dataplane/ipvs/codec.ts';
import { MessageWriter } from '../../dataplane/ipvs/encoder.ts';
import { encodeGenlRequest, NLM_F_ACK, NLM_F_REQUEST, splitMessages } from '../../dataplane/ipvs/nla.ts';
import type { IpvsDestination, IpvsService, IpvsWrite } from '../../dataplane/ipvs/types.ts';

const test = suite('ipvs batch encoder');
const FAMILY = 0x20;

/** A small deterministic PRNG (mulberry32), so a failure can be replayed. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(14);
const int = (n: number) => Math.floor(rand() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;

function ipv4(): string { return [1 + int(223), int(256), int(256), 1 + int(254)].join('.'); }
/** IPv6 in several spellings: canonical, full, upper case, with a dotted IPv4 tail. */
function ipv6(): string {
  const g = Array.from({ length: 8 }, () => (rand() < 0.4 ? 0 : int(0x10000)));
  g[0] = 0x2001; g[1] = 0xdb8;
  const full = g.map((x) => x.toString(16)).join(':');
  switch (int(4)) {
    case 0: return full;
    case 1: return full.toUpperCase();
    case 2: return `${g.slice(0, 6).map((x) => x.toString(16)).join(':')}:${g[6]! >> 8}.${g[6]! & 0xff}.${g[7]! >> 8}.${g[7]! & 0xff}`;
    default: return new URL(`http://[${full}]/`).hostname.slice(1, -1); // compressed form
  }
}

function service(): IpvsService {
  const family = rand() < 0.5 ? 4 : 6;
  const s: IpvsService = {
    family, protocol: pick(['TCP', 'UDP', 'SCTP'] as const), address: family === 4 ? ipv4() : ipv6(), port: int(65536),
    scheduler: pick(['rr', 'wrr', 'lc', 'sh', 'mh', 'ovf']), flags: int(64), timeout: rand() < 0.5 ? 0 : int(100_000),
    netmask: family === 4 ? pick(['255.255.255.255', '255.255.255.0', '255.255.0.0']) : String(1 + int(128)),
  };
  if (rand() < 0.2) s.fwmark = 1 + int(0xffffffff);
  if (rand() < 0.2) s.pe = 'sip';
  return s;
}

function destination(): IpvsDestination {
  const family = rand() < 0.5 ? 4 : 6;
  const d: IpvsDestination = {
    family, address: family === 4 ? ipv4() : ipv6(), port: int(65536), forward: pick(['masq', 'local', 'tunnel', 'droute', 'bypass'] as const),
    weight: int(0x7fffffff), upperThreshold: int(0xffffffff), lowerThreshold: int(1000),
  };
  if (d.forward === 'tunnel' && rand() < 0.7) {
    d.tunnelType = pick(['ipip', 'gue', 'gre'] as const); d.tunnelPort = int(65536); d.tunnelFlags = int(8);
  }
  return d;
}

function randomWrite(): IpvsWrite {
  const s = service();
  switch (int(6)) {
    case 0: return { kind: 'addService', service: s };
    case 1: return { kind: 'updateService', service: s };
    case 2: return { kind: 'deleteService', service: s };
    case 3: return { kind: 'addDestination', service: s, destination: destination() };
    case 4: return { kind: 'updateDestination', service: s, destination: destination() };
    default: return { kind: 'deleteDestination', service: s, destination: destination() };
  }
}

/** What the one-op path (codec.ts + encodeGenlRequest) sends for this write. */
function reference(w: IpvsWrite, flags: number, seq: number): Buffer {
  const attrs = {
    addService: () => encodeService(w.service as IpvsService), updateService: () => encodeService(w.service as IpvsService),
    deleteService: () => encodeServiceKey(w.service),
    addDestination: () => encodeDestination(w.service, (w as { destination: IpvsDestination }).destination),
    updateDestination: () => encodeDestination(w.service, (w as { destination: IpvsDestination }).destination),
    deleteDestination: () => encodeDestinationKey(w.service, (w as { destination: IpvsDestination }).destination),
  }[w.kind]();
  const cmd = { addService: CMD.NEW_SERVICE, updateService: CMD.SET_SERVICE, deleteService: CMD.DEL_SERVICE,
    addDestination: CMD.NEW_DEST, updateDestination: CMD.SET_DEST, deleteDestination: CMD.DEL_DEST }[w.kind];
  return encodeGenlRequest({ family: FAMILY, cmd, version: IPVS_GENL_VERSION, flags, seq, attrs });
}

test('5,000 random writes of both families: every message byte-identical to the codec\'s, packed back to back', () => {
  const w = new MessageWriter(256); // small, so the buffer grows many times
  const writes = Array.from({ length: 5000 }, randomWrite);
  const expected: Buffer[] = [];
  writes.forEach((x, i) => {
    const flags = i % 3 ? NLM_F_REQUEST : NLM_F_REQUEST | NLM_F_ACK;
    w.write(FAMILY, x, flags, i + 1);
    expected.push(reference(x, flags, i + 1));
  });
  assert.is(w.count, 5000);
  assert.ok(w.bytes().equals(Buffer.concat(expected)), 'the whole buffer equals the concatenated codec messages');
  const msgs = splitMessages(w.bytes());
  assert.is(msgs.length, 5000);
  w.offsets.forEach((off, i) => assert.ok(w.bytes().subarray(off, off + expected[i]!.length).equals(expected[i]!), `message ${i} (${writes[i]!.kind})`));
});

test('the service identity is the same for every write of one service, whatever the address spelling', () => {
  const w = new MessageWriter();
  const s: IpvsService = { family: 6, protocol: 'TCP', address: '2001:db8::10', port: 443, scheduler: 'rr', flags: 0, timeout: 0, netmask: '128' };
  const d: IpvsDestination = { family: 4, address: '10.0.0.1', port: 80, forward: 'tunnel', weight: 1, upperThreshold: 0, lowerThreshold: 0 };
  const a = w.write(FAMILY, { kind: 'addService', service: s }, NLM_F_REQUEST, 1);
  const b = w.write(FAMILY, { kind: 'addDestination', service: { ...s, address: '2001:DB8:0:0::10' }, destination: d }, NLM_F_REQUEST, 2);
  const c = w.write(FAMILY, { kind: 'deleteService', service: { ...s, port: 444 } }, NLM_F_REQUEST, 3);
  assert.is(a, b);
  assert.is.not(a, c);
});

test('bad input: the same NetlinkCodecError as the codec, and the writer unchanged', () => {
  const good = service();
  const bad: IpvsWrite[] = [
    { kind: 'addService', service: { ...good, scheduler: 'no such!' } },
    { kind: 'addService', service: { ...good, family: 4, fwmark: 0, address: '2001:db8::1' } },
    { kind: 'addService', service: { ...good, family: 6, netmask: '129' } },
    { kind: 'addService', service: { ...good, family: 4, netmask: '255.255.255.256' } },
    { kind: 'updateService', service: { ...good, fwmark: 0, port: 70000 } },
    { kind: 'addDestination', service: good, destination: { ...destination(), weight: -1 } },
    { kind: 'addDestination', service: good, destination: { ...destination(), family: 4, address: 'fe80::1%eth0' } },
    { kind: 'deleteDestination', service: { ...good, family: 6, fwmark: 0, address: '1.2.3.4' }, destination: destination() },
    { kind: 'updateDestination', service: good, destination: { ...destination(), forward: 'tunnel', tunnelType: 'vxlan' as never } },
  ];
  const w = new MessageWriter();
  w.write(FAMILY, { kind: 'addService', service: good }, NLM_F_REQUEST, 1);
  const before = Buffer.from(w.bytes());
  for (const x of bad) {
    let want = '';
    try { reference(x, NLM_F_REQUEST, 2); } catch (err) { want = (err as Error).message; }
    assert.ok(want, `the codec refuses ${JSON.stringify(x)}`);
    assert.throws(() => w.write(FAMILY, x, NLM_F_REQUEST, 2), (err: Error) => err.name === 'NetlinkCodecError' && err.message === want);
    assert.ok(w.bytes().equals(before));
    assert.is(w.count, 1);
  }
});

test('the NEW_SERVICE request Linux 6.1 echoed in its EEXIST error, byte for byte', () => {
  const dir = join(dirname(fileURLToPath(import.meta.url)), '../fixtures/netlink');
  const line = readFileSync(join(dir, 'error-eexist.hex'), 'utf8').split('\n').find((l) => l && !l.startsWith('#'))!;
  const [err] = splitMessages(Buffer.from(line, 'hex'));
  // struct nlmsgerr: int error, then the request as we sent it (its header and payload).
  const echoed = err!.payload.subarray(4);
  const len = echoed.readUInt32LE(0);
  const familyId = echoed.readUInt16LE(4), flags = echoed.readUInt16LE(6), seq = echoed.readUInt32LE(8);
  const svc: IpvsService = { family: 4, protocol: 'TCP', address: '0.0.0.0', port: 0, fwmark: 7, scheduler: 'rr', flags: 0, timeout: 0, netmask: '255.255.255.255' };
  const w = new MessageWriter();
  w.write(familyId, { kind: 'addService', service: svc }, flags, seq);
  assert.is(w.length, len);
  assert.ok(w.bytes().equals(echoed.subarray(0, len)), `${w.bytes().toString('hex')}\n${echoed.subarray(0, len).toString('hex')}`);
});

test.run();
