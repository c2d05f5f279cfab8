// PlanSlice and status writes over HTTP (nock): a 409 on the status makes reconcile re-read the
// object, publish and recompute from the fresh copy before writing again; a 429 on the write is
// retried by the work queue after exactly Retry-After; a 409 on a slice write is left to the
// queue's backoff, with no status written from a plan that was not published. Status writes are
// merge patches of the status subresource, conditional on the resourceVersion the status was
// computed from; slice replacements are PUTs conditional on the stored slice's resourceVersion.
import { openPool } from '../lib/pools.ts';
import nock from 'nock';
import pino from 'pino';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ManualClock } from '../../kube/clock.ts';
import type { EventSink } from '../../kube/events.ts';
import { RestKubeApi } from '../../kube/rest.ts';
import type { NodeObject, VirtualServerObject, VirtualServerStatus } from '../../kube/types.ts';
import type { PlanSliceObject } from '../../api/plan-slice.ts';
import { publishedSlice } from '../../operator/publish.ts';
import { WorkQueue } from '../../operator/queue.ts';
import { reconcile, type ReconcileDeps } from '../../operator/reconcile.ts';
import { Reports } from '../../operator/reports.ts';
import { PublishedSlices } from '../../operator/slices.ts';
import { World } from '../../operator/world.ts';

const SERVER = 'http://kube.test';
const VS_PATH = '/apis/lvs.dev/v1alpha1/namespaces/default/virtualservers/legacy';
const SLICES_PATH = '/apis/lvs.dev/v1alpha1/planslices';
const SLICE_PATH = `${SLICES_PATH}/u1-0`;
const test = suite('api: status writes');

function legacy(rv: string, generation: number, addresses: string[]): VirtualServerObject {
  return {
    apiVersion: 'lvs.dev/v1alpha1', kind: 'VirtualServer',
    metadata: { name: 'legacy', namespace: 'default', resourceVersion: rv, generation, uid: 'u1', creationTimestamp: '2025-01-01T00:00:00Z' },
    spec: { addresses: ['203.0.113.20'], ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }], backends: { static: addresses.map((address) => ({ address })) } },
  };
}

const nodeA: NodeObject = { metadata: { name: 'node-a', labels: {} }, status: { addresses: [{ type: 'InternalIP', address: '192.0.2.1' }] } };

function deps(cached: VirtualServerObject, clock: ManualClock) {
  const world = new World(() => cached);
  world.poolChanged(openPool(), false);
  world.nodeChanged('node-a', nodeA);
  world.virtualServerChanged('default/legacy', cached);
  const events: string[] = [];
  const sink: EventSink = { record: async (_o, ev) => { events.push(`${ev.type} ${ev.reason}`); } };
  let writes = 0;
  const d: ReconcileDeps = {
    api: new RestKubeApi({ server: SERVER, headers: async () => ({}) }), world, getVs: () => cached, clock,
    slices: new PublishedSlices(), reports: new Reports(),
    logger: pino({ level: 'silent' }), events: sink, canWrite: () => true, onStatusWrite: () => { writes++; },
  };
  return { d, events, writes: () => writes };
}

test.before.each(() => { nock.disableNetConnect(); });
test.after.each(() => { nock.cleanAll(); nock.enableNetConnect(); });

test('409 on the status write: re-read, recompute from the fresh spec, write once more', async () => {
  const clock = new ManualClock();
  const cached = legacy('5', 1, ['198.51.100.7']);
  const fresh = legacy('7', 2, ['198.51.100.7', '198.51.100.8']);
  const bodies: Array<{ metadata: { resourceVersion: string }; status: VirtualServerStatus }> = [];
  const k = nock(SERVER);
  // (Bodies are captured by nock's body matcher: a reply function taking the body hangs with fetch.)
  const capture = (body: nock.Body) => { bodies.push(body as never); return true; };
  const slices: PlanSliceObject[] = [];
  const sliceBody = (body: nock.Body) => { slices.push(body as never); return true; };
  const stored = (rv: string) => () => ({ ...slices.at(-1)!, metadata: { ...slices.at(-1)!.metadata, resourceVersion: rv } });
  k.post(SLICES_PATH, sliceBody).reply(201, stored('6'));
  k.patch(`${VS_PATH}/status`, capture).matchHeader('content-type', 'application/merge-patch+json')
    .reply(409, { kind: 'Status', code: 409, reason: 'Conflict', message: 'the object has been modified' });
  k.get(VS_PATH).reply(200, fresh);
  k.put(SLICE_PATH, sliceBody).reply(200, stored('8'));
  k.patch(`${VS_PATH}/status`, capture).reply(200, () => ({ ...fresh, metadata: { ...fresh.metadata, resourceVersion: '9' }, status: bodies[1]?.status }));
  const t = deps(cached, clock);
  const result = await reconcile('default/legacy', t.d);
  assert.equal(result, { kind: 'done' });
  assert.ok(k.isDone(), 'post slice, patch, get, put slice, patch');
  assert.equal(bodies.map((b) => b.metadata.resourceVersion), ['5', '7']);
  // The retried status and plan describe the fresh object (generation 2, two real servers), not the cached one.
  assert.is(bodies[1]!.status.observedGeneration, 2);
  assert.is(bodies[1]!.status.realServerCount, 2);
  assert.is(bodies[0]!.status.realServerCount, 1);
  assert.equal(slices[1]!.services[0]!.realServers.map((r) => r.address), ['198.51.100.7', '198.51.100.8']);
  assert.equal([slices[1]!.metadata.resourceVersion, slices[1]!.owner.generation], ['6', 2], 'replaced conditionally on what was created');
  assert.equal(bodies[1]!.status.plan, { revision: slices[1]!.revision, slices: 1, generation: 2 });
  assert.is(t.writes(), 1);
});

test('409 then the object is gone: nothing more to do', async () => {
  const clock = new ManualClock();
  const k = nock(SERVER);
  k.post(SLICES_PATH).reply(201, { metadata: { name: 'u1-0', resourceVersion: '6' } });
  k.patch(`${VS_PATH}/status`).reply(409, { kind: 'Status', code: 409, reason: 'Conflict', message: 'modified' });
  k.get(VS_PATH).reply(404, { kind: 'Status', code: 404, reason: 'NotFound', message: 'not found' });
  const t = deps(legacy('5', 1, ['198.51.100.7']), clock);
  assert.equal(await reconcile('default/legacy', t.d), { kind: 'done' });
  assert.ok(k.isDone());
  assert.is(t.writes(), 0);
});

test('429 and 503 on the status write: the queue retries after Retry-After, then backoff, then succeeds', async () => {
  const clock = new ManualClock();
  const cached = legacy('5', 1, ['198.51.100.7']);
  const k = nock(SERVER);
  // Published once: the retries find the slice they wrote and do not write it again.
  let posted: PlanSliceObject | undefined;
  k.post(SLICES_PATH, (b: nock.Body) => { posted = b as never; return true; }).reply(201, () => ({ ...posted!, metadata: { ...posted!.metadata, resourceVersion: '6' } }));
  k.patch(`${VS_PATH}/status`).reply(429, { kind: 'Status', code: 429, reason: 'TooManyRequests', message: 'throttled' }, { 'Retry-After': '3' });
  k.patch(`${VS_PATH}/status`).reply(503, 'unavailable');
  k.patch(`${VS_PATH}/status`).reply(200, () => ({ ...cached, metadata: { ...cached.metadata, resourceVersion: '6' } }));
  const t = deps(cached, clock);
  const queue = new WorkQueue({ clock, backoff: { baseMs: 100, maxMs: 1000 }, random: () => 1 });
  const attempt = async () => {
    const key = (await queue.get())!;
    const r = await reconcile(key, t.d);
    queue.finish(key, r);
    return r.kind;
  };
  queue.add('default/legacy');
  assert.is(await attempt(), 'error');
  assert.equal(clock.pending(), [3000], 'Retry-After: 3');
  await clock.advance(3000);
  assert.is(await attempt(), 'error');
  assert.equal(clock.pending(), [200], 'second failure of the key: 100ms doubled');
  await clock.advance(200);
  assert.is(await attempt(), 'done');
  assert.is(queue.failures('default/legacy'), 0, 'success forgets the failures');
  assert.ok(k.isDone());
  assert.is(t.writes(), 1);
});

test('409 on a PlanSlice write: an error for the queue\'s backoff, no status written; the retry decides again', async () => {
  const clock = new ManualClock();
  const cached = legacy('5', 1, ['198.51.100.7']);
  const k = nock(SERVER);
  k.post(SLICES_PATH).reply(409, { kind: 'Status', code: 409, reason: 'AlreadyExists', message: 'planslices "u1-0" already exists' });
  const t = deps(cached, clock);
  const r = await reconcile('default/legacy', t.d);
  assert.is(r.kind, 'error');
  assert.match(String((r as { err: unknown }).err), /409/);
  assert.ok(k.isDone());
  assert.is(t.writes(), 0, 'no status from a plan that is not published');
  // Meanwhile the informer delivered the slice someone else left (another uid's content): replaced, conditionally.
  const old = { apiVersion: 'lvs.dev/v1alpha1', kind: 'PlanSlice', metadata: { name: 'u1-0', resourceVersion: '4', labels: { 'lvs.dev/owner-uid': 'u1' } }, owner: { namespace: 'default', name: 'legacy', uid: 'u1', generation: 0 }, revision: 'x', index: 0, count: 1, directors: [], services: [] } as PlanSliceObject;
  t.d.slices.observe(publishedSlice(old), false);
  let put: PlanSliceObject | undefined;
  k.put(SLICE_PATH, (b: nock.Body) => { put = b as never; return true; }).reply(200, () => ({ ...put!, metadata: { ...put!.metadata, resourceVersion: '6' } }));
  k.patch(`${VS_PATH}/status`).reply(200, () => ({ ...cached, metadata: { ...cached.metadata, resourceVersion: '7' } }));
  assert.equal(await reconcile('default/legacy', t.d), { kind: 'done' });
  assert.ok(k.isDone());
  assert.is(put!.metadata.resourceVersion, '4');
  assert.is(t.writes(), 1);
});

test.run();
