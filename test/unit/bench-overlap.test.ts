// bench/convergence/overlap.ts: which agent work a change overlapped, from the agent's debug lines.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { AgentLine } from '../../lab/guest/agent.ts';
import { gcPauseMsIn, overlapsOf } from '../../bench/convergence/overlap.ts';

const test = suite('bench: change overlaps');

const line = (json: Record<string, unknown>): AgentLine => ({ at: 0, text: JSON.stringify(json), json });
const sync = (time: number, ms: number, more: Record<string, unknown> = {}) => line({ op: 'sync', time, ms, result: 'ok', ...more });
const check = (time: number, phase: 'start' | 'done') => line({ op: 'directorCheck', time, phase });
// kube/gc-log.ts: logged at `time`, after the pause of `ms` that began at `startedAt`.
const gc = (time: number, startedAt: number, ms: number) => line({ op: 'gc', time, kind: 'major', startedAt, ms });

test('a change overlaps the syncs that ran between its write and its sighting, by what they read', () => {
  // The change: written at 1,000, seen at 1,400; lines from index 1 on were logged after the write.
  const lines = [
    sync(990, 5, { verified: 30 }), // ended before the write
    sync(1_050, 100, { verified: 32 }), // began before the write, ended after: overlaps
    sync(1_300, 20, { read: 3 }), // the change's own
    sync(1_390, 30, { listed: 10_000 }), // began before the sighting
    sync(2_000, 100, { read: 'full' }), // began after the sighting
  ];
  assert.equal(overlapsOf(lines, 1, 1_000, 1_400), ['listing', 'slice']);
  assert.equal(overlapsOf(lines, 2, 1_060, 1_200), [], 'only the change\'s own sync');
  assert.equal(overlapsOf(lines, 4, 1_950, 2_050), ['full']);
});

test('a director check running at the write, or started before the sighting, is an overlap', () => {
  const started = [check(900, 'start'), sync(1_100, 50, { read: 1 }), check(1_500, 'done')];
  assert.equal(overlapsOf(started, 1, 1_000, 1_200), ['director'], 'running at the write');
  const finished = [check(900, 'start'), check(950, 'done'), sync(1_100, 50, { read: 1 })];
  assert.equal(overlapsOf(finished, 2, 1_000, 1_200), [], 'done before the write');
  const during = [sync(1_100, 50, { read: 1 }), check(1_150, 'start'), check(1_600, 'done')];
  assert.equal(overlapsOf(during, 0, 1_000, 1_200), ['director'], 'started before the sighting');
  assert.equal(overlapsOf(during, 0, 1_000, 1_120), [], 'started after the sighting');
});

test('a garbage-collection pause of the agent that met the change\'s window is an overlap, counted by its ms inside', () => {
  // The change: written at 1,000 (lines from index 1 on logged after it), seen at 1,400.
  const inside = [sync(990, 5), gc(1_130, 1_100, 25), sync(1_300, 20, { read: 1 })];
  assert.equal(overlapsOf(inside, 1, 1_000, 1_400), ['gc'], 'a pause inside the window');
  assert.is(gcPauseMsIn(inside, 1, 1_000, 1_400), 25);
  const before = [gc(950, 900, 40), sync(1_300, 20, { read: 1 })];
  assert.equal(overlapsOf(before, 1, 1_000, 1_400), [], 'a pause over before the write');
  assert.is(gcPauseMsIn(before, 1, 1_000, 1_400), 0);
  // Began 20 ms before the write and lasted 50: logged after the write; 30 ms of it inside.
  const across = [sync(990, 5), gc(1_035, 980, 50), sync(1_300, 20, { read: 1 })];
  assert.equal(overlapsOf(across, 1, 1_000, 1_400), ['gc'], 'a pause running at the write');
  assert.is(gcPauseMsIn(across, 1, 1_000, 1_400), 30);
  // Two pauses, the second running past the sighting and logged after it: 20 + 10 ms inside.
  const two = [gc(1_130, 1_100, 20), sync(1_300, 20, { read: 1 }), gc(1_460, 1_390, 60)];
  assert.is(gcPauseMsIn(two, 0, 1_000, 1_400), 30);
  assert.equal(overlapsOf([gc(1_500, 1_450, 40)], 0, 1_000, 1_400), [], 'a pause after the sighting');
  assert.equal(overlapsOf([gc(30_000, 1_200, 40)], 0, 1_000, 1_400), [], 'lines logged long after the sighting are not read');
});

test.run();

const report = suite('bench: convergence report');

/** The convergence section of one run of 10 services with these events. */
async function sectionOf(events: Array<Record<string, unknown>>, changes: number): Promise<string> {
  const { convergenceSection } = await import('../../bench/lib/report.ts');
  const load = { at: '', uptime: '', loadavg: [0, 0, 0] as [number, number, number] };
  return convergenceSection({
    bench: 'convergence', command: 'x', changes,
    machine: { date: '2026-12-07T00:00:00Z', nproc: 2, cpuModel: 'c', kernel: 'k', node: 'v24', memTotalGiB: 24 },
    runs: [{ n: 10, loadBefore: load, loadAfter: load, setup: {}, vm: { bootMs: 0, totalMs: 0, exitCode: 0, timedOut: false }, complete: true, events }],
  });
}

report('bursts and overlaps are reported apart; the main row holds only the sequential changes', async () => {
  const change = (seenMs: number, more: Record<string, unknown> = {}) => ({ type: 'change', seenMs, agentAppliedMs: seenMs, writeMs: 1, planSeenMs: 1, ...more });
  const events = [
    change(100, { overlapped: [] }), change(200, { overlapped: [] }), change(5_000, { overlapped: ['slice'] }),
    change(9_000, { burst: 0, overlapped: ['director'] }), change(8_000, { burst: 0, overlapped: [] }),
    { type: 'burst', burst: 0, size: 2, writeMs: 40 },
  ];
  const text = await sectionOf(events, 5);
  const main = text.split('\n').find((l) => l.startsWith('| 10 | 0 / 0 / 0'))!;
  assert.match(main, /\| 3 \/ 3 \|/, 'three sequential changes');
  assert.match(main, /\| 5000 ms \| 5000 ms \| 5000 ms \|/, 'p90, p99 and max are the sequential changes\'');
  assert.not.match(main, /[89]000/);
  assert.ok(text.split('\n').some((l) => /^\| 10 \| 1 × 2 \| 2 \| 8000 ms \| .*\| 9000 ms \| 40.0 ms \|$/.test(l)), text);
  assert.ok(text.split('\n').some((l) => /^\| 10 \| none \| 2 \| /.test(l)), 'two sequential changes overlapped nothing (bursts are apart)');
  assert.ok(text.split('\n').some((l) => /^\| 10 \| slice \| 1 \| 5000 ms/.test(l)));
  assert.not.ok(text.split('\n').some((l) => /^\| 10 \| director \|/.test(l)), 'the burst change that overlapped a check is not among the sequential ones');
});

report('changes that overlapped a garbage-collection pause of the agent have their row', async () => {
  const events = [
    { type: 'change', seenMs: 100, agentAppliedMs: 100, writeMs: 1, planSeenMs: 1, overlapped: [], agentGcMs: 0 },
    { type: 'change', seenMs: 700, agentAppliedMs: 700, writeMs: 1, planSeenMs: 1, overlapped: ['gc'], agentGcMs: 480 },
  ];
  const text = await sectionOf(events, 2);
  assert.ok(text.split('\n').some((l) => /^\| 10 \| gc \| 1 \| 700 ms/.test(l)), text);
  assert.match(text, /gc = a garbage-collection pause of the agent/);
});

report.run();
