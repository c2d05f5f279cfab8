// One sync: plan → desired (pure) → read the kernel back (one dump) → diff (pure) → apply → a typed
// result that tells the loop when to come back (MetalLB style: the result, not an exception,
// decides retries). Kernel state is re-read every time, never remembered, so outside edits are
// undone and a fresh agent over an already-programmed kernel performs no operation at all. What
// the syncer does remember between syncs: when each destination started draining, the VIPs it used
// to direct (their services must still be drained and removed), and its consecutive failures.
import type { Logger } from 'pino';
import type { PlanService } from '../../api/plan.ts';
import type { IpvsKernel } from '../ipvs/types.ts';
import { applyOps } from './apply.ts';
import { desiredState, type Problem } from './desired.ts';
import { diff, type SyncOpKind } from './diff.ts';
import { byString, canonicalAddress } from './keys.ts';

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/**
 * The director's VIP device (lvs0): addresses bound there are VIPs this node accepts traffic for,
 * and the record of which VIPs this node owns across restarts.
 */
export interface VipBinder {
  list(): Promise<string[]>;
  /** Make exactly `vips` bound, in one batch (adds and removals together). */
  set(vips: string[]): Promise<void>;
}

export interface SyncerOptions {
  kernel: IpvsKernel;
  node: string;
  /** The current plan (the services of every VirtualServer; only this node's are used). */
  plan: () => readonly PlanService[];
  log: Logger;
  clock?: Clock;
  /** When given, owned VIPs are bound on it after their services exist and unbound once retired. */
  vips?: VipBinder;
  /** Longest wait for a removed TCP/SCTP destination's connections to end. Default 5 min. */
  drainTimeoutMs?: number;
  /** How often connection counters are re-read while something drains. Default 5 s. */
  drainPollMs?: number;
  /** Retry delay after failures: initialMs · 2^(n-1), capped at maxMs. Default 1 s .. 60 s. */
  backoff?: { initialMs?: number; maxMs?: number };
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

interface SyncSummary {
  /** Operations the diff asked for. */
  ops: number;
  /** Destinations still draining after this sync. */
  draining: number;
  /** Plan entries that could not be turned into kernel state (not retried: the plan must change). */
  problems: Problem[];
}

export type SyncResult =
  | ({ kind: 'ok' } & SyncSummary)
  | ({ kind: 'retry'; after: number; errors: SyncError[] } & SyncSummary)
  | ({ kind: 'drainPending'; after: number } & SyncSummary);

export interface Syncer {
  sync(): Promise<SyncResult>;
}

export function createSyncer(opts: SyncerOptions): Syncer {
  const clock = opts.clock ?? systemClock;
  const drainTimeoutMs = opts.drainTimeoutMs ?? 300_000;
  const drainPollMs = opts.drainPollMs ?? 5_000;
  const initialMs = opts.backoff?.initialMs ?? 1_000;
  const maxMs = opts.backoff?.maxMs ?? 60_000;
  const log = opts.log.child({ node: opts.node });
  let draining = new Map<string, number>();
  const retiring = new Set<string>();
  let lastOwned = new Set<string>();
  let failures = 0;

  function retry(errors: SyncError[], summary: SyncSummary): SyncResult {
    failures++;
    const after = Math.min(maxMs, initialMs * 2 ** Math.min(failures - 1, 30));
    log.warn({ errors: errors.length, after, failures }, 'sync failed, retrying');
    return { kind: 'retry', after, errors, ...summary };
  }

  async function syncOnce(): Promise<SyncResult> {
    const summary: SyncSummary = { ops: 0, draining: draining.size, problems: [] };
    const now = clock.now();
    const want = desiredState(opts.plan(), opts.node);
    summary.problems = want.problems;
    for (const p of want.problems) log.warn({ op: 'desired', service: p.key, field: p.field }, p.message);
    const owned = new Set(want.ownedVips);
    for (const v of lastOwned) if (!owned.has(v)) retiring.add(v);
    lastOwned = owned;
    const errors: SyncError[] = [];
    const bound = await listBound(opts.vips, errors);
    for (const v of bound ?? []) if (!owned.has(v)) retiring.add(v);
    for (const v of owned) retiring.delete(v);

    let kernelState;
    try {
      kernelState = await opts.kernel.dump();
    } catch (err) {
      return retry([...errors, { op: 'dump', error: asError(err), ...codeOf(err) }], summary);
    }
    const d = diff({
      desired: want.services, kernel: kernelState, ownedVips: want.ownedVips, retiringVips: retiring,
      frozen: want.frozen, draining, now, drainTimeoutMs,
    });
    summary.ops = d.ops.length;
    const outcome = await applyOps(d.ops, { kernel: opts.kernel, log: log, owners: want.owners });
    draining = d.draining;
    summary.draining = draining.size;
    for (const f of outcome.failures) {
      errors.push({ op: f.op.kind, key: f.op.key, ...('dest' in f.op ? { dest: f.op.dest } : {}), ...codeOf(f.error), error: f.error });
    }
    const troubled = new Set(outcome.failures.map((f) => canonicalAddress(f.op.service.address)));
    await reconcileVips(opts.vips, { want: want.ownedVips, bound, retired: d.retiredVips, troubled }, errors);
    for (const v of d.retiredVips) if (!troubled.has(v)) retiring.delete(v);

    if (errors.length > 0) return retry(errors, summary);
    failures = 0;
    if (d.ops.length > 0) log.info({ ops: d.ops.length, draining: draining.size }, 'kernel synced');
    if (d.nextDeadline !== undefined) {
      const after = Math.max(1, Math.min(drainPollMs, d.nextDeadline - now));
      return { kind: 'drainPending', after, ...summary };
    }
    return { kind: 'ok', ...summary };
  }

  async function reconcileVips(
    vips: VipBinder | undefined,
    s: { want: string[]; bound: string[] | undefined; retired: string[]; troubled: Set<string> },
    errors: SyncError[],
  ): Promise<void> {
    // Without a listing (already reported) we cannot tell what to bind; the retry will.
    if (!vips || !s.bound) return;
    const bound = new Set(s.bound);
    // Bound after their services exist, so the first packet to a new VIP already finds IPVS rules;
    // a VIP whose services failed is neither bound nor unbound this round.
    const add = s.want.filter((v) => !bound.has(v) && !s.troubled.has(v));
    const remove = s.retired.filter((v) => bound.has(v) && !s.troubled.has(v));
    if (add.length === 0 && remove.length === 0) return;
    const target = [...bound, ...add].filter((v) => !remove.includes(v)).sort(byString);
    try {
      await vips.set(target);
      for (const vip of add) log.info({ op: 'bindVip', vip }, 'VIP bound');
      for (const vip of remove) log.info({ op: 'unbindVip', vip }, 'VIP unbound');
    } catch (err) {
      for (const vip of add) errors.push({ op: 'bindVip', vip, error: asError(err), ...codeOf(err) });
      for (const vip of remove) errors.push({ op: 'unbindVip', vip, error: asError(err), ...codeOf(err) });
      log.warn({ op: 'setVips', add, remove, err }, 'binding VIPs failed');
    }
  }

  return {
    async sync() {
      try {
        return await syncOnce();
      } catch (err) {
        // Only a throwing plan source or binder bug gets here; treat it like a failed sync.
        return retry([{ op: 'plan', error: asError(err) }], { ops: 0, draining: draining.size, problems: [] });
      }
    },
  };
}

async function listBound(vips: VipBinder | undefined, errors: SyncError[]): Promise<string[] | undefined> {
  if (!vips) return [];
  try {
    return (await vips.list()).map(canonicalAddress).sort(byString);
  } catch (err) {
    errors.push({ op: 'listVips', error: asError(err), ...codeOf(err) });
    return undefined;
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function codeOf(err: unknown): { code?: string } {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? { code } : {};
}
