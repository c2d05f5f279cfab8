// The Kubernetes adapter's failure paths over HTTP (nock): list+watch through RestKubeApi and the
// Informer. Time is a ManualClock, so backoff delays are asserted exactly, without sleeping.
import { KubeConfig } from '@kubernetes/client-node';
import nock from 'nock';
import { Readable } from 'node:stream';
import pino from 'pino';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ManualClock, settle } from '../../kube/clock.ts';
import { Informer } from '../../kube/informer.ts';
import { restConfigFromKubeConfig, RestKubeApi } from '../../kube/rest.ts';
import { LEASES, VIRTUAL_SERVERS, type KubeObject } from '../../kube/types.ts';

const SERVER = 'https://kube.test:6443';
const PATH = '/apis/lvs.dev/v1alpha1/virtualservers';
const test = suite('api: informer');

const obj = (name: string, rv: string): KubeObject => ({ apiVersion: 'lvs.dev/v1alpha1', kind: 'VirtualServer', metadata: { name, namespace: 'default', resourceVersion: rv } });
const line = (type: string, o: unknown) => `${JSON.stringify({ type, object: o })}\n`;
const listQ = (q: Record<string, string>) => q.watch === undefined && q.limit === '500';
const watchQ = (rv: string) => (q: Record<string, string>) => q.watch === 'true' && q.resourceVersion === rv && q.allowWatchBookmarks === 'true';

/** A watch response body that stays open (until the client aborts). */
function openStream(...chunks: string[]): Readable {
  const r = new Readable({ read() {} });
  for (const c of chunks) r.push(c);
  return r;
}

async function setup() {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: SERVER, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'token-123' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  const api = new RestKubeApi(await restConfigFromKubeConfig(kc));
  const clock = new ManualClock();
  const informer = new Informer<KubeObject>({
    api, resource: VIRTUAL_SERVERS, clock, logger: pino({ level: 'silent' }),
    backoff: { baseMs: 100, maxMs: 10_000 }, random: () => 1,
  });
  const seen: string[] = [];
  informer.addHandlers({
    onAdd: (o) => seen.push(`add ${o.metadata.name}@${o.metadata.resourceVersion}`),
    onUpdate: (_, o) => seen.push(`update ${o.metadata.name}@${o.metadata.resourceVersion}`),
    onDelete: (o) => seen.push(`delete ${o.metadata.name}`),
  });
  const stop = new AbortController();
  const running = informer.run(stop.signal);
  return { api, informer, clock, seen, finish: async () => { stop.abort(); await running; } };
}

/** Polls in real time (HTTP goes through real sockets and timers even with a manual clock). */
async function until(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check() && Date.now() < end) { await settle(1); await new Promise((r) => setTimeout(r, 2)); }
  assert.ok(check(), `timed out waiting for ${what}`);
}

test.before.each(() => { nock.disableNetConnect(); });
test.after.each(() => { nock.cleanAll(); nock.enableNetConnect(); });

test('410 Gone in the watch stream: relist, and objects deleted meanwhile are reported deleted', async () => {
  const k = nock(SERVER).matchHeader('authorization', 'Bearer token-123');
  k.get(PATH).query(listQ).reply(200, { metadata: { resourceVersion: '10' }, items: [obj('a', '5'), obj('b', '6')] });
  k.get(PATH).query(watchQ('10')).reply(200, line('ERROR', { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version: 10 (15)' }));
  k.get(PATH).query(listQ).reply(200, { metadata: { resourceVersion: '20' }, items: [obj('b', '6'), obj('c', '19')] });
  k.get(PATH).query(watchQ('20')).reply(200, () => openStream());
  const t = await setup();
  await until(() => k.isDone(), 'relist and resumed watch');
  assert.equal(t.seen, ['add a@5', 'add b@6', 'delete a', 'add c@19']);
  assert.equal(t.informer.list().map((o) => o.metadata.name).sort(), ['b', 'c']);
  assert.is(t.informer.resourceVersion, '20');
  assert.is(t.informer.lists, 2);
  assert.equal(t.clock.pending(), [], 'a 410 relists at once, without backoff');
  await t.finish();
});

test('cached objects carry no managedFields (listed or watched); everything else is kept', async () => {
  const managed = (o: KubeObject): KubeObject => ({ ...o, metadata: { ...o.metadata, annotations: { keep: 'me' }, managedFields: [{ manager: 'kubectl', operation: 'Apply', fieldsV1: { 'f:spec': {} } }] } as KubeObject['metadata'] });
  const k = nock(SERVER).matchHeader('authorization', 'Bearer token-123');
  k.get(PATH).query(listQ).reply(200, { metadata: { resourceVersion: '10' }, items: [managed(obj('a', '5'))] });
  k.get(PATH).query(watchQ('10')).reply(200, () => openStream(line('ADDED', managed(obj('b', '11')))));
  const t = await setup();
  await until(() => t.informer.list().length === 2, 'listed a, watched b');
  for (const o of t.informer.list()) assert.equal(o.metadata, { name: o.metadata.name, namespace: 'default', resourceVersion: o.metadata.resourceVersion, annotations: { keep: 'me' } });
  await t.finish();
});

test('410 Gone as the watch response status also relists', async () => {
  const k = nock(SERVER);
  k.get(PATH).query(listQ).reply(200, { metadata: { resourceVersion: '10' }, items: [obj('a', '5')] });
  k.get(PATH).query(watchQ('10')).reply(410, { kind: 'Status', code: 410, reason: 'Gone', message: 'gone' });
  k.get(PATH).query(listQ).reply(200, { metadata: { resourceVersion: '30' }, items: [obj('a', '25')] });
  k.get(PATH).query(watchQ('30')).reply(200, () => openStream());
  const t = await setup();
  await until(() => k.isDone(), 'relist');
  assert.equal(t.seen, ['add a@5', 'update a@25']);
  await t.finish();
});

test('429 waits exactly Retry-After; 5xx backs off exponentially; then the list succeeds', async () => {
  const k = nock(SERVER);
  k.get(PATH).query(listQ).reply(429, { kind: 'Status', code: 429, reason: 'TooManyRequests', message: 'slow down' }, { 'Retry-After': '7' });
  k.get(PATH).query(listQ).reply(503, 'upstream unavailable');
  k.get(PATH).query(listQ).reply(500, { kind: 'Status', code: 500, reason: 'InternalError', message: 'etcd leader changed' });
  k.get(PATH).query(listQ).reply(200, { metadata: { resourceVersion: '10' }, items: [obj('a', '5')] });
  k.get(PATH).query(watchQ('10')).reply(200, () => openStream());
  const t = await setup();
  await until(() => t.clock.pending().length === 1, 'first retry scheduled');
  assert.equal(t.clock.pending(), [7000], 'Retry-After: 7 is honoured');
  await t.clock.advance(6999);
  assert.is(t.informer.synced, false, 'no retry before Retry-After elapsed');
  await t.clock.advance(1);
  await until(() => t.clock.pending().length === 1, 'second retry scheduled');
  assert.equal(t.clock.pending(), [200], '503: base 100ms doubled for the second attempt (jitter pinned to its top)');
  await t.clock.advance(200);
  await until(() => t.clock.pending().length === 1, 'third retry scheduled');
  assert.equal(t.clock.pending(), [400]);
  await t.clock.advance(400);
  await until(() => t.informer.synced && k.isDone(), 'synced after the errors');
  assert.equal(t.seen, ['add a@5']);
  await t.finish();
});

test('no answer from the server: the backoff ends a jittered second after another request is answered (a 429 or 503 does not end it)', async () => {
  const k = nock(SERVER);
  k.get(PATH).query(listQ).replyWithError('connect ECONNREFUSED');
  k.get(PATH).query(listQ).replyWithError('connect ECONNREFUSED');
  k.get(PATH).query(listQ).reply(200, { metadata: { resourceVersion: '10' }, items: [obj('a', '5')] });
  k.get(PATH).query(watchQ('10')).reply(200, () => openStream());
  const lease = '/apis/coordination.k8s.io/v1/namespaces/ns/leases/l';
  k.get(lease).reply(429, { kind: 'Status', code: 429, reason: 'TooManyRequests', message: 'slow down' });
  k.get(lease).reply(503, 'not ready');
  k.get(lease).reply(404, { kind: 'Status', code: 404, reason: 'NotFound', message: 'not found' });
  const t = await setup();
  await until(() => t.clock.pending().length === 1, 'first retry scheduled');
  await t.clock.advance(100);
  await until(() => t.clock.pending().length === 1 && t.clock.pending()[0] === 200, 'second retry scheduled');
  assert.ok(t.api.reachability.unreachable, 'a refused connection marks the server unreachable');
  await t.api.get(LEASES, 'ns', 'l').catch(() => undefined);
  assert.ok(t.api.reachability.unreachable, 'a 429 is no sign that the server serves again');
  await t.api.get(LEASES, 'ns', 'l').catch(() => undefined);
  assert.ok(t.api.reachability.unreachable, 'nor is a 503 (a server still starting answers it)');
  await settle();
  assert.equal(t.clock.pending(), [200], 'the backoff still runs');
  await t.api.get(LEASES, 'ns', 'l').catch(() => undefined);
  assert.not.ok(t.api.reachability.unreachable, 'a 404 is an answer');
  await until(() => t.clock.pending().length === 1 && t.clock.pending()[0] === 1000, 'the jitter replaces the backoff');
  await t.clock.advance(1000);
  await until(() => t.informer.synced && k.isDone(), 'listed and watching');
  assert.equal(t.seen, ['add a@5']);
  await t.finish();
});

test('watch stream cut in the middle of an event: resumes from the last whole event, no loss, no duplicate', async () => {
  const k = nock(SERVER);
  k.get(PATH).query(listQ).reply(200, { metadata: { resourceVersion: '10' }, items: [obj('a', '5')] });
  const modified = line('MODIFIED', obj('a', '12'));
  k.get(PATH).query(watchQ('10')).reply(200, () => {
    const r = openStream(line('ADDED', obj('b', '11')), modified.slice(0, 40));
    setTimeout(() => r.destroy(new Error('connection reset by peer')), 10);
    return r;
  });
  // The server replays everything after 11: the event that was cut, whole this time.
  k.get(PATH).query(watchQ('11')).reply(200, () => openStream(modified, line('BOOKMARK', { metadata: { resourceVersion: '14' } })));
  const t = await setup();
  await until(() => t.clock.pending().length === 1, 'reconnect scheduled after the cut');
  await t.clock.advance(1000);
  await until(() => k.isDone() && t.informer.resourceVersion === '14', 'resumed watch delivered');
  assert.equal(t.seen, ['add a@5', 'add b@11', 'update a@12']);
  assert.is(t.informer.get('default/a')?.metadata.resourceVersion, '12');
  assert.is(t.informer.lists, 1, 'a cut is not a reason to relist');
  await t.finish();
});

test('a watch the server ends cleanly is resumed at once from the last resourceVersion', async () => {
  const k = nock(SERVER);
  k.get(PATH).query(listQ).reply(200, { metadata: { resourceVersion: '10' }, items: [] });
  k.get(PATH).query(watchQ('10')).reply(200, line('ADDED', obj('a', '11')));
  k.get(PATH).query(watchQ('11')).reply(200, () => openStream());
  const t = await setup();
  await until(() => k.isDone(), 'second watch');
  assert.equal(t.clock.pending(), []);
  assert.equal(t.seen, ['add a@11']);
  await t.finish();
});

test.run();
