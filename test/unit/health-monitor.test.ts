// Health checks' monitor (dataplane/health/), on a manual clock: what the real-kernel test
// (test/kernel/health.test.ts) found — when the monitor tells its owner that the health record is
// worth rewriting (`lvs-agent show` printed a restarted agent's predecessor's record, and nothing
// at all for a real server down from the start), and how late a dead real server is found.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ManualClock } from '../../kube/clock.ts';
import type { CheckResult, Probe } from '../../dataplane/health/check.ts';
import { HealthMonitor } from '../../dataplane/health/monitor.ts';
import { initialHealth, observe } from '../../dataplane/health/policy.ts';
import type { Target } from '../../dataplane/health/targets.ts';
import { captureLog } from '../lib/sync-fixtures.ts';

const test = suite('health: monitor updates and detection time');

function target(o: Partial<Target> & { probe: Probe }): Target {
  return { id: `${o.probe.type} ${o.probe.address}:${o.probe.port}`, intervalMs: 1000, thresholds: { failureThreshold: 3, successThreshold: 2 }, uses: [`TCP/203.0.113.80:80|${o.probe.address}:${o.probe.port}`], ...o };
}

test('onUpdate when a result changes up/down or the reason, not for a repeated identical result', async () => {
  const clock = new ManualClock();
  const results: CheckResult[] = [
    { ok: false, message: 'connection refused' }, { ok: false, message: 'connection refused' },
    { ok: true, message: 'ok' }, { ok: true, message: 'ok' }, { ok: true, message: 'ok' },
  ];
  const t = target({ probe: { type: 'tcp', address: '172.16.0.3', port: 80, timeoutMs: 1000 } });
  const updates: string[] = [];
  let flips = 0;
  const m: HealthMonitor = new HealthMonitor({
    clock, log: captureLog().log, random: () => 0.5,
    checker: async () => results.shift() ?? { ok: true, message: 'ok' },
    onChange: () => { flips++; },
    onUpdate: () => { const h = m.health(t.id)!; updates.push(`${h.up ? 'up' : 'down'}: ${h.message}`); },
  });
  m.setTargets(new Map([[t.id, t]]));
  await clock.advance(6000);
  m.close();
  // "not checked yet" -> refused (the second refusal changes nothing) -> 1 of 2 passes -> up (then nothing).
  assert.equal(updates, ['down: connection refused', 'down: passed 1 of 2 checks needed', 'up: ok']);
  assert.is(flips, 1);
});

/** How long after it dies (at `dieAt` ms) a real server that failed at once, or after a 1 s timeout, goes down. */
async function downAfterDeath(o: { dieAt: number; hang: boolean; random: number }): Promise<number> {
  const clock = new ManualClock();
  const t0 = clock.now();
  const t = target({ probe: { type: 'tcp', address: '172.16.0.3', port: 80, timeoutMs: 1000 }, thresholds: { failureThreshold: 3, successThreshold: 1 } });
  let downAt = -1;
  const m: HealthMonitor = new HealthMonitor({
    clock, log: captureLog().log, random: () => o.random,
    checker: async () => {
      if (clock.now() - t0 < o.dieAt) return { ok: true, message: 'ok' };
      if (o.hang) await clock.sleep(1000);
      return { ok: false, message: o.hang ? 'timed out after 1000 ms' : 'connection refused' };
    },
    onChange: () => { if (!m.health(t.id)!.up) downAt = clock.now() - t0; },
  });
  m.setTargets(new Map([[t.id, t]]));
  await clock.advance(10_000);
  m.close();
  return downAt - o.dieAt;
}

test('jitter never stretches detection past failureThreshold × interval (+ one timeout when checks hang)', async () => {
  // With the jitter at its longest, the checks run at ~250 ms, ~1749 ms (the phase-spreading
  // second check), then every ~1000 ms; the server dies just after the second.
  const refused = await downAfterDeath({ dieAt: 1749, hang: false, random: 0.999 });
  assert.ok(refused <= 3000, `refused: down ${refused} ms after it died`);
  // Intervals run start to start: the 1 s timeouts do not add to the three intervals.
  const hung = await downAfterDeath({ dieAt: 1749, hang: true, random: 0.999 });
  assert.ok(hung <= 3000 + 1000, `hung: down ${hung} ms after it died`);
});

test('policy: a never-passed server whose first check timed out (agent starting) and then answers 500 is down for "status 500"', () => {
  const t = { failureThreshold: 3, successThreshold: 1 };
  let h = initialHealth(0);
  h = observe(h, false, 'timed out after 1000 ms', t, 1).health;
  assert.is(h.message, 'timed out after 1000 ms');
  for (let i = 2; i < 5; i++) h = observe(h, false, 'status 500', t, i).health;
  assert.equal([h.up, h.message], [false, 'status 500']);
});

test.run();
