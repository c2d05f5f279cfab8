// The real-server side of cluster mode (side effects): prepare this node's DR/TUN real servers in
// their network namespaces (../realserver/), and the node's return path for pods that serve a VIP
// it directs (../agent/return-path.ts). Pure decisions come from ./realservers.ts and ./guard.ts.
//
// A pass is given every real server the plans want here. Addresses not found on the node yet (a
// pod still starting) are skipped and make the pass incomplete: the caller tries again on a
// timer, as there is no pod watch. Namespaces prepared earlier and no longer wanted are cleaned
// up — except while an owner is frozen without a plan (its pods are unknown) or while a mass
// removal of preparations awaits confirmation (./guard.ts): doubt keeps pods prepared.
import type { Logger } from 'pino';
import { describeTarget, type NetnsTarget, type Runner } from '../exec.ts';
import { syncReturnPath } from '../agent/return-path.ts';
import type { NetnsFinder } from '../agent/netns.ts';
import { syncRealServer } from '../realserver/prepare.ts';
import type { RealServerVip } from '../realserver/plan.ts';
import type { LocalRealServer } from './realservers.ts';
import type { PrepError } from './report.ts';

export interface PassInput {
  /** Every real server on this node the plans want prepared, by address. */
  local: ReadonlyMap<string, LocalRealServer>;
  /** VIPs this node directs (their pods need the return path). */
  directed: ReadonlySet<string>;
  /** Leave namespaces no longer wanted as they are (doubt: an owner frozen without a plan, a held removal). */
  keepUnwanted: boolean;
}

export interface PassResult {
  /** Addresses prepared in their namespace (verified by read-back). */
  prepared: Set<string>;
  errors: PrepError[];
  /** Some wanted address was not found (or not confirmed) on the node: try again later. */
  incomplete: boolean;
}

interface Wanted { target: NetnsTarget; vips: RealServerVip[]; addresses: string[] }

export interface RealServerPass {
  run(input: PassInput): Promise<PassResult>;
}

export function createRealServerPass(o: { run: Runner; log: Logger; finder: NetnsFinder; returnPathRecord?: string }): RealServerPass {
  /** Namespaces we prepared, with what they hold, to undo when no longer needed. */
  const byTarget = new Map<string, { target: NetnsTarget; vips: RealServerVip[] }>();
  const rsOpts = { run: o.run, logger: o.log };

  async function locate(local: PassInput['local']): Promise<{ desired: Map<string, Wanted>; incomplete: boolean }> {
    const where = await o.finder.find([...local.keys()]);
    const desired = new Map<string, Wanted>();
    let incomplete = false;
    for (const [address, l] of local) {
      const target = where.get(address);
      if (!target) { incomplete = true; continue; } // not (yet) on this node: the pod may still be starting
      const k = describeTarget(target);
      const d = desired.get(k) ?? { target, vips: [], addresses: [] };
      for (const v of l.vips) if (!d.vips.some((x) => x.vip === v.vip && x.mode === v.mode && x.encap === v.encap)) d.vips.push(v);
      d.addresses.push(address);
      desired.set(k, d);
    }
    return { desired, incomplete };
  }

  async function prepare(desired: Map<string, Wanted>, prepared: Set<string>, errors: PrepError[]): Promise<boolean> {
    let incomplete = false;
    for (const [k, d] of desired) {
      // The search may be a while ago (or cached): a pod gone and its pid reused would have us
      // prepare — and later clean up — some other namespace. Re-check right before preparing.
      const present = await o.finder.confirm(d.target, d.addresses);
      if (present.length === 0) {
        // Search again on the next pass. A pid that lost them may name another process's namespace
        // now: never undo anything there (what we added went away with the old process's namespace).
        if (d.target.kind === 'pid') byTarget.delete(k);
        incomplete = true;
        continue;
      }
      d.addresses = present;
      try {
        await syncRealServer(rsOpts, d.target, d.vips);
        byTarget.set(k, { target: d.target, vips: d.vips });
        for (const a of d.addresses) prepared.add(a);
      } catch (err) {
        for (const a of d.addresses) o.finder.forget(a);
        errors.push({ addresses: d.addresses, message: `${k}: ${(err as Error).message}` });
      }
    }
    return incomplete;
  }

  async function returnPath(desired: Map<string, Wanted>, directed: ReadonlySet<string>, prepared: Set<string>, errors: PrepError[]): Promise<void> {
    // Pods serving a VIP this node directs answer from an address local to the node: their
    // uplinks must accept it (../agent/return-path.ts) before they count as prepared.
    // IPv4 VIPs only: IPv6 forwards a reply whose source is a node-local VIP as it is (../agent/return-path.ts).
    const returning = [...desired.values()].filter((d) => d.target.kind !== 'host' && d.vips.some((v) => directed.has(v.vip) && !v.vip.includes(':')) && d.addresses.some((a) => prepared.has(a)));
    try {
      await syncReturnPath({ run: o.run, log: o.log, ...(o.returnPathRecord ? { recordPath: o.returnPathRecord } : {}) }, returning.map((d) => d.target));
    } catch (err) {
      for (const d of returning) for (const a of d.addresses) prepared.delete(a);
      errors.push({ addresses: returning.flatMap((d) => d.addresses), message: `return path: ${(err as Error).message}` });
    }
  }

  return {
    async run(input) {
      const { desired, incomplete: unfound } = await locate(input.local);
      const prepared = new Set<string>();
      const errors: PrepError[] = [];
      const unconfirmed = await prepare(desired, prepared, errors);
      await returnPath(desired, input.directed, prepared, errors);
      if (!input.keepUnwanted) {
        for (const [k, was] of byTarget) {
          if (desired.has(k)) continue;
          // No longer a real server of ours: take back exactly what we added (gone namespaces are fine).
          await syncRealServer(rsOpts, was.target, []).catch(() => undefined);
          byTarget.delete(k);
        }
      }
      return { prepared, errors, incomplete: unfound || unconfirmed };
    },
  };
}
