// kube/gc-log.ts: garbage-collection pauses as debug lines, from real collections of this process.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { pino } from 'pino';
import { constants } from 'node:perf_hooks';
import { gcLine, watchGcPauses } from '../../kube/gc-log.ts';

const test = suite('gc pauses in the log');

const KINDS = ['major', 'minor', 'incremental', 'weakcb'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function capture(level: string): { log: ReturnType<typeof pino>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  return { log: pino({ level }, { write: (l: string) => { lines.push(JSON.parse(l) as Record<string, unknown>); } }), lines };
}

/** Garbage until at least one collection has run: short-lived arrays, then a turn of the loop. */
async function churn(): Promise<void> {
  let keep: unknown[] = [];
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 200_000; i++) {
      keep.push({ i, a: new Array(8).fill(i) });
      if (keep.length > 5_000) keep = [];
    }
    // The entries are delivered after the collection, on a later turn of the event loop.
    await sleep(20);
  }
}

test('at debug, every collection of minMs or more is a line: kind, pause and wall start', async () => {
  const { log, lines } = capture('debug');
  const before = Date.now();
  const stop = watchGcPauses(log, { minMs: 0 });
  await churn();
  stop();
  const after = Date.now();
  const gc = lines.filter((l) => l.op === 'gc');
  assert.ok(gc.length > 0, `no gc line among ${lines.length}`);
  for (const l of gc) {
    assert.is(l.level, 20, 'debug');
    assert.is(l.msg, 'gc pause');
    assert.ok(KINDS.includes(l.kind as string), `kind ${String(l.kind)}`);
    assert.type(l.ms, 'number');
    assert.ok((l.ms as number) >= 0);
    assert.type(l.startedAt, 'number');
    assert.ok((l.startedAt as number) >= before - 1 && (l.startedAt as number) <= after, `startedAt ${String(l.startedAt)} outside [${before}, ${after}]`);
  }
  // Stopped: more garbage logs nothing more.
  const n = lines.length;
  await churn();
  assert.is(lines.length, n);
});

test('above debug nothing is observed; a long minimum leaves the short collections out', async () => {
  const info = capture('info');
  const stopInfo = watchGcPauses(info.log, { minMs: 0 });
  // A logger that says it is above debug but would record a debug call: no observer was made.
  const asked: object[] = [];
  const stopQuiet = watchGcPauses({ isLevelEnabled: () => false, debug: (o) => { asked.push(o); } }, { minMs: 0 });
  const debug = capture('debug');
  const stopDebug = watchGcPauses(debug.log, { minMs: 60_000 });
  await churn();
  stopInfo(); stopQuiet(); stopDebug();
  assert.equal(info.lines, []);
  assert.equal(asked, []);
  assert.equal(debug.lines, []);
});

test('the observer does not keep the process alive', () => {
  const script = `import { watchGcPauses } from ${JSON.stringify(new URL('../../kube/gc-log.ts', import.meta.url).href)};
watchGcPauses({ isLevelEnabled: () => true, debug: () => {} }, { minMs: 0 });
let keep = []; for (let i = 0; i < 300000; i++) { keep.push([i]); if (keep.length > 1000) keep = []; }`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { timeout: 20_000, encoding: 'utf8' });
  assert.is(r.error, undefined, 'ended by the timeout');
  assert.is(r.status, 0, r.stderr);
});

test('an entry to a line: the kind by its constant, ms to 0.1, start on the wall clock', () => {
  const entry = (kind: number, startTime: number, duration: number) => ({ startTime, duration, detail: { kind, flags: 0 } });
  assert.equal(gcLine(entry(constants.NODE_PERFORMANCE_GC_MAJOR, 1_500.4, 23.456), 1_000_000), { op: 'gc', kind: 'major', ms: 23.5, startedAt: 1_001_500 });
  assert.is(gcLine(entry(constants.NODE_PERFORMANCE_GC_MINOR, 0, 1), 0).kind, 'minor');
  assert.is(gcLine(entry(constants.NODE_PERFORMANCE_GC_INCREMENTAL, 0, 1), 0).kind, 'incremental');
  assert.is(gcLine(entry(constants.NODE_PERFORMANCE_GC_WEAKCB, 0, 1), 0).kind, 'weakcb');
  assert.is(gcLine(entry(999, 0, 1), 0).kind, 'unknown(999)');
});

test.run();
