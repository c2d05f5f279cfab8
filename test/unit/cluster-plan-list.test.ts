// The plan passed on in proportion to its change (dataplane/cluster/plan-list.ts, and health's
// apply with a delta): whatever the changes, every stage gives what its whole version gives over
// the same input, and a patched list differs from the list it was patched from exactly where its
// delta says.
import pino from 'pino';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { slicePlan } from '../../api/plan-slice.ts';
import type { PlanHealthCheck, PlanService } from '../../api/plan.ts';
import { bookServices, type RecordedOwner } from '../../dataplane/cluster/plan-book.ts';
import { PlanBookIndex } from '../../dataplane/cluster/plan-book-index.ts';
import { BookList, MappedList } from '../../dataplane/cluster/plan-list.ts';
import type { Staged } from '../../dataplane/delta-list.ts';
import { gateService, gateServices, type PreparedByNode } from '../../dataplane/cluster/realservers.ts';
import { createAgentHealth } from '../../dataplane/health/agent-health.ts';
import { withHealth } from '../../dataplane/health/targets.ts';
import { ManualClock } from '../../kube/clock.ts';
import { ownerPlan, service } from '../lib/plan-fixtures.ts';

const test = suite('cluster: plan list passed on by delta');

let seed = 5;
const r = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);

/** Positions where `list` is not the very entry of `from`. */
const differing = <T>(list: readonly T[], from: readonly T[]) => list.flatMap((x, i) => (x === from[i] ? [] : [i]));

function checkDelta<T>(s: Staged<T>, previous: readonly T[], what: string): boolean {
  if (!s.delta) return false;
  assert.ok(s.delta.from === previous, `${what}: patched from the last list`);
  assert.equal([...s.delta.at].sort((a, b) => a - b), differing(s.list, s.delta.from), `${what}: the delta names exactly what differs`);
  return true;
}

test('BookList and a MappedList stage equal bookServices and gateServices through random changes', () => {
  const index = new PlanBookIndex('n1');
  const slices = new Map<string, unknown>();
  let rv = 0;
  const publish = (n: number, gen: number, count: number) => {
    for (const k of [...slices.keys()]) if (k.startsWith(`uid-vs-${n}-`)) slices.delete(k);
    const services = Array.from({ length: count }, (_, j) => service({
      vip: `203.0.113.${n}`, port: 80 + j, forwarding: 'DR', prepareRealServers: true,
      realServers: [{ address: `10.0.${n}.${gen % 200}`, port: 8080, weight: 1, state: 'Ready', node: 'n2' }, { address: `10.0.${n}.250`, port: 8080, weight: 1, state: 'Ready' }],
    }));
    for (const s of slicePlan(ownerPlan(`vs-${n}`, services, { generation: gen }))) slices.set(s.metadata.name, { ...s, metadata: { ...s.metadata, resourceVersion: String(++rv) } });
  };
  const counts = new Map<number, number>();
  for (let n = 0; n < 12; n++) { publish(n, 1, 1); counts.set(n, 1); }
  const recorded = new Map<string, RecordedOwner>();
  const list = new BookList();
  let calls = 0;
  const gating = new MappedList((s: PlanService, g: PreparedByNode) => { calls++; return gateService(s, g); });
  let gates: PreparedByNode = new Map();
  let lastRaw: readonly PlanService[] = [], lastGated: readonly PlanService[] = [];
  let patched = 0;
  for (let round = 0; round < 300; round++) {
    const x = r(), n = Math.floor(r() * 14);
    if (x < 0.6 && counts.has(n)) publish(n, round + 2, counts.get(n)!);
    else if (x < 0.7 && counts.has(n)) { counts.set(n, 3 - counts.get(n)!); publish(n, round + 2, counts.get(n)!); }
    else if (x < 0.8) { if (counts.delete(n)) publish(n, 0, 0); else { counts.set(n, 1); publish(n, round + 2, 1); } }
    else if (x < 0.85) gates = new Map([['n2', new Set(r() < 0.5 ? [] : [`10.0.${n}.${(round + 1) % 200}/203.0.113.${n}/DR`])]]);
    const book = index.read([...slices.values()], recorded);
    const raw = list.update(book, index.takeChanges(), index.cache);
    const want = bookServices(book, index.cache);
    assert.equal(raw.list.length, want.length, `round ${round}`);
    assert.ok(raw.list.every((s, i) => s === want[i]), `round ${round}: the book's very entries, in book order`);
    if (checkDelta(raw, lastRaw, `round ${round}`)) patched++;
    calls = 0;
    const gated = gating.map(raw, gates);
    assert.equal(gated.list, gateServices(want, gates), `round ${round}: gated`);
    if (checkDelta(gated, lastGated, `round ${round}, gated`)) assert.ok(calls <= raw.delta!.at.length, `round ${round}: gated again only where patched (${calls})`);
    lastRaw = raw.list;
    lastGated = gated.list;
  }
  assert.ok(patched > 120, `most rounds were patched (${patched} of 300)`);
});

test('health applied with a delta equals withHealth over the whole plan, checked entries re-applied each time', async () => {
  const clock = new ManualClock();
  const health = createAgentHealth({ node: 'n1', clock, log: pino({ level: 'silent' }), onChange: () => {}, checker: async (p) => (p.address.endsWith('.1') ? { ok: true, message: 'ok' } : { ok: false, message: 'refused' }) });
  const hc: PlanHealthCheck = { type: 'tcp', intervalSeconds: 1, timeoutSeconds: 1, failureThreshold: 1, successThreshold: 1, onFailure: 'Quiesce' };
  const entry = (i: number, gen: number, checked: boolean): PlanService => ({
    key: `TCP/192.0.2.${i}:80`, portName: 'http', owner: { namespace: 'default', name: `web-${i}`, generation: gen }, vip: `192.0.2.${i}`, family: 4, protocol: 'TCP', port: 80,
    forwarding: 'NAT', scheduler: { name: 'rr', flags: [] }, directors: ['n1'], prepareRealServers: false,
    realServers: [{ address: `10.0.${i}.1`, port: 8080, weight: 1, state: 'Ready' }, { address: `10.0.${i}.${2 + (gen % 100)}`, port: 8080, weight: 1, state: 'Ready' }],
    ...(checked ? { healthCheck: hc } : {}),
  });
  let raw = Array.from({ length: 20 }, (_, i) => entry(i, 1, i % 5 === 0));
  let out = health.apply(raw);
  try {
    for (let round = 0; round < 100; round++) {
      const i = Math.floor(r() * 20);
      const next = raw.slice();
      next[i] = entry(i, round + 2, r() < 0.1 ? !raw[i]!.healthCheck : !!raw[i]!.healthCheck);
      const before = out;
      out = health.apply(next, { from: raw, at: [i] });
      assert.equal(out, withHealth(next, 'n1', (id) => health.monitor.health(id)), `round ${round}`);
      assert.ok(out.every((s, j) => j === i || next[j]!.healthCheck || s === before[j]), `round ${round}: unchecked entries passed on by identity`);
      raw = next;
      await clock.advance(500);
    }
    assert.equal(health.states().map((s) => s.serviceKey), raw.flatMap((s) => (s.healthCheck ? [s.key, s.key] : [])), 'states: every checked real server, in plan order');
    assert.ok(health.down().length > 0 && health.down().length < health.states().length, 'some up, some down');
  } finally { health.close(); }
});

test.run();
