// VIP ownership by rendezvous hashing: pinned scores (a wire contract between agent versions),
// eligibility, order independence, and the property that makes failover cheap: removing a member
// moves only the VIPs it held.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { activeFor, announcedBy, score, type Member } from '../../dataplane/announce/election.ts';

const test = suite('announce election');

const m = (node: string, eligible = true): Member => ({ node, eligible });
const VIPS = Array.from({ length: 1000 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.${(i * 7) % 250 + 1}`);

function owners(vips: readonly string[], members: readonly Member[]): Map<string, string | undefined> {
  return new Map(vips.map((v) => [v, activeFor(v, members)]));
}

test('score is the first 8 bytes of sha256("node\\nvip"), big-endian (values from sha256sum)', () => {
  // printf 'a\n10.0.0.1' | sha256sum → 8707a2f9e35c27b3…; changing this splits a rolling upgrade.
  assert.is(score('a', '10.0.0.1'), 0x8707a2f9e35c27b3n);
  assert.is(score('b', '10.0.0.1'), 0x94cc94dce4c4d78fn);
  assert.is(score('c', '10.0.0.1'), 0x82bb07c211859a42n);
  assert.is(score('node-1', '2001:db8::1'), 0xc494ba7b6418cec7n);
});

test('highest score wins; IPv6 VIPs are hashed in canonical form', () => {
  assert.is(activeFor('10.0.0.1', [m('a'), m('b'), m('c')]), 'b');
  assert.is(activeFor('10.0.0.1', [m('a'), m('c')]), 'a');
  assert.is(score('node-1', '2001:DB8:0::1'), score('node-1', '2001:db8::1'));
  const members = [m('a'), m('b'), m('c')];
  assert.is(activeFor('2001:DB8:0:0::10', members), activeFor('2001:db8::10', members));
});

test('only eligible members win; none eligible (or none at all) gives undefined', () => {
  assert.is(activeFor('10.0.0.1', [m('a'), m('b', false), m('c')]), 'a');
  assert.is(activeFor('10.0.0.1', [m('a', false), m('b', false)]), undefined);
  assert.is(activeFor('10.0.0.1', []), undefined);
  for (const v of VIPS.slice(0, 200)) assert.is.not(activeFor(v, [m('a'), m('b', false), m('c')]), 'b');
});

test('yielding members win only where no other eligible member is there; VIPs of the others do not move', () => {
  const s = (node: string, eligible = true): Member => ({ node, eligible, yielding: true });
  // 'b' owns 10.0.0.1 among a, b, c (above); yielding, it gives it to the runner-up.
  assert.is(activeFor('10.0.0.1', [m('a'), s('b'), m('c')]), 'a');
  // The only eligible one left: a yielding director keeps serving, it is not a dark VIP.
  assert.is(activeFor('10.0.0.1', [m('a', false), s('b'), m('c', false)]), 'b');
  assert.is(activeFor('10.0.0.1', [s('a'), s('b'), s('c')]), 'b');
  // Yielding is not eligibility: an ineligible yielding member never wins.
  assert.is(activeFor('10.0.0.1', [m('a', false), s('b', false)]), undefined);
  const before = owners(VIPS, [m('a'), m('b'), m('c')]);
  const drained = owners(VIPS, [m('a'), s('b'), m('c')]);
  let moved = 0;
  for (const v of VIPS) {
    assert.is.not(drained.get(v), 'b', v);
    if (before.get(v) !== 'b') assert.is(drained.get(v), before.get(v), `${v} moved though b did not hold it`);
    else moved += 1;
  }
  assert.ok(moved > 250, `b held ${moved} of 1000`);
  // The same answer as if b had left: every director computes it from the same members.
  assert.equal(drained, owners(VIPS, [m('a'), m('c')]));
  assert.equal(announcedBy('b', VIPS, [m('a'), s('b'), m('c')]), new Set());
});

test('the answer does not depend on member order', () => {
  const fwd = [m('a'), m('b'), m('c'), m('d', false)];
  const rev = [...fwd].reverse();
  const rot = [fwd[2]!, fwd[0]!, fwd[3]!, fwd[1]!];
  for (const v of VIPS) {
    const x = activeFor(v, fwd);
    assert.is(activeFor(v, rev), x, v);
    assert.is(activeFor(v, rot), x, v);
  }
});

test('1,000 VIPs over 3 members: roughly even; removing one moves only its VIPs, spread over the others', () => {
  const all = [m('a'), m('b'), m('c')];
  const before = owners(VIPS, all);
  const count = (o: Map<string, string | undefined>, n: string) => [...o.values()].filter((x) => x === n).length;
  for (const n of ['a', 'b', 'c']) {
    const k = count(before, n);
    assert.ok(k > 270 && k < 400, `${n} owns ${k} of 1000 (expected about 333)`);
  }
  for (const gone of ['a', 'b', 'c']) {
    for (const variant of [all.filter((x) => x.node !== gone), all.map((x) => (x.node === gone ? m(gone, false) : x))]) {
      const after = owners(VIPS, variant);
      let moved = 0;
      const gained = new Map<string, number>();
      for (const v of VIPS) {
        const was = before.get(v)!;
        const now = after.get(v)!;
        assert.is.not(now, gone);
        if (was !== gone) assert.is(now, was, `${v} moved from ${was} to ${now} when ${gone} left`);
        else { moved += 1; gained.set(now, (gained.get(now) ?? 0) + 1); }
      }
      assert.is(moved, count(before, gone));
      // The leaver's VIPs go to both survivors, not all to one (which would double its load).
      for (const [n, k] of gained) assert.ok(k > moved * 0.35, `${n} took ${k} of ${moved} of ${gone}'s VIPs`);
      assert.is(gained.size, 2);
    }
  }
});

test('adding a member moves VIPs only to the newcomer', () => {
  const before = owners(VIPS, [m('a'), m('b'), m('c')]);
  const after = owners(VIPS, [m('a'), m('b'), m('c'), m('d')]);
  let toD = 0;
  for (const v of VIPS) {
    if (after.get(v) === 'd') toD += 1;
    else assert.is(after.get(v), before.get(v), v);
  }
  assert.ok(toD > 180 && toD < 320, `d took ${toD} (expected about 250)`);
});

test('announcedBy: exactly the VIPs whose owner is self; nothing when self is absent or ineligible', () => {
  const members = [m('a'), m('b'), m('c')];
  const sets = ['a', 'b', 'c'].map((n) => announcedBy(n, VIPS, members));
  assert.is(sets.reduce((s, x) => s + x.size, 0), VIPS.length, 'every VIP announced exactly once');
  for (const v of VIPS) assert.is(sets.filter((s) => s.has(v)).length, 1, v);
  assert.equal([...announcedBy('a', ['10.0.0.1'], members)], []);
  assert.equal([...announcedBy('b', ['10.0.0.1'], members)], ['10.0.0.1']);
  assert.is(announcedBy('b', VIPS, [m('a'), m('b', false), m('c')]).size, 0);
  assert.is(announcedBy('z', VIPS, members).size, 0);
  // VIPs come back as given (not canonicalised), so callers can look them up in their own maps.
  const v6 = '2001:DB8::10';
  const owner = activeFor(v6, members)!;
  assert.equal([...announcedBy(owner, [v6], members)], [v6]);
});

test.run();
