// The work queue: de-duplication, one worker per key, per-key exponential backoff with reset,
// requeue after a delay, cancellation.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ManualClock } from '../../kube/clock.ts';
import { KubeApiError } from '../../kube/errors.ts';
import { WorkQueue } from '../../operator/queue.ts';

const test = suite('controller: work queue');
const make = () => {
  const clock = new ManualClock();
  return { clock, q: new WorkQueue({ clock, backoff: { baseMs: 100, maxMs: 1000 }, random: () => 1 }) };
};

test('a key marked many times is queued once', async () => {
  const { q } = make();
  for (let i = 0; i < 5; i++) q.add('ns/a');
  q.add('ns/b');
  assert.is(q.length, 2);
  assert.is(await q.get(), 'ns/a');
  assert.is(await q.get(), 'ns/b');
  assert.is(q.length, 0);
});

test('a key marked while being processed is handed out again only after done()', async () => {
  const { q } = make();
  q.add('ns/a');
  const k = await q.get();
  q.add('ns/a');
  q.add('ns/a');
  assert.is(q.length, 0, 'not handed to a second worker while in flight');
  let second: string | undefined;
  void q.get().then((x) => { second = x; });
  await Promise.resolve();
  assert.is(second, undefined);
  q.done(k!);
  await Promise.resolve();
  assert.is(second, 'ns/a', 'the newer state is reconciled after the first run');
});

test('errors back off exponentially per key; success forgets', async () => {
  const { q, clock } = make();
  const fail = async () => { const k = (await q.get())!; q.finish(k, { kind: 'error', err: new Error('x') }); };
  q.add('ns/a');
  await fail();
  assert.equal(clock.pending(), [100]);
  await clock.advance(100);
  await fail();
  assert.equal(clock.pending(), [200]);
  await clock.advance(200);
  await fail();
  assert.equal(clock.pending(), [400]);
  await clock.advance(400);
  const k = (await q.get())!;
  q.finish(k, { kind: 'done' });
  assert.is(q.failures('ns/a'), 0);
  q.add('ns/a');
  await fail();
  assert.equal(clock.pending(), [100], 'backoff starts over after a success');
});

test('backoff is capped and other keys are unaffected', async () => {
  const { q, clock } = make();
  for (let i = 0; i < 8; i++) q.addRateLimited('ns/a');
  assert.equal(clock.pending(), [100], 'pending delay for a key keeps the earliest');
  assert.is(q.addRateLimited('ns/a'), 1000, 'capped at maxMs');
  assert.is(q.addRateLimited('ns/b'), 100);
});

test('a 429 with Retry-After waits what the server asked', async () => {
  const { q, clock } = make();
  q.add('ns/a');
  const k = (await q.get())!;
  q.finish(k, { kind: 'error', err: new KubeApiError('patch', 429, 'slow down', { retryAfterSeconds: 5 }) });
  assert.equal(clock.pending(), [5000]);
});

test('requeue after a delay; the earliest pending delay wins', async () => {
  const { q, clock } = make();
  q.add('ns/a');
  const k = (await q.get())!;
  q.finish(k, { kind: 'requeue', after: 3000 });
  q.addAfter('ns/a', 5000);
  q.addAfter('ns/a', 1000);
  assert.equal(clock.pending(), [1000]);
  await clock.advance(999);
  assert.is(q.length, 0);
  await clock.advance(1);
  assert.is(q.length, 1);
});

test('get() is cancelled by its signal and by shutdown', async () => {
  const { q } = make();
  const ac = new AbortController();
  const p = q.get(ac.signal);
  ac.abort();
  assert.is(await p, undefined);
  q.add('ns/a');
  assert.is(await q.get(), 'ns/a', 'an aborted getter does not swallow a later key');
  const waiting = q.get();
  q.shutDown();
  assert.is(await waiting, undefined);
  q.add('ns/b');
  assert.is(q.length, 0);
});

test('waited(): from the first mark to the hand-out, including the key\'s own previous run', async () => {
  const { clock, q } = make();
  q.add('ns/a');
  await clock.advance(40);
  q.add('ns/a');
  const k = await q.get();
  assert.is(q.waited(k!), 40, 'the first mark counts, not the later one');
  await clock.advance(10);
  q.add('ns/a');
  await clock.advance(25);
  q.done(k!);
  assert.is(q.waited('ns/a'), undefined, 'forgotten once done');
  await q.get();
  assert.is(q.waited('ns/a'), 25, 'marked while in flight: waited for the run before it');
  q.done('ns/a');
  let got: string | undefined;
  void q.get().then((x) => { got = x; });
  q.add('ns/b');
  await Promise.resolve();
  assert.is(got, 'ns/b');
  assert.is(q.waited('ns/b'), 0, 'a worker was waiting');
});

test('lanes: changes before refreshes, one refresh after 8 changes in a row; a refresh marked as a change moves ahead', async () => {
  const { q } = make();
  for (let i = 0; i < 3; i++) q.add(`ns/r${i}`, 'refresh');
  for (let i = 0; i < 10; i++) q.add(`ns/c${i}`);
  q.add('ns/r2');
  const order: string[] = [];
  for (let i = 0; i < 13; i++) { const k = (await q.get())!; order.push(k); q.done(k); }
  assert.equal(order, ['ns/c0', 'ns/c1', 'ns/c2', 'ns/c3', 'ns/c4', 'ns/c5', 'ns/c6', 'ns/c7', 'ns/r0', 'ns/c8', 'ns/c9', 'ns/r2', 'ns/r1'], order.join());
});

test('lanes: marked while in flight, the key comes back in the lane it was marked in (a change wins)', async () => {
  const { q } = make();
  q.add('ns/a', 'refresh');
  const a = (await q.get())!;
  q.add('ns/a', 'refresh');
  assert.is(q.markedAgain(a), false, 'a refresh is not a newer state');
  q.add('ns/a');
  assert.is(q.markedAgain(a), true);
  q.add('ns/b', 'refresh');
  q.add('ns/c');
  q.done(a);
  assert.is(await q.get(), 'ns/c');
  assert.is(await q.get(), 'ns/a', 'came back as a change, ahead of the refresh b');
  assert.is(await q.get(), 'ns/b');
  assert.is(q.length, 0);
});

test.run();
