// The syncer's contract (sync.ts): what it is given, and the typed result of one sync that tells the
// sync loop when to come back.
import type { Logger } from 'pino';
import type { Clock } from '../../kube/clock.ts';
import type { PlanService } from '../../api/plan.ts';
import type { ListDelta } from '../delta-list.ts';
import type { IpvsKernel } from '../ipvs/types.ts';
import type { Refusal } from './adoption.ts';
import type { Problem } from './desired.ts';
import type { SyncOpKind } from './diff.ts';
import type { VipBinder } from './vips.ts';

export interface SyncerOptions {
  kernel: IpvsKernel;
  node: string;
  /** The current plan (the services of every VirtualServer; only this node's are used). */
  plan: () => readonly PlanService[];
  log: Logger;
  /**
   * Service keys to leave exactly as the kernel has them, their VIPs still owned, though the plan
   * has no entry for them (desiredState's `held`). Called right after plan(), in the same turn,
   * so both describe one snapshot.
   */
  held?: () => readonly string[];
  /**
   * Called right after plan(): where that plan differs from `from`, an earlier plan, when the
   * source knows (the cluster agent does); desiredState then looks only there.
   */
  planDelta?: () => ListDelta<PlanService> | undefined;
  /** Drain deadlines and backoff are measured on clock.now(), the monotonic timeline. */
  clock?: Clock;
  /** When given, owned VIPs are bound on it after their services exist and unbound once retired. */
  vips?: VipBinder;
  /** Longest wait for a removed TCP/SCTP destination's connections to end. Default 5 min. */
  drainTimeoutMs?: number;
  /** How often connection counters are re-read while something drains. Default 5 s. */
  drainPollMs?: number;
  /** Retry delay after failures: initialMs · 2^(n-1), capped at maxMs. Default 1 s .. 60 s. */
  backoff?: { initialMs?: number; maxMs?: number };
  /**
   * Longest time between full read-backs; syncs in between read back only what changed (needs
   * kernel.readService). Default 0: every sync is full. The sync loop passes its resync interval.
   */
  fullResyncIntervalMs?: number;
  /**
   * Rolling verification between full read-backs (verify.ts; needs kernel.readService and
   * fullResyncIntervalMs): every desired service is read back once per intervalMs, in verify
   * slices of at most one per tickMs. The sync loop passes its resync interval and verify tick.
   */
  verify?: { intervalMs: number; tickMs: number };
  /**
   * VIPs this node owned or was still retiring before this process (the owner record): their
   * services are retired — drained, then removed — unless the plan wants them again, even when
   * lvs0 no longer lists them (deleted by hand, or a one-shot apply that exited mid-drain).
   */
  retiringVips?: readonly string[];
  /**
   * A director check (run beside the syncs, sync.ts checkDirector) finished with something for a
   * sync to act on: a failure, lvs0 not as the last sync left it, or another check due. The sync
   * loop runs a sync soon.
   */
  onDirectorChecked?: () => void;
  /**
   * A change waits (the sync loop's mark): a partial sync reading a verify slice stops between two
   * batches of it (verify.ts VERIFY_BATCH), and the next sync goes on from there.
   */
  pending?: () => boolean;
}

export interface SyncError {
  op: SyncOpKind | 'plan' | 'dump' | 'listVips' | 'bindVip' | 'unbindVip';
  /** Service key, when the error concerns one. */
  key?: string;
  dest?: string;
  vip?: string;
  code?: string;
  error: Error;
}

export interface SyncSummary {
  /** Operations the diff asked for. */
  ops: number;
  /** Destinations still draining after this sync. */
  draining: number;
  /** Plan entries that could not be turned into kernel state (not retried: the plan must change). */
  problems: Problem[];
  /** Services read back: 'full' (everything), or how many (a partial sync, its verify slice included). */
  read?: 'full' | number;
  /** Services of a verify slice among those read back by a partial sync (verify.ts). */
  verified?: number;
  /** VIPs still being retired after this sync (services of ours left on them): for the owner record. */
  retiring?: string[];
  /** Wanted VIPs this sync refused to adopt or froze (adoption.ts); their plan keys are in problems. */
  refused?: Refusal[];
  /**
   * The desired state was patched from the last sync's, not rebuilt (desired.ts): plan entries
   * compared (only where planDelta said the plan changed, when it did) and services changed.
   */
  patched?: { compared: number; changed: number };
  /** A listing sync (listing.ts): how many services the kernel listed (one dump without destinations). */
  listed?: number;
  /** Owned VIPs a listing sync added. */
  newVips?: number;
  /** This sync left a due full read-back or verify slice to the next one, which the loop runs at once. */
  followUp?: 'full' | 'verify';
}

export type SyncResult =
  | ({ kind: 'ok' } & SyncSummary)
  | ({ kind: 'retry'; after: number; errors: SyncError[] } & SyncSummary)
  | ({ kind: 'drainPending'; after: number } & SyncSummary);

export interface Syncer {
  sync(): Promise<SyncResult>;
  /** The next partial sync starts a director check (lvs0, sysctls, nft tables) whatever the verifier's schedule. */
  checkDirectorNext(): void;
  /** Resolves when no director check runs (sync.ts checkDirector). */
  directorChecked(): Promise<void>;
}

/**
 * `log` with a `node` binding, unless it has that binding already: the cluster agent, its loop and
 * its syncer each bound it, and every line of a sync carried `"node"` two or three times.
 */
export function nodeLogger(log: Logger, node: string): Logger {
  return typeof log.bindings === 'function' && log.bindings().node === node ? log : log.child({ node });
}
