// IpvsNetlink.applyBatch against a simulated kernel: the client's real NETLINK_GENERIC socket with
// send() replaced by netlink_rcv_skb's behaviour over the fake kernel — every message of a buffer
// decoded and run in order, an NLMSG_ERROR queued for a message that failed or asked for an ACK,
// all replies of the buffer in one datagram. Checks the packing (few writes, ACK on the last
// message only), errors mapped to their write by sequence number, skipped destinations after a
// failed service, the fallback after lost replies (ENOBUFS) or a failed sendmsg, and that
// dataplane/sync/apply.ts gives the same outcome through applyBatch as through the one-op methods.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import pino from 'pino';
import { CMD, CMD_ATTR, decodeDestination, decodeService, DEST_ATTR, SVC_ATTR } from '../../dataplane/ipvs/codec.ts';
import { bytesToAddress } from '../../dataplane/ipvs/address.ts';
import { IpvsError } from '../../dataplane/ipvs/errors.ts';
import { IpvsNetlink } from '../../dataplane/ipvs/netlink.ts';
import { Attrs, NLM_F_ACK, NLMSG_ERROR, parseGenl, splitMessages, type NlMessage } from '../../dataplane/ipvs/nla.ts';
import { FakeIpvsKernel } from '../../dataplane/ipvs/testing/fake.ts';
import type { IpvsDestination, IpvsKernel, IpvsService, IpvsServiceKey, IpvsWrite } from '../../dataplane/ipvs/types.ts';
import { applyOps } from '../../dataplane/sync/apply.ts';
import type { SyncOp } from '../../dataplane/sync/diff.ts';

const test = suite('ipvs netlink applyBatch (simulated netlink_rcv_skb)');

function keyOf(top: Attrs): IpvsServiceKey {
  const a = top.nested(CMD_ATTR.SERVICE, 'service')!;
  const family = a.u16(SVC_ATTR.AF, 'af') === 2 ? 4 : 6;
  const fwmark = a.u32(SVC_ATTR.FWMARK, 'fwmark');
  if (fwmark) return { family, fwmark, protocol: 'TCP', address: family === 4 ? '0.0.0.0' : '::', port: 0 };
  const protocol = ({ 6: 'TCP', 17: 'UDP', 132: 'SCTP' } as const)[a.u16(SVC_ATTR.PROTOCOL, 'p') as 6];
  return { family, protocol, address: bytesToAddress(family, a.bytes(SVC_ATTR.ADDR, 'addr', 16)!), port: a.be16(SVC_ATTR.PORT, 'port')! };
}

function destKeyOf(top: Attrs): Pick<IpvsDestination, 'family' | 'address' | 'port'> {
  const a = top.nested(CMD_ATTR.DEST, 'dest')!;
  const family = a.u16(DEST_ATTR.ADDR_FAMILY, 'af') === 2 ? 4 : 6;
  return { family, address: bytesToAddress(family, a.bytes(DEST_ATTR.ADDR, 'addr', 16)!), port: a.be16(DEST_ATTR.PORT, 'port')! };
}

async function run(fake: FakeIpvsKernel, m: NlMessage): Promise<void> {
  const g = parseGenl(m);
  const top = new Attrs(g.attrs, 'request');
  const svc = keyOf(top);
  switch (g.cmd) {
    case CMD.NEW_SERVICE: return fake.addService(decodeService(top));
    case CMD.SET_SERVICE: return fake.updateService(decodeService(top));
    case CMD.DEL_SERVICE: return fake.deleteService(svc);
    case CMD.NEW_DEST: return fake.addDestination(svc, decodeDestination(top, svc.family));
    case CMD.SET_DEST: return fake.updateDestination(svc, decodeDestination(top, svc.family));
    case CMD.DEL_DEST: return fake.deleteDestination(svc, destKeyOf(top));
    default: throw new Error(`unexpected command ${g.cmd}`);
  }
}

function nlmsgerr(req: NlMessage, errno: number): Buffer {
  const b = Buffer.alloc(16 + 4 + 16);
  b.writeUInt32LE(b.length, 0); b.writeUInt16LE(NLMSG_ERROR, 4); b.writeUInt32LE(req.seq, 8);
  b.writeInt32LE(-errno, 16);
  b.writeUInt32LE(16 + req.payload.length, 20); b.writeUInt32LE(req.seq, 28); // the echoed header
  return b;
}

interface Sim { k: IpvsNetlink; fake: FakeIpvsKernel; sent: Buffer[]; lose: Set<number>; sendFail: Set<number> }

/** `lose`: write numbers (1-based) whose replies are lost (socket error ENOBUFS); `sendFail`: whose sendmsg fails. */
async function simulated(opts: { batchMessages?: number } = {}): Promise<Sim> {
  const fake = new FakeIpvsKernel();
  const k = await IpvsNetlink.open({ resolveFamily: async () => 0x20, dumpConcurrency: 1, timeoutMs: 5_000, ...opts });
  const socket = (k as unknown as { channels: Array<{ socket: { emit(e: string, ...a: unknown[]): boolean; send: unknown } }> }).channels[0]!.socket;
  const sim: Sim = { k, fake, sent: [], lose: new Set(), sendFail: new Set() };
  socket.send = (bytes: Buffer, _o: object, cb?: (e?: Error) => void) => {
    sim.sent.push(Buffer.from(bytes));
    const n = sim.sent.length;
    if (sim.sendFail.has(n)) { setImmediate(() => cb?.(Object.assign(new Error('sendmsg'), { errno: -105 }))); return; }
    void (async () => {
      const replies: Buffer[] = [];
      for (const m of splitMessages(bytes)) {
        let errno = 0;
        try { await run(fake, m); } catch (err) { errno = (err as IpvsError).errno; }
        if (errno !== 0 || m.flags & NLM_F_ACK) replies.push(nlmsgerr(m, errno));
      }
      cb?.();
      if (sim.lose.has(n)) socket.emit('error', Object.assign(new Error('recvmsg'), { errno: -105 }));
      else socket.emit('message', Buffer.concat(replies));
    })();
  };
  return sim;
}

const svc = (i: number, over: Partial<IpvsService> = {}): IpvsService =>
  ({ family: 4, protocol: 'TCP', address: `203.0.${113 + (i >> 8)}.${i & 0xff}`, port: 80, scheduler: 'rr', flags: 0, timeout: 0, netmask: '255.255.255.255', ...over });
const dst = (j: number): IpvsDestination =>
  ({ family: 4, address: `10.1.${j >> 8}.${(j & 0xff) + 1}`, port: 8080, forward: 'masq', weight: 1, upperThreshold: 0, lowerThreshold: 0 });
function writesFor(n: number, m: number, over: (i: number) => Partial<IpvsService> = () => ({})): IpvsWrite[] {
  const out: IpvsWrite[] = [];
  for (let i = 0; i < n; i++) {
    const service = svc(i, over(i));
    out.push({ kind: 'addService', service });
    for (let j = 0; j < m; j++) out.push({ kind: 'addDestination', service, destination: dst(j) });
  }
  return out;
}
const flagsOf = (b: Buffer) => splitMessages(b).map((m) => m.flags);
/** The IpvsError of a failed result. */
const errOf = (r: unknown): IpvsError => (r as { error: IpvsError }).error;

test('1,000 services × 10 destinations: 86 writes of ≤ 128 messages, NLM_F_ACK on the last of each only', async () => {
  const { k, fake, sent } = await simulated();
  try {
    const writes = writesFor(1000, 10);
    const results = await k.applyBatch(writes);
    assert.ok(results.every((r) => r.status === 'ok'));
    assert.is(sent.length, Math.ceil(11_000 / 128));
    for (const b of sent) {
      const f = flagsOf(b);
      assert.ok(f.length <= 128 && b.length <= 64 * 1024 + 4096);
      assert.ok(f.slice(0, -1).every((x) => (x & NLM_F_ACK) === 0), 'no ACK asked before the last message');
      assert.ok(f.at(-1)! & NLM_F_ACK, 'ACK asked on the last message');
    }
    const seqs = sent.flatMap((b) => splitMessages(b).map((m) => m.seq));
    assert.is(new Set(seqs).size, 11_000, 'every message has its own sequence number');
    const state = fake.snapshot();
    assert.is(state.length, 1000);
    assert.ok(state.every((s) => s.destinations.length === 10));
  } finally { await k.close(); }
});

test('a failing write in the middle: exactly that one fails, as the one-op call would, the others apply', async () => {
  const { k, fake } = await simulated({ batchMessages: 50 });
  try {
    const writes = writesFor(20, 5);
    writes.splice(37, 0, { ...writes[33]! }); // a duplicate NEW_DEST → EEXIST, mid-buffer
    const results = await k.applyBatch(writes);
    const failed = results.flatMap((r, i) => (r.status === 'ok' ? [] : [i]));
    assert.equal(failed, [37]);
    const r = results[37]!;
    assert.ok(r.status === 'failed' && r.error instanceof IpvsError);
    const single = await k.addDestination(writes[37]!.service, (writes[37] as { destination: IpvsDestination }).destination).then(() => undefined, (e: unknown) => e);
    assert.is((r as { error: Error }).error.message, (single as Error).message);
    assert.is(errOf(r).code, 'EEXIST');
    assert.is(fake.snapshot().flatMap((s) => s.destinations).length, 100);
  } finally { await k.close(); }
});

test('a failed addService: its destinations in the same buffer and in later ones are skipped, nothing else is', async () => {
  const { k, fake, sent } = await simulated({ batchMessages: 5 });
  try {
    // Service 1 asks for a scheduler the kernel lacks (ENOENT); its 10 destinations span 3 buffers.
    const writes = writesFor(3, 10, (i) => (i === 1 ? { scheduler: 'nosuch' } : {}));
    const results = await k.applyBatch(writes);
    assert.is(results[11]!.status, 'failed');
    assert.is(errOf(results[11]).code, 'ENOENT');
    assert.match((results[11] as { error: Error }).error.message, /scheduler module ip_vs_nosuch not available/);
    assert.equal(results.slice(12, 22).map((r) => r.status), new Array(10).fill('skipped'));
    assert.ok([...results.slice(0, 11), ...results.slice(22)].every((r) => r.status === 'ok'));
    // Buffers of 5: the failed add is message 12 (buffer 3, with 3 of its destinations, which the
    // kernel runs and refuses with ESRCH); the other 7 never go out.
    const sentDests = sent.flatMap((b) => splitMessages(b)).filter((m) => parseGenl(m).cmd === CMD.NEW_DEST).length;
    assert.is(sentDests, 30 - 7);
    assert.is(fake.snapshot().length, 2);
  } finally { await k.close(); }
});

test('replies lost (ENOBUFS): that buffer retried one request at a time, the rest in smaller buffers; all applied', async () => {
  const { k, fake, sent, lose } = await simulated({ batchMessages: 16 });
  try {
    lose.add(2);
    const writes = writesFor(10, 9);
    const results = await k.applyBatch(writes);
    assert.ok(results.every((r) => r.status === 'ok'), JSON.stringify(results.filter((r) => r.status !== 'ok')));
    assert.equal(flagsOf(sent[1]!).length, 16);
    // The 16 writes of the lost buffer, each alone (EEXIST: the lost buffer had applied them).
    assert.ok(sent.slice(2, 18).every((b) => splitMessages(b).length === 1));
    assert.ok(sent.slice(18).every((b) => splitMessages(b).length <= 8), 'then buffers of 8');
    assert.is(fake.snapshot().flatMap((s) => s.destinations).length, 90);
  } finally { await k.close(); }
});

test('sendmsg fails: nothing ran, the buffer is retried one request at a time; an EEXIST then is a real failure', async () => {
  const { k, fake, sendFail } = await simulated({ batchMessages: 8 });
  try {
    await fake.addService(svc(0));
    sendFail.add(1);
    const results = await k.applyBatch(writesFor(2, 3));
    assert.is(results[0]!.status, 'failed');
    assert.is(errOf(results[0]).code, 'EEXIST');
    assert.equal(results.slice(1, 4).map((r) => r.status), ['skipped', 'skipped', 'skipped']);
    assert.ok(results.slice(4).every((r) => r.status === 'ok'));
  } finally { await k.close(); }
});

test('apply.ts: the same outcome through applyBatch (one call) as through the one-op methods', async () => {
  const log = pino({ level: 'silent' });
  const ops: SyncOp[] = writesFor(4, 3, (i) => (i === 2 ? { scheduler: 'nosuch' } : {})).map((w) => {
    const key = `${w.service.protocol}/${w.service.address}:${w.service.port}`;
    return w.kind === 'addService' ? { kind: 'addService', key, service: w.service as IpvsService }
      : { kind: 'addDestination', key, service: w.service, dest: (w as { destination: IpvsDestination }).destination.address, destination: (w as { destination: IpvsDestination }).destination } as SyncOp;
  });
  ops.push({ kind: 'deleteService', key: 'TCP/198.51.100.1:1', service: { family: 4, protocol: 'TCP', address: '198.51.100.1', port: 1 }, reason: 'empty' } as SyncOp);
  const batched = new FakeIpvsKernel();
  const single = new FakeIpvsKernel();
  const noBatch = new Proxy(single, { get: (t, p) => {
    const v: unknown = Reflect.get(t, p, t);
    return p === 'applyBatch' ? undefined : typeof v === 'function' ? v.bind(t) : v;
  } }) as IpvsKernel;
  const a = await applyOps(ops, { kernel: batched, log });
  const b = await applyOps(ops, { kernel: noBatch, log });
  assert.equal(batched.batches, [ops.length]);
  assert.is(a.applied, b.applied);
  const dests = (xs: SyncOp[]) => xs.map((o) => ('dest' in o ? o.dest : o.key));
  assert.equal(dests(a.skipped), dests(b.skipped));
  assert.equal(a.failures.map((f) => [f.op.kind, f.code, f.error.message]), b.failures.map((f) => [f.op.kind, f.code, f.error.message]));
  assert.equal(batched.snapshot(), single.snapshot());
  assert.is(a.skipped.length, 3);
  assert.is(a.applied, 12 + 1, 'twelve writes plus the delete of a service already gone');
});

test.run();
