// `lvs-agent run --min-sync-interval-ms`: the flag is checked before anything is touched, and its
// value travels through the cluster agent's options into the sync loop, which then spaces the
// syncs that changes cause (a churning plan costs one sync per interval, not one per change).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { rejects } from 'node:assert/strict';
import { pino } from 'pino';
import { applyCommand, runSyncOptions, UsageError } from '../../dataplane/cli/commands.ts';
import { harness, ownerPlan, publish, service, VIP } from '../lib/cluster-fixtures.ts';

const test = suite('run --min-sync-interval-ms');

test('the flag: an integer 0-60000 becomes the agent\'s minSyncIntervalMs; anything else is a UsageError naming it', () => {
  assert.equal(runSyncOptions({}), {}, 'no flag: the agent\'s default (0)');
  assert.equal(runSyncOptions({ 'min-sync-interval-ms': '0' }), { minSyncIntervalMs: 0 });
  assert.equal(runSyncOptions({ 'min-sync-interval-ms': '2000' }), { minSyncIntervalMs: 2_000 });
  assert.equal(runSyncOptions({ 'min-sync-interval-ms': '60000' }), { minSyncIntervalMs: 60_000 });
  for (const bad of ['-1', '1.5', 'abc', '70000', '60001', '', '1e3', ' 5']) {
    assert.throws(() => runSyncOptions({ 'min-sync-interval-ms': bad }),
      (e: unknown) => e instanceof UsageError && /^--min-sync-interval-ms must be an integer 0-60000/.test(e.message) && e.message.includes(JSON.stringify(bad)),
      `${JSON.stringify(bad)} accepted or not named`);
  }
});

test('apply refuses the flag (its --watch loop keeps its own 250 ms) before reading any file', async () => {
  await rejects(applyCommand({
    values: { file: ['/nonexistent/vs.yaml'], 'min-sync-interval-ms': '100' },
    log: pino({ level: 'silent' }),
    run: async () => { throw new Error('no command may run'); },
  }), (e: unknown) => e instanceof UsageError && e.message.startsWith('--min-sync-interval-ms is for `lvs-agent run`'));
});

/**
 * A plan changed every 100 ms for 3 s (30 changes), with the agent made from the flag's options:
 * the start times of its syncs from the first change until 2 s after the last.
 */
async function churn(flag: string | undefined): Promise<{ starts: number[]; view: string[] }> {
  const h = harness('n1');
  publish(h.api, ownerPlan('web', [service()]));
  const starts: number[] = [];
  await h.start({
    ...runSyncOptions(flag === undefined ? {} : { 'min-sync-interval-ms': flag }),
    metrics: { programmed: () => {}, synced: (_r, seconds) => { starts.push(h.clock.now() - seconds * 1000); } },
  });
  try {
    await h.clock.advance(10_000);
    const t0 = h.clock.now();
    for (let g = 2; g <= 31; g++) {
      publish(h.api, ownerPlan('web', [service({ realServers: [{ address: '10.244.1.5', port: 8080, weight: g, state: 'Ready' }] })], { generation: g }));
      await h.clock.advance(100);
    }
    await h.clock.advance(2_000);
    return { starts: starts.filter((t) => t >= t0).map((t) => t - t0), view: h.view() };
  } finally { await h.close(); }
}

test('--min-sync-interval-ms=2000 spaces the syncs of a churning plan 2 s apart; without it every change syncs at once', async () => {
  const spaced = await churn('2000');
  assert.equal(spaced.view, [`TCP/${VIP}:80 -> 10.244.1.5:8080 w=31`], 'the last change programmed within the interval');
  // 5 s from the first change: at most one sync per 2 s for changes, plus at most one follow-up
  // (a verify slice or director check left behind a change runs at once).
  assert.ok(spaced.starts.length >= 2 && spaced.starts.length <= 4, `${spaced.starts.length} syncs in 5 s, at ${spaced.starts.join(', ')} ms`);
  const gaps = spaced.starts.slice(1).map((t, i) => t - spaced.starts[i]!);
  assert.ok(gaps.filter((g) => g < 2_000).length <= 1, `syncs closer than 2 s apart: gaps ${gaps.join(', ')} ms`);
  const eager = await churn(undefined);
  assert.equal(eager.view, spaced.view);
  assert.ok(eager.starts.length >= 30, `default (0): one sync per change expected, got ${eager.starts.length}`);
});

test.run();
