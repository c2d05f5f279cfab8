// lvs0 as the syncer uses it: the binder's interface, listing what is bound, and binding the owned
// VIPs after their services exist (a full sync's last step); and the error parts a sync reports.
import type { Logger } from 'pino';
import type { OpFailure } from './apply.ts';
import { byString, canonicalAddress } from './keys.ts';
import type { SyncError } from './syncer-types.ts';

/**
 * The director's VIP device (lvs0): addresses bound there are VIPs this node accepts traffic for,
 * and the record of which VIPs this node owns across restarts.
 */
export interface VipBinder {
  list(): Promise<string[]>;
  /** Make exactly `vips` bound, in one batch (adds and removals together). */
  set(vips: string[]): Promise<void>;
  /**
   * Canonical address → devices other than lvs0 it is assigned on, as read by the last list()
   * (adoption.ts refuses those VIPs). Without this method, no address counts as assigned elsewhere.
   */
  elsewhere?(): ReadonlyMap<string, readonly string[]> | undefined;
  /**
   * The VIPs bound as of the binder's last successful list() or set(), without reading anything;
   * undefined when unknown. A full sync between two director checks goes on from it (sync.ts).
   */
  known?(): string[] | undefined;
}

/** Bind the wanted VIPs that are not bound and unbind the retired ones, in one set(); failures go into errors. */
export async function reconcileVips(
  vips: VipBinder | undefined,
  log: Logger,
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

/** VIPs with a failed operation on one of their services: neither bound nor unbound this round. */
export function troubledVips(failures: readonly OpFailure[]): Set<string> {
  return new Set(failures.map((f) => canonicalAddress(f.op.service.address)));
}

/** What the binder knows is bound, canonical and sorted as a listing; undefined when it does not know. */
export function knownBound(vips: VipBinder | undefined): string[] | undefined {
  return vips?.known?.()?.map(canonicalAddress).sort(byString);
}

export async function listBound(vips: VipBinder | undefined, errors: SyncError[]): Promise<string[] | undefined> {
  if (!vips) return [];
  try {
    return (await vips.list()).map(canonicalAddress).sort(byString);
  } catch (err) {
    errors.push({ op: 'listVips', error: asError(err), ...codeOf(err) });
    return undefined;
  }
}

/** Addresses on the node's other devices; undefined (unknown) when lvs0 could not be listed. */
export function elsewhereOf(vips: VipBinder | undefined, bound: string[] | undefined): ReadonlyMap<string, readonly string[]> | undefined {
  if (bound === undefined) return undefined;
  return vips?.elsewhere?.() ?? new Map();
}

export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

export function codeOf(err: unknown): { code?: string } {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? { code } : {};
}
