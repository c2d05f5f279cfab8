// `lvs-agent show`: what the kernel holds for the VirtualServers this node directs, read back from
// the kernel (never from the agent's memory), labelled with the owning VirtualServer when the
// agent recorded one. A service is ours when its VIP is bound on lvs0; others are foreign and
// shown only on request.
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from './state-file.ts';
import type { Plan } from '../../api/plan.ts';
import type { ForwardMethod, IpvsServiceState } from '../ipvs/types.ts';
import type { HealthRecord } from '../health/record.ts';
import { useKey } from '../health/targets.ts';
import { SVC_F } from '../sync/flags.ts';
import { canonicalAddress, destKey, ipvsServiceKey, parseServiceKey } from '../sync/keys.ts';

export const DEFAULT_STATE_FILE = '/run/lvs-agent/standalone.json';

/** Which VirtualServer each service key came from, as last applied. */
export interface OwnerRecord {
  version: 1;
  appliedAt: string;
  owners: Record<string, string>;
  /** Cluster mode: the uid of each key's VirtualServer (what a restarted agent holds keys by). */
  uids?: Record<string, string>;
  /**
   * VIPs whose services were still being retired (drained, then removed) when this was written:
   * a restarted agent finishes their removal even if lvs0 no longer lists them.
   */
  retiringVips?: string[];
}

/**
 * The VIPs a record says this node owned or was retiring — what a new process must retire unless
 * its plan wants them (SyncerOptions.retiringVips).
 */
export function recordedVips(rec: OwnerRecord | undefined): string[] {
  const vips = new Set(rec?.retiringVips ?? []);
  for (const key of Object.keys(rec?.owners ?? {})) {
    const k = parseServiceKey(key);
    if (k) vips.add(k.vip);
  }
  return [...vips].sort();
}

export function ownerRecord(plan: Plan, now: Date): OwnerRecord {
  const owners: Record<string, string> = {};
  for (const s of plan.services) owners[s.key] = `${s.owner.namespace}/${s.owner.name}`;
  return { version: 1, appliedAt: now.toISOString(), owners };
}

export function writeOwnerRecord(path: string, rec: OwnerRecord): void {
  writeFileAtomic(path, JSON.stringify(rec, null, 2));
}

export function readOwnerRecord(path: string): OwnerRecord | undefined {
  try {
    const rec = JSON.parse(readFileSync(path, 'utf8')) as OwnerRecord;
    return rec.version === 1 ? rec : undefined;
  } catch {
    return undefined;
  }
}

export interface ShownDestination {
  address: string;
  port: number;
  forward: ForwardMethod;
  weight: number;
  activeConns: number;
  inactiveConns: number;
  /** Health check as the agent last recorded it: "up", "down: <why>", or absent when not checked. */
  health?: string;
}

export interface ShownService {
  key: string;
  virtualServer: string | null;
  ours: boolean;
  protocol: string;
  address: string;
  port: number;
  fwmark: number;
  scheduler: string;
  persistent: number;
  destinations: ShownDestination[];
}

export function showView(state: readonly IpvsServiceState[], boundVips: readonly string[], rec: OwnerRecord | undefined, all: boolean, health?: HealthRecord): ShownService[] {
  const bound = new Set(boundVips.map(canonicalAddress));
  const out: ShownService[] = [];
  for (const { service: s, destinations } of state) {
    const ours = !s.fwmark && bound.has(canonicalAddress(s.address));
    if (!ours && !all) continue;
    const key = ipvsServiceKey(s);
    out.push({
      key,
      virtualServer: ours ? rec?.owners[key] ?? null : null,
      ours,
      protocol: s.protocol,
      address: s.address,
      port: s.port,
      fwmark: s.fwmark ?? 0,
      scheduler: s.scheduler,
      persistent: s.flags & SVC_F.PERSISTENT ? s.timeout : 0,
      destinations: destinations.map((d) => {
        const h = ours ? health?.realServers[useKey(key, d.address, d.port)] : undefined;
        return {
          address: d.address, port: d.port, forward: d.forward, weight: d.weight,
          activeConns: d.stats?.activeConns ?? 0, inactiveConns: d.stats?.inactiveConns ?? 0,
          ...(h ? { health: h.up ? 'up' : `down: ${h.message}` } : {}),
        };
      }),
    });
  }
  return out;
}

const FWD: Record<ForwardMethod, string> = { masq: 'Masq', local: 'Local', tunnel: 'Tunnel', droute: 'Route', bypass: 'Bypass' };

/** A table in the spirit of `ipvsadm -Ln`, grouped by VirtualServer. */
export function formatShow(view: readonly ShownService[]): string {
  const lines = ['VIRTUALSERVER                   SERVICE                           SCHED    REAL SERVER                     FWD     WEIGHT  ACTIVE  INACTIVE  HEALTH'];
  for (const s of view) {
    const vs = s.virtualServer ?? (s.ours ? '(unrecorded)' : '(foreign)');
    const svc = `${s.protocol} ${destKey(s)}${s.persistent ? ` persistent ${s.persistent}` : ''}`;
    if (s.destinations.length === 0) lines.push(`${vs.padEnd(31)} ${svc.padEnd(33)} ${s.scheduler.padEnd(8)} -`);
    for (const d of s.destinations) {
      lines.push(`${vs.padEnd(31)} ${svc.padEnd(33)} ${s.scheduler.padEnd(8)} ${destKey(d).padEnd(31)} ${FWD[d.forward].padEnd(7)} ${String(d.weight).padStart(6)}  ${String(d.activeConns).padStart(6)}  ${String(d.inactiveConns).padStart(8)}  ${d.health ?? '-'}`);
    }
  }
  return lines.join('\n');
}
