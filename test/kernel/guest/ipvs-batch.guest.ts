// Guest suite of test/kernel/ipvs-batch.test.ts (runs inside the VM): IpvsNetlink.applyBatch on
// Debian's kernel, cross-checked with ipvsadm (an independent client). Verifies the kernel
// behaviour batch.ts relies on (net/netlink/af_netlink.c netlink_rcv_skb): every message of one
// sendmsg buffer is run, in order, even after one failed; a message is answered with an
// NLMSG_ERROR only when it failed or asked for an ACK; the answer carries its sequence number.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { IpvsError, IpvsNetlink } from '../../../dataplane/ipvs/netlink.ts';
import { NLMSG_ERROR, parseError, splitMessages } from '../../../dataplane/ipvs/nla.ts';
import type { IpvsDestination, IpvsService, IpvsServiceKey, IpvsWrite } from '../../../dataplane/ipvs/types.ts';
import { assertInVm, run } from '../../../lab/guest/netns.ts';

assertInVm();
const ipvsadm = (...args: string[]) => run(['ipvsadm', ...args]);

const wire = { sends: 0, errors: 0, acks: 0, messagesSent: 0 };
function tap(direction: 'send' | 'recv', bytes: Buffer): void {
  if (direction === 'send') { wire.sends++; wire.messagesSent += splitMessages(bytes).length; return; }
  for (const m of splitMessages(bytes)) {
    if (m.type !== NLMSG_ERROR) continue;
    if (parseError(m).errno === 0) wire.acks++; else wire.errors++;
  }
}
const reset = () => Object.assign(wire, { sends: 0, errors: 0, acks: 0, messagesSent: 0 });

const svc = (i: number, over: Partial<IpvsService> = {}): IpvsService => (i % 10 === 9
  ? { family: 6, protocol: 'TCP', address: `2001:db8:1::${(i + 1).toString(16)}`, port: 80, scheduler: 'rr', flags: 0, timeout: 0, netmask: '128', ...over }
  : { family: 4, protocol: i % 2 ? 'UDP' : 'TCP', address: '203.0.113.100', port: 10000 + i, scheduler: 'wlc', flags: 0, timeout: 0, netmask: '255.255.255.255', ...over });
const dst = (s: IpvsService, i: number, j: number): IpvsDestination => ({
  family: s.family, address: s.family === 6 ? `2001:db8:2:${(i + 1).toString(16)}::${j + 1}` : `10.1.${i >> 4}.${((i & 15) << 4) + j + 1}`,
  port: 8000 + j, forward: 'masq', weight: j + 1, upperThreshold: 0, lowerThreshold: 0,
});
const hp = (a: string, p: number) => (a.includes(':') ? `[${a}]:${p}` : `${a}:${p}`);
const flag = (s: IpvsServiceKey) => (s.protocol === 'UDP' ? '-u' : '-t');
/** The `ipvsadm -S -n` lines these writes leave (ipvsadm's own format, see test/fixtures/netlink). */
function saveLines(writes: IpvsWrite[]): string[] {
  return writes.map((w) => (w.kind === 'addService'
    ? `-A ${flag(w.service)} ${hp(w.service.address, w.service.port)} -s ${(w.service as IpvsService).scheduler}`
    : `-a ${flag(w.service)} ${hp(w.service.address, w.service.port)} -r ${hp((w as { destination: IpvsDestination }).destination.address, (w as { destination: IpvsDestination }).destination.port)} -m -w ${(w as { destination: IpvsDestination }).destination.weight}`));
}
function programme(n: number, m: number, over: (i: number) => Partial<IpvsService> = () => ({})): IpvsWrite[] {
  const out: IpvsWrite[] = [];
  for (let i = 0; i < n; i++) {
    const service = svc(i, over(i));
    out.push({ kind: 'addService', service });
    for (let j = 0; j < m; j++) out.push({ kind: 'addDestination', service, destination: dst(service, i, j) });
  }
  return out;
}
const saved = () => ipvsadm('-S', '-n').split('\n').filter(Boolean).sort();
const sorted = (xs: string[]) => [...xs].sort();

let k: IpvsNetlink;
const test = suite('ipvs netlink applyBatch on a real kernel');
test.before(async () => {
  run(['bash', '-ec', 'ip link add d0 type dummy; ip link set d0 up; ip addr add 10.0.0.1/24 dev d0; ip -6 addr add 2001:db8::1/64 dev d0 nodad']);
  k = await IpvsNetlink.open({ timeoutMs: 120_000, tap });
});
test.after(async () => { await k?.close(); });
test.before.each(() => { ipvsadm('-C'); reset(); });

test('1,000 services × 10 destinations (IPv4 and IPv6) in 86 writes; ipvsadm -S -n agrees line for line', async () => {
  const writes = programme(1000, 10);
  const t = Date.now();
  const results = await k.applyBatch(writes);
  const ms = Date.now() - t;
  assert.equal(results.filter((r) => r.status !== 'ok'), []);
  assert.is(wire.sends, Math.ceil(11_000 / 128), 'sendmsg writes');
  assert.is(wire.messagesSent, 11_000);
  assert.is(wire.acks, wire.sends, 'one ACK per write: only the last message of a buffer asked');
  assert.is(wire.errors, 0);
  assert.equal(saved(), sorted(saveLines(writes)));
  assert.is(ipvsadm('-Ln').split('\n').filter((l) => l.trim().startsWith('->') && /\d$/.test(l.trim().split(/\s+/)[1]!)).length, 10_000);
  console.log(`# 11000 writes in ${wire.sends} sendmsg: ${ms} ms (${(wire.sends / 11_000).toFixed(4)} writes per rule)`);
});

test('failures mid-buffer: exactly those writes fail with their own error, every other write applies', async () => {
  const writes = programme(30, 5);
  const dupAt = 40; // a second NEW_DEST of a destination added just before → EEXIST
  writes.splice(dupAt, 0, { ...writes[dupAt - 2]! });
  const ghost: IpvsWrite = { kind: 'addDestination', service: svc(0, { port: 1 }), destination: dst(svc(0), 0, 0) };
  writes.splice(100, 0, ghost); // a destination of a service that does not exist → ESRCH
  const results = await k.applyBatch(writes);
  const failed = results.flatMap((r, i) => (r.status === 'ok' ? [] : [[i, r.status === 'failed' ? (r.error as IpvsError).code : r.status]]));
  assert.equal(failed, [[dupAt, 'EEXIST'], [100, 'ESRCH']]);
  assert.is(wire.sends, Math.ceil(writes.length / 128));
  assert.is(wire.errors, 2, 'an NLMSG_ERROR for each failed message though neither asked for an ACK');
  assert.is(wire.acks, wire.sends);
  assert.match((results[100] as { error: Error }).error.message, /^add destination 10\.1\.0\.1:8000 to TCP 203\.0\.113\.100:1: ESRCH/);
  const ok = writes.filter((_, i) => i !== dupAt && i !== 100);
  assert.equal(saved(), sorted(saveLines(ok)));
});

test('a failed NEW_SERVICE: its destinations skipped (same buffer: the kernel refused them; later buffers: never sent)', async () => {
  const small = await IpvsNetlink.open({ timeoutMs: 120_000, tap, batchMessages: 5 });
  try {
    // Service 1 (message 12) asks for a scheduler module that does not exist: ENOENT.
    const writes = programme(3, 10, (i) => (i === 1 ? { scheduler: 'nosuch' } : {}));
    const results = await small.applyBatch(writes);
    assert.is(results[11]!.status, 'failed');
    assert.is((results[11] as unknown as { error: IpvsError }).error.code, 'ENOENT');
    assert.equal(results.slice(12, 22).map((r) => r.status), new Array(10).fill('skipped'));
    assert.ok([...results.slice(0, 11), ...results.slice(22)].every((r) => r.status === 'ok'));
    assert.is(wire.messagesSent, 33 - 7, 'the 7 destinations after its buffer were not sent');
    assert.is(wire.errors, 1 + 3, 'NEW_SERVICE ENOENT, then ESRCH for each of its 3 destinations in the same buffer');
    assert.equal(saved(), sorted(saveLines([...writes.slice(0, 11), ...writes.slice(22)])));
  } finally { await small.close(); }
});

test.run();
