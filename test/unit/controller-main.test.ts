// The entry point's configuration (flags, environment, defaults, bad values named) and the
// health/metrics endpoints of a running controller.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Controller } from '../../operator/controller.ts';
import { openPool } from '../lib/pools.ts';
import { FakeKubeApi } from '../../kube/testing/fake.ts';
import { NODES, VIRTUAL_SERVERS, VIP_POOLS } from '../../kube/types.ts';
import { parseConfig } from '../../operator/main.ts';
import { node, staticVs, until } from './controller-fixtures.ts';

const test = suite('controller: main and endpoints');

test('defaults: in-cluster config, Lease timings 15/10/2 s, port 8080', () => {
  const c = parseConfig([], { POD_NAME: 'op-0', POD_NAMESPACE: 'lvs-system' });
  assert.equal(c, {
    kubeconfig: 'in-cluster', identity: 'op-0', leaseNamespace: 'lvs-system', leaseName: 'lvs-operator', leaderElect: true,
    leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, metricsPort: 8080, workers: 4, logLevel: 'info',
    defaultLoadBalancerClass: false,
  });
});

test('flags and KUBECONFIG override the defaults', () => {
  const c = parseConfig(['--lease-duration=6', '--renew-deadline=4', '--retry-period=0.5', '--metrics-port', '9100', '--leader-elect=false', '--workers=2'], { KUBECONFIG: '/tmp/kc' });
  assert.is(c.kubeconfig, 'env');
  assert.is(c.leaseDurationMs, 6000);
  assert.is(c.retryPeriodMs, 500);
  assert.is(c.metricsPort, 9100);
  assert.is(c.leaderElect, false);
  assert.is(c.workers, 2);
  assert.ok(c.identity.length > 0, 'an identity even without POD_NAME');
});

test('bad values are refused naming the flag and the reason', () => {
  assert.throws(() => parseConfig(['--lease-duration=soon'], {}), /--lease-duration: must be a positive number of seconds, got "soon"/);
  assert.throws(() => parseConfig(['--workers=0'], {}), /--workers: must be an integer >= 1/);
  assert.throws(() => parseConfig(['--leader-elect=yes'], {}), /--leader-elect: must be true or false/);
  assert.throws(() => parseConfig(['--bogus'], {}), /bogus/);
});

test('/healthz, /readyz and /metrics of a running controller', async () => {
  const api = new FakeKubeApi();
  api.apply(VIP_POOLS, openPool());
  api.apply(NODES, node('node-a'));
  api.apply(VIRTUAL_SERVERS, staticVs('legacy', ['198.51.100.7']));
  api.failNext('list', new Error('apiserver down'), 'nodes');
  const c = new Controller({ api, identity: 'c1', leaderElection: false, http: { port: 0, host: '127.0.0.1' }, informerBackoff: { baseMs: 200, maxMs: 200 } });
  await c.start();
  const get = (p: string) => fetch(`http://127.0.0.1:${c.httpPort}${p}`);
  assert.is((await get('/healthz')).status, 200);
  assert.is((await get('/readyz')).status, 503, 'not ready while the node list is failing');
  await until(() => c.synced(), 'synced');
  assert.is((await get('/readyz')).status, 200);
  await until(() => api.peek(VIRTUAL_SERVERS, 'default', 'legacy')?.metadata.resourceVersion !== '2' && c.idle(), 'status written');
  const text = await (await get('/metrics')).text();
  assert.match(text, /lvs_operator_reconciles_total\{result="done"\} \d+/);
  assert.match(text, /lvs_operator_reconcile_duration_seconds_bucket/);
  assert.match(text, /lvs_operator_errors_total\{op="list"\} 1/);
  assert.match(text, /lvs_operator_queue_depth 0/);
  assert.match(text, /lvs_operator_status_writes_total 1/);
  assert.match(text, /lvs_operator_virtualservers\{condition="Ready",status="True"\} 1/);
  assert.match(text, /lvs_operator_leader 1/);
  assert.is((await get('/nope')).status, 404);
  await c.stop();
});

test.run();
