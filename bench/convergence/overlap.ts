// Pure: what agent work a change overlapped, from the agent's debug log (one `op: sync` line per
// sync with its duration, `op: directorCheck` lines when a check starts and ends; dataplane/sync/
// loop.ts and sync.ts). Issue 14 asks for the changes that overlapped a drift slice apart from the
// others: a verify slice ('slice'), a listing sync ('listing'), a full read-back ('full'), or a
// director check running beside the syncs ('director').
import type { AgentLine } from '../../lab/guest/agent.ts';

export type Overlap = 'slice' | 'listing' | 'full' | 'director';

/** How far back to look for a director check that started before the change. */
const LOOK_BACK = 20_000;

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
  return [...found].sort();
}
