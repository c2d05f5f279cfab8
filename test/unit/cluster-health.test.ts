// Health checks in cluster mode, on the fake kernel and API with a scripted checker: a checked
// plan's real servers follow their checks (never passed: weight 0), the node's report lists the
// down ones by uid, and a restart keeps checked real servers in rotation (seeded from the kernel).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { CheckResult, Probe } from '../../dataplane/health/check.ts';
import { harness, ownerPlan, publish, service, VIP } from '../lib/cluster-fixtures.ts';

const test = suite('cluster: health checks');
const HC = { type: 'tcp' as const, intervalSeconds: 2, timeoutSeconds: 1, failureThreshold: 2, successThreshold: 1, onFailure: 'Quiesce' as const };
const checked = () => ownerPlan('db', [service({ healthCheck: HC, realServers: [{ address: '10.0.0.1', port: 5432, weight: 4, state: 'Ready' }, { address: '10.0.0.2', port: 5432, weight: 1, state: 'Ready' }] })]);

function scripted(alive: Set<string>, calls: string[]) {
  return async (p: Probe): Promise<CheckResult> => {
    calls.push(p.address);
    return alive.has(p.address) ? { ok: true, message: 'ok' } : { ok: false, message: 'connection refused' };
  };
}

test('never passed: weight 0 until the first pass; a dead one goes to 0 after failureThreshold checks and is reported', async () => {
  const h = harness('n1');
  const alive = new Set(['10.0.0.1']);
  const calls: string[] = [];
  publish(h.api, checked());
  await h.start({ checker: scripted(alive, calls) });
  try {
    await h.clock.advance(1_500);
    assert.equal(h.view(), [`TCP/${VIP}:80 -> 10.0.0.1:5432 w=4`, `TCP/${VIP}:80 -> 10.0.0.2:5432 w=0`]);
    assert.equal(h.report()!.health?.unhealthy.map((u) => `${u.uid} ${u.address}:${u.port} ${u.message}`), ['uid-db 10.0.0.2:5432 connection refused']);
    assert.is(h.report()!.health?.checked, 2);
    alive.add('10.0.0.2');
    alive.delete('10.0.0.1');
    await h.clock.advance(6_000);
    assert.equal(h.view(), [`TCP/${VIP}:80 -> 10.0.0.1:5432 w=0`, `TCP/${VIP}:80 -> 10.0.0.2:5432 w=1`]);
    assert.equal(h.report()!.health?.unhealthy.map((u) => u.address), ['10.0.0.1']);
    assert.ok(calls.length >= 6, 'checked every interval');
  } finally { await h.close(); }
});

test('all real servers down with onFailure Remove: every destination goes, the service stays, and all are reported', async () => {
  const h = harness('n1');
  const alive = new Set(['10.0.0.1', '10.0.0.2']);
  publish(h.api, ownerPlan('db', [service({ healthCheck: { ...HC, onFailure: 'Remove' }, realServers: [{ address: '10.0.0.1', port: 5432, weight: 4, state: 'Ready' }, { address: '10.0.0.2', port: 5432, weight: 1, state: 'Ready' }] })]));
  await h.start({ checker: scripted(alive, []), drainTimeoutMs: 1_000 });
  try {
    await h.clock.advance(1_500);
    assert.equal(h.view(), [`TCP/${VIP}:80 -> 10.0.0.1:5432 w=4`, `TCP/${VIP}:80 -> 10.0.0.2:5432 w=1`]);
    alive.clear();
    await h.clock.advance(12_000);
    assert.equal(h.view(), [`TCP/${VIP}:80`], 'the virtual service is kept without destinations');
    assert.equal(h.report()!.health?.unhealthy.map((u) => u.address), ['10.0.0.1', '10.0.0.2']);
    assert.equal(h.report()!.failing, [], 'out of rotation is health, not a programming failure');
  } finally { await h.close(); }
});

test('a restart keeps checked real servers in rotation until their checks say otherwise (seeded from the kernel)', async () => {
  const h = harness('n1');
  const alive = new Set(['10.0.0.1', '10.0.0.2']);
  publish(h.api, checked());
  await h.start({ checker: scripted(alive, []) });
  await h.clock.advance(1_500);
  assert.equal(h.view(), [`TCP/${VIP}:80 -> 10.0.0.1:5432 w=4`, `TCP/${VIP}:80 -> 10.0.0.2:5432 w=1`]);
  await h.stop();
  const mutations = h.kernel.mutations;
  // The new process's checker never answers: without seeding, the first sync would set weight 0.
  await h.start({ checker: () => new Promise<CheckResult>(() => {}) });
  try {
    await h.clock.advance(5_000);
    assert.equal(h.view(), [`TCP/${VIP}:80 -> 10.0.0.1:5432 w=4`, `TCP/${VIP}:80 -> 10.0.0.2:5432 w=1`]);
    assert.is(h.kernel.mutations, mutations, 'no kernel write at all');
  } finally { await h.close(); }
});

test.run();
