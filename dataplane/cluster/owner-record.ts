// Pure: the owner record in cluster mode (../agent/show.ts writes and reads the file): which
// VirtualServer (name and uid) each service key this node programs or holds belongs to. A
// restarted agent reads it to know which kernel services to hold for an owner whose plan it
// cannot use (./plan-book.ts) and how many services it programmed (./guard.ts).
import type { OwnerRecord } from '../agent/show.ts';
import { byString } from '../sync/keys.ts';
import type { KeyOwner, RecordedOwner } from './plan-book.ts';

export function clusterOwnerRecord(keys: ReadonlyMap<string, KeyOwner>, now: Date, retiringVips: readonly string[] = []): OwnerRecord {
  const owners: Record<string, string> = {};
  const uids: Record<string, string> = {};
  for (const key of [...keys.keys()].sort(byString)) {
    const o = keys.get(key)!;
    owners[key] = o.virtualServer;
    uids[key] = o.uid;
  }
  return { version: 1, appliedAt: now.toISOString(), owners, uids, ...(retiringVips.length > 0 ? { retiringVips: [...retiringVips] } : {}) };
}

/** key → owner, as recorded (no uid in a record written by standalone mode or an older agent). */
export function recordedOwners(rec: OwnerRecord | undefined): Map<string, RecordedOwner> {
  const out = new Map<string, RecordedOwner>();
  for (const [key, virtualServer] of Object.entries(rec?.owners ?? {})) {
    const uid = rec?.uids?.[key];
    out.set(key, uid ? { uid, virtualServer } : { virtualServer });
  }
  return out;
}

/** The same keys, owners and retiring VIPs (appliedAt aside): nothing to write. */
export function sameOwners(a: OwnerRecord | undefined, b: OwnerRecord): boolean {
  return a !== undefined && JSON.stringify([a.owners, a.uids ?? {}, a.retiringVips ?? []]) === JSON.stringify([b.owners, b.uids ?? {}, b.retiringVips ?? []]);
}

/** Same keys with the same owners: an owner record made of either is the same (no sort, no text). */
export function sameKeyOwners(a: ReadonlyMap<string, KeyOwner>, b: ReadonlyMap<string, KeyOwner>): boolean {
  if (a === b) return true;
  if (a.size !== b.size) return false;
  for (const [key, o] of a) {
    const p = b.get(key);
    if (!p || p.uid !== o.uid || p.virtualServer !== o.virtualServer) return false;
  }
  return true;
}
