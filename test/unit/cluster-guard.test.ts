// Mass removals need confirmation: the pure decision, on a manual timeline.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_REMOVAL_GUARD as O, guardRemovals, type PendingRemoval } from '../../dataplane/cluster/guard.ts';

const test = suite('cluster: mass-removal guard');
const keys = (n: number, from = 0) => new Set(Array.from({ length: n }, (_, i) => `TCP/203.0.113.${from + i}:80`));

test('small removals go at once: under the minimum, or not more than the fraction', () => {
  assert.equal(guardRemovals(keys(12), keys(3), undefined, 0, O).held, [], '9 removed: under 10');
  assert.equal(guardRemovals(keys(40), keys(30), undefined, 0, O).held, [], '10 of 40: exactly a quarter');
  assert.equal(guardRemovals(new Set(), keys(5), undefined, 0, O).held, [], 'additions are never held');
});

test('a mass removal is held, named, and released after the same desired set was seen for the window', () => {
  const programmed = keys(40);
  const desired = keys(29); // 11 of 40 removed
  let d = guardRemovals(programmed, desired, undefined, 1_000, O);
  assert.is(d.held.length, 11);
  assert.is(d.message, 'mass removal of 11 of 40 services held until the same plan is seen for 60 s');
  assert.is(d.releaseAt, 61_000);
  let pending: PendingRemoval | undefined = d.pending;
  d = guardRemovals(programmed, desired, pending, 60_999, O);
  assert.is(d.held.length, 11, 'not yet');
  pending = d.pending;
  d = guardRemovals(programmed, desired, pending, 61_000, O);
  assert.equal([d.held, d.pending], [[], undefined]);
});

test('a change of the desired set restarts the wait', () => {
  const programmed = keys(40);
  const first = guardRemovals(programmed, keys(29), undefined, 0, O);
  const changed = guardRemovals(programmed, keys(28), first.pending, 50_000, O);
  assert.equal([changed.held.length, changed.releaseAt], [12, 110_000]);
  assert.is(guardRemovals(programmed, keys(28), changed.pending, 100_000, O).held.length, 12);
  assert.is(guardRemovals(programmed, keys(28), changed.pending, 110_000, O).held.length, 0);
});

test('removing everything is held however few entries there are (the CRD deleted on a small cluster)', () => {
  const d = guardRemovals(keys(3), new Set(), undefined, 0, O);
  assert.equal([d.held.length, d.releaseAt], [3, 60_000]);
  assert.is(guardRemovals(keys(3), keys(1), undefined, 0, O).held.length, 0, 'two of three is not everything: under the minimum');
});

test('while the plans cannot be listed the wait does not run: held, and the window starts again once they can', () => {
  const programmed = keys(3);
  let d = guardRemovals(programmed, new Set(), undefined, 0, O);
  d = guardRemovals(programmed, new Set(), d.pending, 70_000, O, 'services', false);
  assert.equal([d.held.length, d.releaseAt, d.message], [3, 130_000, 'mass removal of 3 of 3 services held while the plans cannot be listed']);
  d = guardRemovals(programmed, new Set(), d.pending, 129_999, O);
  assert.is(d.held.length, 3, 'the window counts only from when listing works again');
  assert.is(guardRemovals(programmed, new Set(), d.pending, 130_000, O).held.length, 0);
});

test('the options: fraction, minimum, window', () => {
  const o = { fraction: 0.5, minimum: 2, confirmMs: 1_000 };
  assert.is(guardRemovals(keys(4), keys(2), undefined, 0, o).held.length, 0, 'half: not more than the fraction');
  const d = guardRemovals(keys(4), keys(1), undefined, 0, o, 'real-server preparations');
  assert.equal([d.held.length, d.message], [3, 'mass removal of 3 of 4 real-server preparations held until the same plan is seen for 1 s']);
});

test.run();
