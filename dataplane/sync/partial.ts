// Pure: which services a partial sync must read back and diff. A partial sync reads only the
// services whose desired state changed since the last clean sync, plus those with destinations
// still draining (plus, when one is due, a verify slice: verify.ts); everything else was verified
// equal to its desired state by an earlier sync and is trusted until a verify slice or the next
// full read-back reads it again (either undoes outside edits).
//
// The view keeps each service's desired IpvsServiceState object (never modified), and a state is
// the same as the view's when it is that object or has the same JSON text: desiredState() builds
// plain sorted data, so equal desired state gives equal text, and returns the same object for an
// unchanged plan entry, so a sync serialises only what changed. The text is made for the
// comparison and not kept (one per service was 3.9 MiB of the agent's heap at 10,000 services).
import type { IpvsServiceKey, IpvsServiceState } from '../ipvs/types.ts';
import type { DesiredState } from './desired.ts';
import { byString, ipvsServiceKey } from './keys.ts';

/** What a clean sync leaves for the next one to compare against. */
export interface SyncedView {
  /** Service key → its desired state (compared by sameState()). */
  states: Map<string, IpvsServiceState>;
  /** Service key → kernel identity, for every desired service and every service still draining. */
  keys: Map<string, IpvsServiceKey>;
  /** Canonical owned VIPs and frozen keys, joined: a change there calls for a full sync. */
  scope: string;
  /**
   * Every desired service of the sync that made or last advanced this view: a desired state
   * patched from exactly this list (DesiredState.delta) needs only its delta compared (changedIn).
   */
  desired?: readonly IpvsServiceState[];
}

/** The view's state `was` and `s` are the same desired state: the same object, or equal as JSON. */
export function sameState(was: IpvsServiceState | undefined, s: IpvsServiceState): boolean {
  return was === s || (was !== undefined && JSON.stringify(was) === JSON.stringify(s));
}

export function serviceIdentity(s: IpvsServiceKey): IpvsServiceKey {
  const k: IpvsServiceKey = { family: s.family, protocol: s.protocol, address: s.address, port: s.port };
  if (s.fwmark) k.fwmark = s.fwmark;
  return k;
}

/** The kernel identity the view knows for a service key: its desired state's, or a draining service's. */
export function identityIn(view: SyncedView, key: string): IpvsServiceKey | undefined {
  const s = view.states.get(key);
  return s ? serviceIdentity(s.service) : view.keys.get(key);
}

export function scopeOf(ownedVips: readonly string[], frozen: readonly string[]): string {
  return `${[...ownedVips].sort(byString).join(',')}|${[...frozen].sort(byString).join(',')}`;
}

/** The service key a draining-map entry ("TCP/1.2.3.4:80 -> 10.0.0.1:80") belongs to. */
export function drainService(drainKey: string): string {
  const i = drainKey.indexOf(' -> ');
  return i < 0 ? drainKey : drainKey.slice(0, i);
}

export function viewOf(desired: readonly IpvsServiceState[], draining: ReadonlyMap<string, number>, known: ReadonlyMap<string, IpvsServiceKey>, scope: string): SyncedView {
  const states = new Map<string, IpvsServiceState>();
  const keys = new Map<string, IpvsServiceKey>();
  for (const s of desired) states.set(desiredKeyOf(s), s);
  for (const dk of draining.keys()) {
    const key = drainService(dk);
    if (states.has(key)) continue;
    const id = keys.get(key) ?? known.get(key);
    if (id) keys.set(key, id);
  }
  return { states, keys, scope, desired };
}

/**
 * viewOf() after a partial sync, in place and in proportion to the change: `prev` with the `changed`
 * keys brought to their `desired` state (the desired services among them) and to `draining` (after
 * the sync). Every key outside `changed` was neither desired differently nor draining differently
 * (changedServices() put every draining service in `changed`), so its entry stands. Gives what
 * viewOf(every desired service, draining, prev.keys + changed, scope) gives. `all`: every desired
 * service (the view's `desired`).
 */
export function advanceView(prev: SyncedView, desired: readonly IpvsServiceState[], changed: ReadonlyMap<string, IpvsServiceKey>, draining: ReadonlyMap<string, number>, scope: string, all?: readonly IpvsServiceState[]): SyncedView {
  const stillDraining = new Set<string>();
  for (const dk of draining.keys()) stillDraining.add(drainService(dk));
  const now = new Map<string, IpvsServiceState>();
  for (const s of desired) now.set(desiredKeyOf(s), s);
  for (const [key, id] of changed) {
    const s = now.get(key);
    if (s) {
      prev.states.set(key, s);
      prev.keys.delete(key);
    } else {
      prev.states.delete(key);
      if (stillDraining.has(key)) prev.keys.set(key, id); else prev.keys.delete(key);
    }
  }
  prev.scope = scope;
  prev.desired = all;
  return prev;
}

/** ipvsServiceKey of a desired state, kept per object (desired states are never modified). */
const keysOf = new WeakMap<IpvsServiceState, string>();
export function desiredKeyOf(s: IpvsServiceState): string {
  let k = keysOf.get(s);
  if (k === undefined) keysOf.set(s, (k = ipvsServiceKey(s.service)));
  return k;
}

/**
 * Keys to read back and diff, sorted: desired state added, changed or removed since `prev`, and
 * services with a destination draining. Each with its kernel identity (a removed service's comes
 * from `prev`). Undefined when a draining service's identity is unknown: sync fully instead.
 */
export function changedServices(prev: SyncedView, desired: readonly IpvsServiceState[], draining: ReadonlyMap<string, number>): Map<string, IpvsServiceKey> | undefined {
  const out = new Map<string, IpvsServiceKey>();
  const seen = new Set<string>();
  for (const s of desired) {
    const key = desiredKeyOf(s);
    seen.add(key);
    if (!sameState(prev.states.get(key), s)) out.set(key, serviceIdentity(s.service));
  }
  for (const key of prev.states.keys()) {
    if (!seen.has(key)) out.set(key, identityIn(prev, key)!);
  }
  return withDraining(out, prev, draining);
}

/**
 * changedServices() in proportion to the change, for a desired state patched from `prev.desired`:
 * only `keys` (the patch's) can differ from the view; no key came or went. `desired` and `index`
 * are the patched state's services and their positions.
 */
export function changedIn(prev: SyncedView, keys: readonly string[], desired: readonly IpvsServiceState[], index: ReadonlyMap<string, number>, draining: ReadonlyMap<string, number>): Map<string, IpvsServiceKey> | undefined {
  const out = new Map<string, IpvsServiceKey>();
  for (const key of keys) {
    const s = desired[index.get(key)!]!;
    if (!sameState(prev.states.get(key), s)) out.set(key, serviceIdentity(s.service));
  }
  return withDraining(out, prev, draining);
}

/**
 * The keys to read back for `planned` against the view: changedIn() when it was patched from the
 * very services the view was made of (only the patch's keys can differ), else changedServices().
 */
export function changedSince(view: SyncedView, planned: Pick<DesiredState, 'services' | 'index' | 'delta'>, draining: ReadonlyMap<string, number>): Map<string, IpvsServiceKey> | undefined {
  return planned.delta && planned.delta.from === view.desired
    ? changedIn(view, planned.delta.keys, planned.services, planned.index, draining)
    : changedServices(view, planned.services, draining);
}

/** `out` plus every service with a destination draining, sorted by key. */
function withDraining(out: Map<string, IpvsServiceKey>, prev: SyncedView, draining: ReadonlyMap<string, number>): Map<string, IpvsServiceKey> | undefined {
  for (const dk of draining.keys()) {
    const key = drainService(dk);
    const id = out.get(key) ?? identityIn(prev, key);
    // Unknown identity (should not happen): only a full read-back can find that service.
    if (!id) return undefined;
    out.set(key, id);
  }
  return new Map([...out.entries()].sort(([a], [b]) => byString(a, b)));
}

/** Draining entries of services not re-diffed this round, plus what the diff of the others left. */
export function mergeDraining(old: ReadonlyMap<string, number>, diffed: ReadonlySet<string>, fresh: ReadonlyMap<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, since] of old) if (!diffed.has(drainService(k))) out.set(k, since);
  for (const [k, since] of fresh) out.set(k, since);
  return out;
}
