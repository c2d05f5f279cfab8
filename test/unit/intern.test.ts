// The informers' string table (kube/intern.ts): equal strings come back as one value, objects keep
// every value (only the copies are shared), the table stays within its bound.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Interner } from '../../kube/intern.ts';

const test = suite('intern');

test('deep() keeps every value and structure; equal strings of two objects become one', () => {
  const i = new Interner();
  const a = JSON.parse('{"kind":"VirtualServer","status":{"conditions":[{"type":"Ready","status":"True"}],"n":3,"ok":true,"x":null},"list":["a","b"]}');
  const b = JSON.parse('{"kind":"VirtualServer","status":{"conditions":[{"type":"Ready","status":"True"}],"n":3,"ok":true,"x":null},"list":["a","b"]}');
  const copy = structuredClone(a);
  assert.equal(i.deep(a), copy);
  assert.equal(i.deep(b), copy);
  assert.is(i.size, 5, 'VirtualServer, Ready, True, a, b and nothing else');
  assert.is(i.string('VirtualServer'), 'VirtualServer');
});

test('the table is emptied when full and keeps working; long strings are not kept', () => {
  const i = new Interner(3);
  for (const s of ['a', 'b', 'c']) i.string(s);
  assert.is(i.size, 3);
  assert.is(i.string('d'), 'd');
  assert.is(i.size, 1, 'emptied, then d');
  assert.is(i.string('x'.repeat(600)), 'x'.repeat(600));
  assert.is(i.size, 1);
});

test.run();
