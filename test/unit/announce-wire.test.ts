// Heartbeat encoding and the replay rules, without sockets: every rejection reason by itself, and
// that liveness is measured on the injected monotonic clock.
import { createHmac } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { PeerTable } from '../../dataplane/announce/table.ts';
import { decodeHeartbeat, encodeHeartbeat, MAX_DATAGRAM, type Heartbeat } from '../../dataplane/announce/wire.ts';

const test = suite('announce wire and table');
const KEY = Buffer.from('0123456789abcdef0123456789abcdef');
const hb = (over: Partial<Heartbeat> = {}): Heartbeat => ({ node: 'b', incarnation: 7n, seq: 1n, eligible: true, wallMs: 1_000n, ...over });

test('round trip; the datagram is small and carries every field', () => {
  const x = hb({ node: 'director-1.example', incarnation: 0xfedcba9876543210n, seq: 2n ** 63n, eligible: false, wallMs: 1_764_000_000_000n });
  const buf = encodeHeartbeat(x, KEY);
  assert.is(buf.length, 28 + x.node.length + 32);
  assert.equal(decodeHeartbeat(buf, KEY), x);
  assert.ok(encodeHeartbeat(hb({ node: 'a'.repeat(63) + '.' + 'b'.repeat(63) + '.' + 'c'.repeat(63) + '.' + 'd'.repeat(61) }), KEY).length <= MAX_DATAGRAM);
});

test('yielding is flag bit 1; without it the flags byte is what the first release sent (0 or 1), with it an older agent, which accepts only bit 0, rejects the heartbeat', () => {
  const plain = encodeHeartbeat(hb(), KEY);
  assert.is(plain[1], 0x01);
  assert.is(encodeHeartbeat(hb({ eligible: false }), KEY)[1], 0x00);
  assert.equal(decodeHeartbeat(plain, KEY), hb());
  const yielding = encodeHeartbeat(hb({ yielding: true }), KEY);
  assert.is(yielding[1], 0x03);
  assert.equal(decodeHeartbeat(yielding, KEY), hb({ yielding: true }));
  // The rest of the datagram is the same but for the flags byte and the HMAC.
  assert.equal(yielding.subarray(2, yielding.length - 32), plain.subarray(2, plain.length - 32));
});

test('every byte is covered by the HMAC; wrong key, bad length and bad version are told apart', () => {
  const buf = encodeHeartbeat(hb(), KEY);
  for (let i = 0; i < buf.length; i++) {
    const t = Buffer.from(buf);
    t[i] = t[i]! ^ 0x01;
    const r = decodeHeartbeat(t, KEY);
    assert.ok(r === 'hmac' || r === 'version' || r === 'length', `byte ${i}: ${String(r)}`);
  }
  assert.is(decodeHeartbeat(encodeHeartbeat(hb(), Buffer.from('another key, 16+ bytes')), KEY), 'hmac');
  assert.is(decodeHeartbeat(buf.subarray(0, buf.length - 1), KEY), 'length');
  assert.is(decodeHeartbeat(Buffer.concat([buf, Buffer.alloc(1)]), KEY), 'length');
  assert.is(decodeHeartbeat(Buffer.alloc(MAX_DATAGRAM + 1), KEY), 'length');
  assert.is(decodeHeartbeat(Buffer.alloc(3), KEY), 'length');
  const v2 = Buffer.from(buf);
  v2[0] = 2;
  assert.is(decodeHeartbeat(v2, KEY), 'version');
});

test('authentic but malformed (unknown flag bits, bad node name) is rejected', () => {
  const buf = encodeHeartbeat(hb(), KEY);
  const resign = (b: Buffer) => { createHmac('sha256', KEY).update(b.subarray(0, b.length - 32)).digest().copy(b, b.length - 32); return b; };
  const flags = Buffer.from(buf);
  flags[1] = 0x04;
  assert.is(decodeHeartbeat(resign(flags), KEY), 'malformed');
  const name = Buffer.from(buf);
  name[28] = 'B'.charCodeAt(0);
  assert.is(decodeHeartbeat(resign(name), KEY), 'malformed');
  assert.throws(() => encodeHeartbeat(hb({ node: 'Bad_Name' }), KEY), /node/);
});

test('table: seq must grow within an incarnation; our own name is refused', () => {
  const t = new PeerTable('a', 350, 10);
  assert.is(t.accept(hb({ seq: 5n }), 0), 'new');
  assert.is(t.accept(hb({ seq: 5n }), 10), 'replay');
  assert.is(t.accept(hb({ seq: 4n }), 10), 'replay');
  assert.is(t.accept(hb({ seq: 6n, eligible: false }), 10), 'update');
  assert.equal(t.members(20, true), [{ node: 'a', eligible: true }, { node: 'b', eligible: false }]);
  assert.is(t.accept(hb({ node: 'a', seq: 100n }), 10), 'self');
});

test('table: a new incarnation needs a newer wall time; the old life cannot come back, dead or alive', () => {
  const t = new PeerTable('a', 350, 10);
  assert.is(t.accept(hb({ incarnation: 1n, seq: 50n, wallMs: 5_000n }), 0), 'new');
  assert.is(t.accept(hb({ incarnation: 2n, seq: 1n, wallMs: 5_000n }), 10), 'stale-incarnation');
  assert.is(t.accept(hb({ incarnation: 2n, seq: 1n, wallMs: 6_000n }), 10), 'restarted');
  // Old life, even with a higher seq than anything the new life sent:
  assert.is(t.accept(hb({ incarnation: 1n, seq: 51n, wallMs: 5_100n }), 20), 'stale-incarnation');
  // After the node goes silent its replay state stays, so a replay cannot revive it.
  assert.equal(t.members(10 + 351, true).map((m) => m.node), ['a']);
  assert.is(t.accept(hb({ incarnation: 2n, seq: 1n, wallMs: 6_000n }), 10_000), 'replay');
  assert.is(t.accept(hb({ incarnation: 1n, seq: 99n, wallMs: 5_900n }), 10_000), 'stale-incarnation');
  assert.equal(t.members(10_000, true).map((m) => m.node), ['a']);
  assert.is(t.accept(hb({ incarnation: 2n, seq: 2n, wallMs: 6_100n }), 10_000), 'update');
  assert.equal(t.members(10_000, true).map((m) => m.node), ['a', 'b']);
});

test("table: a peer's yielding and our own reach the members; a later heartbeat without it clears it", () => {
  const t = new PeerTable('a', 350, 10);
  t.accept(hb({ seq: 1n, yielding: true }), 0);
  assert.equal(t.members(10, true, true), [{ node: 'a', eligible: true, yielding: true }, { node: 'b', eligible: true, yielding: true }]);
  t.accept(hb({ seq: 2n }), 20);
  assert.equal(t.members(30, true), [{ node: 'a', eligible: true }, { node: 'b', eligible: true }]);
});

test('table: liveness is "heard within deadAfterMs" on the given clock; capacity bounds names', () => {
  const t = new PeerTable('a', 350, 2);
  t.accept(hb({ node: 'b' }), 1_000);
  t.accept(hb({ node: 'c' }), 1_100);
  assert.is(t.accept(hb({ node: 'd' }), 1_100), 'capacity');
  assert.equal(t.members(1_350, false).map((m) => m.node), ['a', 'b', 'c']);
  assert.equal(t.members(1_351, false).map((m) => m.node), ['a', 'c']);
  assert.equal(t.members(1_451, false), [{ node: 'a', eligible: false }]);
});

test.run();
