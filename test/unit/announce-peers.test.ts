// Director membership over real UDP on 127.0.0.1: three directors find each other, eligibility
// propagates, a closed one is dropped within deadAfterMs + one interval and rejoins when restarted;
// forged, replayed, stranger and wrong-key datagrams never make (or keep) anyone a member. A raw
// dgram socket listed as a "peer" plays the attacker: it captures real heartbeats and resends them.
import { spawn } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Member } from '../../dataplane/announce/election.ts';
import { startPeers, type Endpoint, type Peers } from '../../dataplane/announce/peers.ts';
import { decodeHeartbeat, encodeHeartbeat, type Heartbeat } from '../../dataplane/announce/wire.ts';

const test = suite('announce peers (UDP)');
const KEY = Buffer.from('test shared secret, 32 bytes....');
const INTERVAL = 20;
const DEAD = 3 * INTERVAL + INTERVAL / 2; // the default
const HOST = '127.0.0.1';
const FIXTURE = new URL('../fixtures/announce-peer.ts', import.meta.url).pathname;
const clock = { now: () => performance.now() };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Director {
  node: string;
  port: number;
  peers: Peers;
  /** Every onChange, with its time on `clock`. */
  changes: Array<{ at: number; members: Member[] }>;
  setEligible(v: boolean): void;
  setYielding(v: boolean): void;
}

const open: Array<{ close(): unknown }> = [];

async function freePorts(n: number, host = HOST): Promise<number[]> {
  const socks = await Promise.all(Array.from({ length: n }, async () => {
    const s = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    s.bind(0, host);
    await once(s, 'listening');
    return s;
  }));
  const ports = socks.map((s) => s.address().port);
  await Promise.all(socks.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

interface Extra { key?: Buffer; intervalMs?: number; onSample?: () => void; host?: string; peerHost?: string }

async function director(node: string, port: number, peerPorts: number[], x: Extra = {}): Promise<Director> {
  const { key = KEY, intervalMs = INTERVAL, onSample, host = HOST, peerHost = host } = x;
  let eligible = true;
  let yielding = false;
  const changes: Director['changes'] = [];
  const peers = await startPeers({
    node, key, clock, intervalMs,
    listen: { address: host, port },
    peers: peerPorts.map((p): Endpoint => ({ address: peerHost, port: p })),
    eligible: () => { onSample?.(); return eligible; },
    yielding: () => yielding,
    onChange: (members) => changes.push({ at: clock.now(), members }),
  });
  open.push(peers);
  return { node, port, peers, changes, setEligible: (v) => { eligible = v; }, setYielding: (v) => { yielding = v; } };
}

/** A raw socket on `port` recording every datagram it receives. */
async function raw(port: number): Promise<{ sock: Socket; got: Buffer[]; send(buf: Buffer, to: number): Promise<void> }> {
  const sock = createSocket('udp4');
  const got: Buffer[] = [];
  sock.on('message', (b) => got.push(b));
  sock.bind(port, HOST);
  await once(sock, 'listening');
  open.push(sock);
  const send = (buf: Buffer, to: number) => new Promise<void>((r, j) => sock.send(buf, to, HOST, (e) => (e ? j(e) : r())));
  return { sock, got, send };
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 2_000): Promise<void> {
  const end = clock.now() + timeoutMs;
  while (!cond()) {
    if (clock.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

async function rejects(fn: () => Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await fn();
  } catch (err) {
    assert.match(String(err), re);
    return;
  }
  assert.unreachable(`expected a rejection matching ${re}`);
}

/**
 * The longest lateness of a 1 ms timer until stopped: on a loaded machine this process can be
 * descheduled for tens of ms, which delays our liveness timers by as much; the timing bounds below
 * allow for what was measured rather than a guessed margin.
 */
function lagMonitor(): () => number {
  let last = performance.now();
  let max = 0;
  const t = setInterval(() => { const n = performance.now(); max = Math.max(max, n - last - 1); last = n; }, 1);
  return () => { clearInterval(t); return max; };
}

const names = (d: Director) => d.peers.members().map((m) => m.node).join(',');
const has = (d: Director, node: string) => d.peers.members().some((m) => m.node === node);

test.after.each(async () => {
  for (const x of open.splice(0)) await x.close();
});

test('three directors see each other; onChange reports it; self is a member with its eligibility', async () => {
  const [pa, pb, pc] = await freePorts(3) as [number, number, number];
  const a = await director('a', pa, [pb, pc]);
  assert.equal(a.peers.members(), [{ node: 'a', eligible: true }], 'alone at first');
  const b = await director('b', pb, [pa, pc]);
  const c = await director('c', pc, [pa, pb, pc]); // its own endpoint listed: skipped, not "self"-rejected
  await waitFor('full membership', () => [a, b, c].every((d) => names(d) === 'a,b,c'));
  assert.equal(a.changes.at(-1)!.members, [{ node: 'a', eligible: true }, { node: 'b', eligible: true }, { node: 'c', eligible: true }]);
  const before = a.changes.length;
  await sleep(INTERVAL * 5);
  assert.is(a.changes.length, before, 'no onChange while nothing changes');
  assert.is(c.peers.stats().rejected.self, 0);
  for (const d of [a, b, c]) {
    const s = d.peers.stats();
    assert.ok(s.sent > 0 && s.accepted > 0, JSON.stringify(s));
    assert.is(Object.values(s.rejected).reduce((x, y) => x + y, 0), 0, JSON.stringify(s.rejected));
  }
});

test('setPeers: a director added later is beaten to and heard; a peer bound to a node name cannot speak as another', async () => {
  const [pa, pb, pc] = await freePorts(3) as [number, number, number];
  const a = await director('a', pa, []);
  const b = await director('b', pb, [pa]);
  await sleep(INTERVAL * 4);
  assert.is(names(a), 'a', 'b is not in a\'s list: its heartbeats are strangers\'');
  assert.ok(a.peers.stats().rejected.source > 0);
  // The cluster agent's case: endpoints from AgentReports, each bound to its node.
  a.peers.setPeers([{ address: HOST, port: pb, node: 'b' }, { address: '::1', port: pc, node: 'x' }, { address: HOST, port: pa, node: 'a' }]);
  await waitFor('a and b see each other', () => names(a) === 'a,b' && names(b) === 'a,b');
  // c holds the key and sends from its own endpoint, which a's list binds to node "b": refused.
  const c = await director('c', pc, [pa]);
  a.peers.setPeers([{ address: HOST, port: pb, node: 'b' }, { address: HOST, port: pc, node: 'b' }]);
  const rejected = a.peers.stats().rejected.source;
  await waitFor('c\'s heartbeats rejected', () => a.peers.stats().rejected.source > rejected + 2);
  assert.is(names(a), 'a,b', 'c never became a member of a');
  assert.ok(!has(a, 'c'));
  assert.ok(c.peers.stats().sent > 0);
  // Dropped from the list: b lapses within deadAfterMs.
  a.peers.setPeers([]);
  await waitFor('b gone from a', () => names(a) === 'a', DEAD * 4);
});

test('IPv6: peers listed in a non-canonical form are matched against the sender address', async () => {
  const [pa, pb] = await freePorts(2, '::1') as [number, number];
  const a = await director('a', pa, [pb], { host: '::1', peerHost: '0:0:0:0:0:0:0:1' });
  const b = await director('b', pb, [pa], { host: '::1', peerHost: '0::1' });
  await waitFor('both', () => names(a) === 'a,b' && names(b) === 'a,b');
  assert.is(a.peers.stats().rejected.source, 0);
});

test('a stall of our own event loop longer than deadAfterMs does not drop live peers', async () => {
  const [pa, pb, pc] = await freePorts(3) as [number, number, number];
  // 50 ms here: the child must not itself be starved past deadAfterMs on a loaded test machine.
  const interval = 50;
  // The stall is queued from inside a's heartbeat (eligible() is sampled there), i.e. just before
  // a's liveness check: afterwards every timer is overdue, b's and c's heartbeats are queued in
  // the socket, and the check is next in line ahead of any socket read.
  let stallNext = false;
  let stalled = false;
  const busy = () => { const until = performance.now() + interval * 10; while (performance.now() < until); stalled = true; };
  const onSample = () => { if (stallNext) { stallNext = false; setImmediate(busy); } };
  const a = await director('a', pa, [pb, pc], { intervalMs: interval, onSample });
  // b and c live in another process, so they keep sending while this one is stalled.
  const child = spawn(process.execPath, [FIXTURE, KEY.toString('hex'), String(interval), `b:${pb}:${pa},${pc}`, `c:${pc}:${pa},${pb}`], { stdio: ['pipe', 'pipe', 'inherit'] });
  open.push({ close: () => { child.stdin!.end(); return once(child, 'close'); } });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  await waitFor('child ready', () => out.includes('ready'), 5_000);
  await waitFor('full membership', () => names(a) === 'a,b,c');
  await sleep(interval * 2);
  const before = a.changes.length;
  stallNext = true;
  await waitFor('the stall', () => stalled);
  await sleep(interval * 3);
  const flaps = a.changes.slice(before).map((x) => x.members.map((m) => m.node).join(','));
  assert.equal(flaps, [], 'no drop-and-rejoin flap');
  assert.is(names(a), 'a,b,c');
});

test('an eligibility change propagates within a couple of intervals, and back', async () => {
  const [pa, pb, pc] = await freePorts(3) as [number, number, number];
  const [a, b, c] = await Promise.all([director('a', pa, [pb, pc]), director('b', pb, [pa, pc]), director('c', pc, [pa, pb])]);
  await waitFor('full membership', () => [a, b, c].every((d) => names(d) === 'a,b,c'));
  const bEligible = (d: Director) => d.peers.members().find((m) => m.node === 'b')?.eligible;
  const t0 = clock.now();
  b.setEligible(false);
  await waitFor('b ineligible everywhere', () => [a, b, c].every((d) => bEligible(d) === false), INTERVAL * 4);
  const took = clock.now() - t0;
  assert.equal(a.changes.at(-1)!.members.find((m) => m.node === 'b'), { node: 'b', eligible: false });
  assert.equal(b.changes.at(-1)!.members.find((m) => m.node === 'b'), { node: 'b', eligible: false }, 'self too');
  b.setEligible(true);
  await waitFor('b eligible again', () => [a, c].every((d) => bEligible(d) === true), INTERVAL * 4);
  console.log(`    eligibility propagated in ${took.toFixed(1)} ms (interval ${INTERVAL} ms)`);
});

test('yielding propagates like eligibility (a change the others hear and report), and back', async () => {
  const [pa, pb] = await freePorts(2) as [number, number];
  const [a, b] = await Promise.all([director('a', pa, [pb]), director('b', pb, [pa])]);
  await waitFor('membership', () => [a, b].every((d) => names(d) === 'a,b'));
  const bOf = (d: Director) => d.peers.members().find((m) => m.node === 'b');
  b.setYielding(true);
  await waitFor('b yielding everywhere', () => [a, b].every((d) => bOf(d)?.yielding === true), INTERVAL * 4);
  assert.equal(a.changes.at(-1)!.members.find((m) => m.node === 'b'), { node: 'b', eligible: true, yielding: true });
  assert.equal(b.changes.at(-1)!.members.find((m) => m.node === 'b'), { node: 'b', eligible: true, yielding: true }, 'self too');
  b.setYielding(false);
  await waitFor('b back in service', () => [a, b].every((d) => bOf(d)?.yielding === undefined), INTERVAL * 4);
  assert.equal(a.changes.at(-1)!.members.find((m) => m.node === 'b'), { node: 'b', eligible: true });
});

test('a closed director is dropped within deadAfterMs + one interval, and rejoins when restarted', async () => {
  const [pa, pb, pc] = await freePorts(3) as [number, number, number];
  const [a, b] = await Promise.all([director('a', pa, [pb, pc]), director('b', pb, [pa, pc])]);
  let c = await director('c', pc, [pa, pb]);
  await waitFor('full membership', () => [a, b, c].every((d) => names(d) === 'a,b,c'));
  await sleep(INTERVAL * 3);
  const lag = lagMonitor();
  const closedAt = clock.now();
  await c.peers.close();
  await waitFor('c dropped', () => !has(a, 'c') && !has(b, 'c'), DEAD * 4);
  await sleep(INTERVAL * 2); // let both onChange calls land
  const late = lag();
  for (const d of [a, b]) {
    const drop = d.changes.find((x) => x.at >= closedAt && !x.members.some((m) => m.node === 'c'));
    assert.ok(drop, `${d.node} reported the drop`);
    const after = drop.at - closedAt;
    console.log(`    ${d.node} dropped c ${after.toFixed(1)} ms after close (deadAfterMs ${DEAD}, bound ${DEAD + INTERVAL}, timer lateness ${late.toFixed(1)})`);
    // The bound plus measured timer lateness; the lower bound shows one missed heartbeat is not death.
    assert.ok(after <= DEAD + INTERVAL + 5 + late, `${d.node}: ${after} ms (timers up to ${late} ms late)`);
    assert.ok(after >= DEAD - INTERVAL - 5 - late, `${d.node}: ${after} ms, too early`);
    assert.equal(drop.members.map((m) => m.node), ['a', 'b']);
  }
  c = await director('c', pc, [pa, pb]);
  await waitFor('c rejoined', () => [a, b, c].every((d) => names(d) === 'a,b,c'));
  assert.is(a.peers.stats().rejected['stale-incarnation'], 0, 'a restart with a later wall clock is accepted');
});

test('replayed datagrams are rejected and do not keep a dead peer alive; an old life cannot return', async () => {
  const [pa, pb, pr] = await freePorts(3) as [number, number, number];
  const r = await raw(pr); // listed as a peer of both: it receives b's heartbeats and may send to a
  const a = await director('a', pa, [pb, pr]);
  let b = await director('b', pb, [pa, pr]);
  const fromB = () => r.got.filter((x) => (decodeHeartbeat(x, KEY) as Heartbeat).node === 'b');
  await waitFor('a sees b, r captured 3 of b\'s heartbeats', () => has(a, 'b') && fromB().length >= 3);
  const life1 = fromB();
  const accepted = a.peers.stats().accepted;
  await r.send(life1.at(-1)!, pa);
  await r.send(life1[0]!, pa);
  await waitFor('replays rejected', () => a.peers.stats().rejected.replay === 2, 500);

  // b dies; the attacker keeps replaying its captured heartbeats, newest first, every 5 ms.
  const lag = lagMonitor();
  await b.peers.close();
  const closedAt = clock.now();
  let replaying = true;
  let replayed = 0;
  const loop = (async () => {
    for (; replaying; replayed++) { await r.send(life1[life1.length - 1 - (replayed % life1.length)]!, pa); await sleep(5); }
  })();
  let after: number;
  try {
    await waitFor('b dropped despite replays', () => !has(a, 'b'), DEAD * 4);
    after = clock.now() - closedAt;
    await sleep(INTERVAL * 3);
    assert.not.ok(has(a, 'b'), 'b stays dropped while replays continue');
  } finally {
    replaying = false;
    await loop;
  }
  // Nothing accepted arrives any more, so only the liveness timer can have reported the drop.
  assert.equal(a.changes.at(-1)!.members, [{ node: 'a', eligible: true }]);
  const late = lag();
  assert.ok(after! <= DEAD + INTERVAL + 5 + late, `dropped after ${after!} ms (timers up to ${late} ms late)`);
  // Every one of them arrived and was rejected as a replay (2 from before the close).
  assert.ok(replayed >= 3, `replayed ${replayed}`);
  await waitFor('all replays rejected', () => a.peers.stats().rejected.replay === replayed + 2, 500);

  // b restarts (new incarnation); its first life's heartbeats are now a previous life.
  b = await director('b', pb, [pa, pr]);
  await waitFor('b rejoined', () => has(a, 'b'));
  const changes = a.changes.length;
  const accepted2 = a.peers.stats().accepted;
  for (const x of life1) await r.send(x, pa);
  await waitFor('old life rejected', () => a.peers.stats().rejected['stale-incarnation'] === life1.length, 500);
  assert.is(a.changes.length, changes, 'no membership flap');
  assert.ok(a.peers.stats().accepted - accepted2 <= 4, 'only b\'s own heartbeats were accepted meanwhile');
  assert.ok(accepted > 0);
});

test('forged datagrams from a listed address: wrong key, tampering, bad length, bad version, our own name', async () => {
  const [pa, pr] = await freePorts(2) as [number, number];
  const r = await raw(pr);
  const a = await director('a', pa, [pr]);
  await waitFor('a heartbeat at r', () => r.got.length > 0);
  const fresh = (node: string, over: Partial<Heartbeat> = {}) =>
    ({ node, incarnation: 42n, seq: BigInt(Math.floor(clock.now() * 1000)), eligible: true, wallMs: BigInt(Date.now()), ...over });
  await r.send(encodeHeartbeat(fresh('evil'), Buffer.from('not the shared secret at all')), pa);
  const tampered = encodeHeartbeat(fresh('evil', { eligible: false }), KEY);
  tampered[1] = 1; // flip "ineligible" to "eligible" without re-signing
  await r.send(tampered, pa);
  await r.send(Buffer.alloc(600, 1), pa);
  const v2 = encodeHeartbeat(fresh('evil'), KEY);
  v2[0] = 2;
  await r.send(v2, pa);
  await r.send(encodeHeartbeat(fresh('a'), KEY), pa);
  await waitFor('five rejections', () => Object.values(a.peers.stats().rejected).reduce((x, y) => x + y, 0) === 5, 500);
  assert.equal(a.peers.stats().rejected, { source: 0, length: 1, version: 1, hmac: 2, malformed: 0, self: 1, replay: 0, 'stale-incarnation': 0, capacity: 0 });
  assert.is(names(a), 'a');
  assert.is(a.changes.length, 0);
  // Control: the same path accepts a correctly signed heartbeat, so the rejections above are real.
  await r.send(encodeHeartbeat(fresh('ghost'), KEY), pa);
  await waitFor('control accepted', () => has(a, 'ghost'), 500);
});

test('a valid heartbeat from an address:port not in the peer list is rejected', async () => {
  const [pa, pb, ps] = await freePorts(3) as [number, number, number];
  const stranger = await raw(ps);
  const a = await director('a', pa, [pb]);
  const hb = { node: 'ghost', incarnation: 1n, seq: 1n, eligible: true, wallMs: BigInt(Date.now()) };
  await stranger.send(encodeHeartbeat(hb, KEY), pa);
  await waitFor('rejected', () => a.peers.stats().rejected.source === 1, 500);
  assert.is(names(a), 'a');
  assert.is(a.peers.stats().accepted, 0);
});

test('a director with a different key is never a member, in either direction', async () => {
  const [pa, pb, pd] = await freePorts(3) as [number, number, number];
  const a = await director('a', pa, [pb, pd]);
  const b = await director('b', pb, [pa, pd]);
  const d = await director('d', pd, [pa, pb], { key: Buffer.from('a different secret of 32 bytes..') });
  await waitFor('a and b', () => names(a) === 'a,b' && names(b) === 'a,b');
  await sleep(INTERVAL * 6);
  assert.not.ok(has(a, 'd') || has(b, 'd'));
  assert.is(names(d), 'd');
  assert.ok(a.changes.every((x) => !x.members.some((m) => m.node === 'd')));
  assert.ok(a.peers.stats().rejected.hmac >= 3 && d.peers.stats().rejected.hmac >= 6);
});

test('options are checked and name the bad field; close() stops everything and is idempotent', async () => {
  const [pa, pb] = await freePorts(2) as [number, number];
  const base = { node: 'a', listen: { address: HOST, port: pa }, peers: [{ address: HOST, port: pb }], key: KEY, eligible: () => true, clock, onChange: () => {} };
  await rejects(() => startPeers({ ...base, key: Buffer.alloc(15) }), /^Error: key: /);
  await rejects(() => startPeers({ ...base, peers: [{ address: '::1', port: pb }] }), /peers\[0\]\.address/);
  await rejects(() => startPeers({ ...base, peers: [{ address: HOST, port: 0 }] }), /peers\[0\]\.port/);
  await rejects(() => startPeers({ ...base, intervalMs: 50, deadAfterMs: 50 }), /deadAfterMs/);
  await rejects(() => startPeers({ ...base, node: 'Not A Node' }), /^Error: node: /);
  const r = await raw(pb);
  const a = await startPeers({ ...base, intervalMs: INTERVAL });
  await waitFor('heartbeats', () => r.got.length >= 2);
  await a.close();
  await a.close();
  const n = r.got.length;
  const sent = a.stats().sent;
  await sleep(INTERVAL * 4);
  assert.is(r.got.length, n, 'no heartbeat after close');
  assert.is(a.stats().sent, sent);
  // The port is free again (the socket really closed).
  const again = await startPeers({ ...base, intervalMs: INTERVAL });
  await again.close();
});

test.run();
