// An informer backing off because the API server could not be reached retries within a second of
// another request of the same client getting an answer, instead of at the end of its own backoff
// (up to 30 s); a failure the server answered (403, 503) keeps its backoff. In-memory API, manual clock.
import pino from 'pino';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ManualClock, settle } from '../../kube/clock.ts';
import { KubeApiError } from '../../kube/errors.ts';
import { Informer } from '../../kube/informer.ts';
import { FakeKubeApi, partitionable } from '../../kube/testing/fake.ts';
import { SERVICES, VIRTUAL_SERVERS, type KubeObject, type ResourceType } from '../../kube/types.ts';

const test = suite('informer: the API server answers again');

function setup() {
  const clock = new ManualClock();
  const fake = new FakeKubeApi(() => clock.now());
  const net = partitionable(fake);
  const abort = new AbortController();
  const failures = new Map<string, number>();
  const start = (resource: ResourceType) => {
    const inf = new Informer<KubeObject>({
      api: net.api, resource, clock, logger: pino({ level: 'silent' }), random: () => 0.5,
      onError: () => failures.set(resource.plural, (failures.get(resource.plural) ?? 0) + 1),
    });
    void inf.run(abort.signal);
    return inf;
  };
  return { clock, fake, net, abort, start, failures };
}

/** Watches of a resource opened so far. */
const watches = (fake: FakeKubeApi, rt: ResourceType) => fake.count('watch', rt.plural);

test('after an outage, the first answer to any request brings every informer back within a second', async () => {
  const { clock, fake, net, abort, start } = setup();
  const vs = start(VIRTUAL_SERVERS);
  const svc = start(SERVICES);
  await clock.advance(10);
  assert.ok(vs.synced && svc.synced);
  net.cut(true);
  fake.closeWatches(); // the server went away: every watch ends, every retry fails with no answer
  await clock.advance(60_000); // backoff grows to the 30 s cap (22.5 s with this jitter)
  assert.ok(vs.failing && svc.failing);
  const before = [watches(fake, VIRTUAL_SERVERS), watches(fake, SERVICES)];
  net.cut(false);
  // Without a wake-up, nothing retries for seconds: the server is back but unasked.
  await clock.advance(1000);
  assert.equal([watches(fake, VIRTUAL_SERVERS), watches(fake, SERVICES)], before);
  // Some other request of the process (a lease renewal, a status write) gets an answer.
  await net.api.get(SERVICES, 'default', 'missing').catch(() => undefined);
  await clock.advance(1000); // up to a second of jitter
  assert.equal([watches(fake, VIRTUAL_SERVERS), watches(fake, SERVICES)], [before[0]! + 1, before[1]! + 1]);
  assert.is(fake.openWatches, 2);
  abort.abort();
  await settle();
});

for (const [status, reason] of [[403, 'Forbidden'], [503, 'ServiceUnavailable']] as const) {
  test(`a failure the server answered (${status}) keeps its backoff when another request succeeds`, async () => {
    const { clock, fake, net, abort, start, failures } = setup();
    const vs = start(VIRTUAL_SERVERS);
    await clock.advance(10);
    fake.failNext('watch', new KubeApiError('watch virtualservers', 0, 'connection reset'), 'virtualservers');
    for (let i = 0; i < 6; i++) fake.failNext('watch', new KubeApiError('watch virtualservers', status, 'no', { reason }), 'virtualservers');
    fake.closeWatches();
    await clock.advance(20_000); // the reset, then the answered failures: backoff 0.375, 0.75, 1.5, 3, 6, 12 s
    assert.ok(vs.failing);
    const before = failures.get('virtualservers');
    assert.is(before, 6, `the reset and five ${status}s so far`);
    const due = clock.pending().at(-1)!;
    assert.ok(due > 2000, `the informer sleeps in backoff (${due} ms left)`);
    await net.api.get(SERVICES, 'default', 'missing').catch(() => undefined);
    await clock.advance(1000);
    assert.is(failures.get('virtualservers'), before, `a ${status} is not retried because another request was answered`);
    await clock.advance(due);
    assert.is(failures.get('virtualservers'), before! + 1, 'it is retried when its backoff ends');
    abort.abort();
    await settle();
  });
}

test.run();
