// Pure: what agent work a change overlapped, from the agent's debug log (one `op: sync` line per
// sync with its duration, `op: directorCheck` lines when a check starts and ends; dataplane/sync/
// loop.ts and sync.ts). Issue 14 asks for the changes that overlapped a drift slice apart from the
// others: a verify slice ('slice'), a listing sync ('listing'), a full read-back ('full'), a
// director check running beside the syncs ('director'), or a garbage-collection pause of the agent
// of 20 ms or more ('gc': its `op: gc` lines, kube/gc-log.ts, each logged after its pause with the
// pause's wall start `startedAt` and length `ms`).
import type { AgentLine } from '../../lab/guest/agent.ts';

export type Overlap = 'slice' | 'listing' | 'full' | 'director' | 'gc';

/** How far back (lines) to look for a director check that started before the change. */
const LOOK_BACK = 20_000;
/**
 * A gc line comes after its pause, on the next turn of the agent's event loop: lines before `from`
 * (logged before the write) are looked at this far back, and lines after the sighting until their
 * time passes it by GC_LAG_MS (a turn of the loop held up by a long synchronous step).
 */
const GC_LOOK_BACK = 200;
const GC_LAG_MS = 10_000;

/**
 * What ran between `start` and `end` (pino times, ms since the epoch). `from`: the index of the
 * first line logged after the change was made (a sync that began earlier logs its line later).
 */
export function overlapsOf(lines: readonly AgentLine[], from: number, start: number, end: number): Overlap[] {
  const found = new Set<Overlap>();
  for (let k = from - 1; k >= Math.max(0, from - LOOK_BACK); k--) {
    const j = lines[k]?.json;
    if (j?.op !== 'directorCheck') continue;
    if (j.phase === 'start') found.add('director');
    break;
  }
  for (let k = from; k < lines.length; k++) {
    const j = lines[k]!.json;
    const t = j?.time;
    if (typeof t !== 'number') continue;
    if (j!.op === 'directorCheck' && j!.phase === 'start' && t < end) found.add('director');
    if (j!.op !== 'sync' || typeof j!.ms !== 'number') continue;
    if (t - j!.ms >= end) break;
    if (t <= start) continue;
    if (typeof j!.verified === 'number' && j!.verified > 0) found.add('slice');
    if (typeof j!.listed === 'number') found.add('listing');
    if (j!.read === 'full') found.add('full');
  }
  if (gcPausesIn(lines, from, start, end).length > 0) found.add('gc');
  return [...found].sort();
}

/** The agent's gc pauses (its `op: gc` lines) whose [startedAt, startedAt + ms] meets [start, end]. */
function gcPausesIn(lines: readonly AgentLine[], from: number, start: number, end: number): Array<{ startedAt: number; ms: number }> {
  const out: Array<{ startedAt: number; ms: number }> = [];
  for (let k = Math.max(0, from - GC_LOOK_BACK); k < lines.length; k++) {
    const j = lines[k]!.json;
    if (typeof j?.time === 'number' && j.time > end + GC_LAG_MS) break;
    if (j?.op !== 'gc' || typeof j.startedAt !== 'number' || typeof j.ms !== 'number') continue;
    if (j.startedAt <= end && j.startedAt + j.ms >= start) out.push({ startedAt: j.startedAt, ms: j.ms });
  }
  return out;
}

/**
 * How long the agent was paused for garbage collection within [start, end]: the part of each
 * logged pause inside the window, summed (ms, to 0.1). 0 when none met it, or when the agent
 * logged none (it logs pauses of 20 ms or more, at debug only).
 */
export function gcPauseMsIn(lines: readonly AgentLine[], from: number, start: number, end: number): number {
  const inside = gcPausesIn(lines, from, start, end).reduce((sum, p) => sum + Math.min(end, p.startedAt + p.ms) - Math.max(start, p.startedAt), 0);
  return Math.round(inside * 10) / 10;
}
