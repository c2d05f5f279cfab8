// The sync driver. Events never touch the kernel: they only markDirty(). One sync runs at a time;
// marks that arrive while it runs are coalesced into one more sync, started as soon as it ends: a
// change waits at most for the sync in front of it, and a burst of changes costs one sync per sync
// duration. By default nothing else limits the rate (minIntervalMs 0; marks within one turn of the
// event loop share a sync); minIntervalMs > 0 spaces the starts of change syncs. Runs are retried
// after the delay a 'retry' result asks for (exponential backoff, computed by the syncer), repeated
// while destinations drain, and repeated every verifyTickMs even when nothing was marked: a verify
// tick, whose sync reads back the next verify slice (verify.ts), so every desired service is read
// back once per resyncIntervalMs and an outside edit to one is repaired within resyncIntervalMs
// plus one tick. Syncs in between read back only the services whose desired state changed
// (sync.ts), and start a director check (lvs0, its sysctls, our nft tables) once per
// resyncIntervalMs, which runs beside them; a check with something to act on marks a sync. The
// full read-back (which also finds services someone else added on our VIPs) comes every
// fullResyncIntervalMs, by default 10 × resyncIntervalMs, besides the syncer's own reasons (first
// sync, after an error, owned VIPs changed, retiring VIPs, refusals). A change that meets a due
// slice or full read-back is synced alone, and the left work follows at once (the result's
// followUp), so a change waits behind one only if it lands while one runs; one that lands while a
// verify slice is read stops the slice after the batch being read (the syncer's `pending`). A new
// mark does not wait out a backoff: a changed plan may be exactly what fixes the failure.
import { realClock, type Timer } from '../../kube/clock.ts';
import { createSyncer, type SyncResult, type SyncerOptions } from './sync.ts';
import { nodeLogger } from './syncer-types.ts';

export interface SyncLoopOptions extends SyncerOptions {
  /**
   * Least time between the starts of two syncs for marks (follow-ups, retries and ticks have their own
   * timing). Default 0: a mark starts a sync at once, or right after the one running.
   */
  minIntervalMs?: number;
  /** Every desired service is read back (verified) once per this period. Default 60 s. */
  resyncIntervalMs?: number;
  /** Period of the verify ticks when nothing else syncs. Default max(minIntervalMs, 5 s). */
  verifyTickMs?: number;
  /** Called with every result (status reporting). */
  onResult?: (r: SyncResult) => void;
  /** Told of every sync (the agent's /metrics). */
  metrics?: SyncMetrics;
}

/** What the sync loop tells the agent's metrics (../agent/metrics.ts). */
export interface SyncMetrics {
  synced(r: SyncResult, seconds: number, wallNow: number): void;
}

/** The full read-back's period, in verify intervals (resyncIntervalMs), unless fullResyncIntervalMs is given. */
export const FULL_RESYNC_FACTOR = 10;

export interface SyncLoop {
  /** Something changed (plan, endpoints, nodes): sync soon. */
  markDirty(): void;
  /** The director's state may not be what the last sync left (a quick announce ran): check it in a sync soon. */
  markDirector(): void;
  /** Start with an immediate sync. */
  start(): void;
  /** No further syncs; resolves when the running one (if any) and a director check running are done. */
  stop(): Promise<void>;
  /** Resolves when the sync running now (and any queued behind it) has finished. */
  idle(): Promise<void>;
  /** The last result, if any sync has run. */
  readonly last: SyncResult | undefined;
  /** When the next sync is due (monotonic clock time), or undefined when none is scheduled. */
  readonly nextRunAt: number | undefined;
  /** A sync is running now. */
  readonly running: boolean;
}

export function createSyncLoop(opts: SyncLoopOptions): SyncLoop {
  const clock = opts.clock ?? realClock;
  const minIntervalMs = opts.minIntervalMs ?? 0;
  const resyncIntervalMs = opts.resyncIntervalMs ?? 60_000;
  const verifyTickMs = opts.verifyTickMs ?? Math.max(minIntervalMs, 5_000);
  // Between two full read-backs a sync reads back what changed and, once per tick, a verify slice.
  const syncer = createSyncer({
    ...opts, clock,
    fullResyncIntervalMs: opts.fullResyncIntervalMs ?? FULL_RESYNC_FACTOR * resyncIntervalMs,
    verify: opts.verify ?? { intervalMs: resyncIntervalMs, tickMs: verifyTickMs },
    onDirectorChecked: () => { opts.onDirectorChecked?.(); api.markDirty(); },
    pending: () => dirty,
  });
  const log = nodeLogger(opts.log, opts.node);
  let timer: Timer | undefined;
  let dueAt: number | undefined;
  let running: Promise<void> | undefined;
  let dirty = false;
  let stopped = true;
  let lastStart = -Infinity;
  let last: SyncResult | undefined;

  /** Make sure a sync happens no later than `at` (an earlier one already scheduled stands). */
  function schedule(at: number): void {
    if (stopped || (dueAt !== undefined && dueAt <= at)) return;
    timer?.cancel();
    dueAt = at;
    timer = clock.setTimer(fire, Math.max(0, at - clock.now()));
  }

  function cancel(): void {
    timer?.cancel();
    timer = undefined;
    dueAt = undefined;
  }

  function fire(): void {
    timer = undefined;
    dueAt = undefined;
    if (stopped) return;
    const p: Promise<void> = (running ?? Promise.resolve())
      .then(run)
      .catch((err: unknown) => log.error({ err }, 'sync loop error'))
      .finally(() => {
        if (running !== p) return;
        running = undefined;
        // A mark that landed after the run's own check must not wait for the periodic resync.
        if (dirty) schedule(Math.max(clock.now(), lastStart + minIntervalMs));
      });
    running = p;
  }

  async function run(): Promise<void> {
    if (stopped) return;
    cancel();
    dirty = false;
    lastStart = clock.now();
    const result = await syncer.sync();
    last = result;
    // One line per sync at debug: what a latency benchmark lines its changes up against.
    log.debug({ op: 'sync', result: result.kind, read: result.read, verified: result.verified, listed: result.listed, ops: result.ops, ms: clock.now() - lastStart }, 'sync');
    try {
      opts.metrics?.synced(result, (clock.now() - lastStart) / 1000, clock.wallNow());
      opts.onResult?.(result);
    } catch (err) {
      log.error({ err }, 'onResult callback threw');
    }
    const now = clock.now();
    // A retry's backoff may exceed a tick (its sync is full anyway); drain polls keep the ticks.
    const next = result.kind === 'ok' ? verifyTickMs : Math.min(result.after, result.kind === 'retry' ? resyncIntervalMs : verifyTickMs);
    schedule(now + next);
    // A follow-up (a slice or full read-back left behind a change) runs at once: one per change
    // sync, so it needs no rate limit.
    if (result.followUp) schedule(now);
    else if (dirty) schedule(Math.max(now, lastStart + minIntervalMs));
  }

  const api: SyncLoop = {
    markDirector() {
      syncer.checkDirectorNext();
      api.markDirty();
    },
    markDirty() {
      dirty = true;
      // While a sync runs, its tail schedules the next one; otherwise respect the rate limit.
      if (!running) schedule(Math.max(clock.now(), lastStart + minIntervalMs));
    },
    start() {
      if (!stopped) return;
      stopped = false;
      schedule(clock.now());
    },
    async stop() {
      stopped = true;
      cancel();
      await running;
      await syncer.directorChecked();
    },
    async idle() {
      while (running) await running;
    },
    get last() {
      return last;
    },
    get nextRunAt() {
      return dueAt;
    },
    get running() {
      return running !== undefined;
    },
  };
  return api;
}
