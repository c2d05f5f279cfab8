// AlternatingList (dataplane/delta-list.ts): patches written into two arrays in turn give, over
// random patches, the lists a copy per patch gives; the last list given out stays as it was
// through the next patch (the one consumers keep), and a patch allocates only after a whole list
// or when patching a list it did not give out.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { AlternatingList } from '../../dataplane/delta-list.ts';

const test = suite('delta list: two arrays in turn');

test('random patches equal copies; the last list is intact after the next patch; no allocation once alternating', () => {
  let seed = 9;
  const r = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const lists = new AlternatingList<number>();
  let reference = Array.from({ length: 50 }, (_, i) => i);
  let last = lists.whole(reference.slice()).list;
  const arrays = new Set<readonly number[]>([last]);
  for (let round = 0; round < 300; round++) {
    if (r() < 0.05) {
      reference = reference.map((x) => x + 1000);
      last = lists.whole(reference.slice()).list;
      arrays.add(last);
      continue;
    }
    const at = Array.from({ length: Math.floor(r() * 4) }, () => Math.floor(r() * 50));
    const value = (i: number) => round * 100 + i;
    const kept = last.slice();
    const next = lists.patch(last, at, value);
    const want = reference.slice();
    for (const i of at) want[i] = value(i);
    assert.equal(next.list, want, `round ${round}`);
    assert.equal(last, kept, `round ${round}: the last list is as it was`);
    assert.ok(next.list !== last && next.delta!.from === last && next.delta!.at === at, `round ${round}: a new list, patched from the last`);
    arrays.add(next.list);
    reference = want;
    last = next.list;
  }
  // 300 rounds, about 15 whole lists: each whole list (1) and one copy after it (1), then the two alternate.
  assert.ok(arrays.size < 50, `arrays: ${arrays.size}`);
  // A list it did not give out is copied, never written into.
  const foreign = [1, 2, 3];
  const out = lists.patch(foreign, [0], () => 9);
  assert.equal([foreign, out.list], [[1, 2, 3], [9, 2, 3]]);
});

test.run();
