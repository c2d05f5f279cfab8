// An informer with a transform caches, and hands its handlers, only what the transform keeps:
// listed objects, watched ones, and deleted ones alike. In-memory API.
import pino from 'pino';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { realClock } from '../../kube/clock.ts';
import { Informer } from '../../kube/informer.ts';
import { FakeKubeApi } from '../../kube/testing/fake.ts';
import { SERVICES, type KubeObject } from '../../kube/types.ts';
import { until } from './controller-fixtures.ts';

const test = suite('informer: transform to a compact form');

const svc = (name: string, port: number): KubeObject => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { ports: [{ port }] } } as KubeObject);

test('listed, watched and deleted objects reach the cache and the handlers transformed', async () => {
  const api = new FakeKubeApi();
  api.apply(SERVICES, svc('a', 80));
  const keep = (o: KubeObject): KubeObject => ({ metadata: { name: o.metadata.name, namespace: o.metadata.namespace, resourceVersion: o.metadata.resourceVersion }, port: (o as unknown as { spec: { ports: Array<{ port: number }> } }).spec.ports[0]!.port } as KubeObject);
  const inf = new Informer<KubeObject & { port: number }>({ api, resource: SERVICES, clock: realClock, logger: pino({ level: 'silent' }), transform: keep });
  const seen: string[] = [];
  inf.addHandlers({
    onAdd: (o) => seen.push(`add ${o.metadata.name} ${o.port} ${'spec' in o}`),
    onUpdate: (old, o) => seen.push(`update ${old.port}->${o.port} ${'spec' in o}`),
    onDelete: (o) => seen.push(`delete ${o.metadata.name} ${'spec' in o}`),
  });
  const abort = new AbortController();
  const running = inf.run(abort.signal);
  await until(() => inf.synced, 'listed');
  api.apply(SERVICES, svc('b', 81));
  api.apply(SERVICES, svc('a', 8080));
  api.remove(SERVICES, 'default', 'b');
  await until(() => seen.length === 4, 'four events');
  assert.equal(seen, ['add a 80 false', 'add b 81 false', 'update 80->8080 false', 'delete b false']);
  assert.equal(inf.list().map((o) => Object.keys(o).sort()), [['metadata', 'port']]);
  abort.abort();
  await running;
});

test.run();
