// bench/agent/profile.ts: self time goes to the leaf a sample landed in; total time to every
// distinct function on the sample's stack (once, even when it recurses).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { inclusive, summarise, type CpuProfile } from '../../bench/agent/profile.ts';

const test = suite('bench profile');
const frame = (functionName: string, lineNumber = 0) => ({ functionName, url: 'file:///repo/x.ts', lineNumber });

// (root) → main → validate → check, and main → sync → sync (recursion); samples: 3 ms in check,
// 1 ms in validate itself, 2 ms in the inner sync.
const profile: CpuProfile = {
  nodes: [
    { id: 1, callFrame: frame('(root)'), children: [2] },
    { id: 2, callFrame: frame('main', 0), children: [3, 5] },
    { id: 3, callFrame: frame('validate', 9), children: [4] },
    { id: 4, callFrame: frame('check', 19) },
    { id: 5, callFrame: frame('sync', 29), children: [6] },
    { id: 6, callFrame: frame('sync', 29) },
  ],
  samples: [4, 4, 4, 3, 6, 6],
  timeDeltas: [1000, 1000, 1000, 1000, 1000, 1000],
  startTime: 0,
  endTime: 6000,
};

test('total time counts a function once per sample, callees included', () => {
  const byFn = Object.fromEntries(inclusive(profile, '/repo').map((f) => [f.fn.split(' ')[0], f.ms]));
  assert.equal(byFn, { main: 6, validate: 4, check: 3, sync: 2 });
});

test('self time goes to the leaves only', () => {
  const byFn = Object.fromEntries(summarise(profile, '/repo').functions.map((f) => [f.fn.split(' ')[0], f.ms]));
  assert.equal(byFn, { check: 3, sync: 2, validate: 1 });
});

test.run();
