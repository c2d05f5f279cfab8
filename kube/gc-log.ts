// Long V8 garbage-collection pauses in the log of the controller and the agent: a debug line per
// collection that took minMs or more, so a latency outlier can be set against the pauses that
// happened during it (bench/convergence/overlap.ts reads the agent's). Off unless the logger is at
// debug: no observer is created then, so the default costs nothing.
//
// Node reports each collection as a PerformanceEntry of type 'gc' once it is over (from a
// callback after the pause, so the line is written after the pause, never during it):
//   startTime  ms since performance.timeOrigin (this process's start, wall clock) when it began;
//   duration   ms from V8's GC prologue to its epilogue on the main thread: the pause JavaScript
//              saw (work V8's helper threads do concurrently outside it is not counted);
//   detail     { kind, flags }: kind is one of perf_hooks.constants.NODE_PERFORMANCE_GC_*.
// startedAt = timeOrigin + startTime is the wall clock of the process's start advanced by the
// monotonic clock: a wall clock stepped later (NTP) moves pino's `time` but not it.
// A PerformanceObserver holds no handle: it does not keep the process alive (test/unit/gc-log.test.ts).
import { constants, performance, PerformanceObserver } from 'node:perf_hooks';

export type GcKind = 'major' | 'minor' | 'incremental' | 'weakcb';

export interface GcLogger {
  isLevelEnabled(level: string): boolean;
  debug(obj: object, msg: string): void;
}

/** Pauses shorter than this are not logged unless asked (most minor collections are well under it). */
export const DEFAULT_GC_MIN_MS = 20;

const KINDS: ReadonlyMap<number, GcKind> = new Map([
  [constants.NODE_PERFORMANCE_GC_MAJOR, 'major'],
  [constants.NODE_PERFORMANCE_GC_MINOR, 'minor'],
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL, 'incremental'],
  [constants.NODE_PERFORMANCE_GC_WEAKCB, 'weakcb'],
]);

export interface GcLine {
  op: 'gc';
  /** 'unknown(N)' for a kind this Node does not name in its constants */
  kind: GcKind | `unknown(${string})`;
  /** the pause, ms to 0.1 */
  ms: number;
  /** when it began, ms since the epoch (performance.timeOrigin + startTime) */
  startedAt: number;
}

/** What a 'gc' PerformanceEntry has (@types/node's PerformanceEntry lacks its detail). */
export interface GcEntry { startTime: number; duration: number; detail?: unknown }

/** The log line of one gc entry: its kind, pause (ms, to 0.1) and wall start (ms since the epoch). */
export function gcLine(entry: GcEntry, timeOrigin = performance.timeOrigin): GcLine {
  const code = (entry.detail as { kind?: number } | undefined)?.kind;
  return {
    op: 'gc',
    kind: (code !== undefined && KINDS.get(code)) || `unknown(${String(code)})`,
    ms: Math.round(entry.duration * 10) / 10,
    startedAt: Math.round(timeOrigin + entry.startTime),
  };
}

/**
 * Logs each collection of minMs (default DEFAULT_GC_MIN_MS) or more at debug, from now on.
 * Returns the stop; a no-op when the logger is above debug (no observer was made).
 */
export function watchGcPauses(log: GcLogger, opts: { minMs?: number } = {}): () => void {
  if (!log.isLevelEnabled('debug')) return () => {};
  const minMs = opts.minMs ?? DEFAULT_GC_MIN_MS;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if (entry.duration >= minMs) log.debug(gcLine(entry), 'gc pause');
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  return () => observer.disconnect();
}
