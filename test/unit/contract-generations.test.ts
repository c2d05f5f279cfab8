// The reproduction of "mixed generations": a VirtualServer switched from NAT with targetPort 8000
// to DR used to give the agent a plan `forwarding: DR` with port 8000 (the new spec re-resolved
// by the agent, paired with real servers from the older status) while the controller lagged.
// Now the controller publishes whole plans and the agent's plan book uses one only when all its
// slices are of one revision: watched event by event while the controller rewrites a plan that
// spans two slices, the book only ever yields the old plan or the new one, never a mix.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { PlanSliceObject } from '../../api/plan-slice.ts';
import { readPlanBook } from '../../dataplane/cluster/plan-book.ts';
import { Controller } from '../../operator/controller.ts';
import { openPool } from '../lib/pools.ts';
import { FakeKubeApi } from '../../kube/testing/fake.ts';
import { NODES, PLAN_SLICES, VIRTUAL_SERVERS, objectKey, type KubeObject, type VirtualServerObject, VIP_POOLS } from '../../kube/types.ts';
import { node, staticVs, until } from './controller-fixtures.ts';

const test = suite('contract: no mixed generations');

test('NAT targetPort 8000 -> DR: every plan the agent could read is all NAT:8000 or all DR:80', async () => {
  const api = new FakeKubeApi();
  api.apply(VIP_POOLS, openPool());
  api.apply(NODES, node('node-a', {}, '192.0.2.1'));
  const addresses = Array.from({ length: 1024 }, (_, i) => `10.1.${Math.floor(i / 250)}.${(i % 250) + 1}`);
  const nat = staticVs('switch', addresses, '203.0.113.40');
  (nat.spec!.ports as Array<{ targetPort?: number }>)[0]!.targetPort = 8000;
  api.apply(VIRTUAL_SERVERS, nat);
  const c = new Controller({ api, identity: 'c1', leaderElection: false, retryBackoff: { baseMs: 5, maxMs: 50 }, informerBackoff: { baseMs: 5, maxMs: 50 } });
  void c.start();
  const ac = new AbortController();
  try {
    const vs = () => api.peek<VirtualServerObject>(VIRTUAL_SERVERS, 'default', 'switch')!;
    await until(() => vs().status?.plan?.slices === 2, 'the NAT plan published in two slices');
    await until(() => c.idle(), 'controller idle');
    // The agent's view: every slice event applied to a cache, the book read after each one.
    const cache = new Map<string, KubeObject>(api.all(PLAN_SLICES).map((s) => [objectKey(s), s]));
    let lastGood = readPlanBook([...cache.values()], new Map(), new Map()).lastGood;
    const seen: string[] = [];
    const from = String(Math.max(...api.all(PLAN_SLICES).map((s) => Number(s.metadata.resourceVersion))));
    void api.watch(PLAN_SLICES, { resourceVersion: from }, (e) => {
      if (e.type === 'DELETED') cache.delete(objectKey(e.object));
      else if (e.type !== 'ERROR' && e.type !== 'BOOKMARK') cache.set(objectKey(e.object), e.object);
      const book = readPlanBook([...cache.values()], lastGood, new Map());
      lastGood = book.lastGood;
      const owner = [...book.owners.values()][0]!;
      const kinds = new Set(owner.plan!.services.flatMap((s) => s.realServers.map((r) => `${s.forwarding}:${r.port}`)));
      seen.push(`${[...kinds].join(',')}${owner.frozen ? ' (frozen: rewrite in progress)' : ''}`);
    }, ac.signal);
    const dr = staticVs('switch', addresses, '203.0.113.40', { forwarding: 'DR' });
    delete (dr.spec!.ports as Array<{ targetPort?: number }>)[0]!.targetPort;
    api.apply(VIRTUAL_SERVERS, dr);
    await until(() => vs().status?.plan?.generation === 2 && c.idle(), 'the DR plan published');
    await until(() => seen.at(-1) === 'DR:80', 'the agent reads the DR plan');
    assert.ok(seen.every((s) => s.startsWith('NAT:8000') || s === 'DR:80'), `a mixed plan was readable: ${seen.join(' | ')}`);
    assert.ok(seen.some((s) => s.includes('frozen')), `the rewrite was never seen half done (the test would prove nothing): ${seen.join(' | ')}`);
  } finally {
    ac.abort();
    await c.stop();
  }
});

test.run();
