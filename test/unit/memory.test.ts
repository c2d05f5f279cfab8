// The start-up memory line: V8's heap limit against the container's memory limit.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { memoryBudget } from '../../kube/memory.ts';

const test = suite('memory budget');
const MiB = 1024 * 1024;
const HOST = 24 * 1024 * MiB;

test('no cgroup limit (0, or 2^64 as Node reports it): only the heap limit', () => {
  assert.equal(memoryBudget(4096 * MiB, 0, HOST), { heapLimitMiB: 4096 });
  assert.equal(memoryBudget(4096 * MiB, 2 ** 64, HOST), { heapLimitMiB: 4096 });
});

test('the chart\'s 384Mi with --max-old-space-size-percentage=60: within the limit, no warning', () => {
  assert.equal(memoryBudget(263 * MiB, 384 * MiB, HOST), { heapLimitMiB: 263, cgroupLimitMiB: 384 });
});

test('a heap sized to the whole limit (Node\'s default in a container) is warned about, naming the flag', () => {
  const b = memoryBudget(400 * MiB, 384 * MiB, HOST);
  assert.is(b.cgroupLimitMiB, 384);
  assert.match(b.warning!, /heap may grow to 400 MiB against a memory limit of 384 MiB/);
  assert.match(b.warning!, /--max-old-space-size-percentage=60/);
  assert.ok(memoryBudget(0.8 * 384 * MiB, 384 * MiB, HOST).warning, 'from 80% of the limit on');
});

test.run();
