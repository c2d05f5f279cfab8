// From the plan to what is checked, and from health back to the plan (pure). One probe — type,
// address, port, path, host, statuses — is one target, however many services of this node use it
// (a VirtualServer's IPv4 and IPv6 VIPs, its ports with the same real server port): it is checked
// once per interval. Interval, timeout and thresholds are taken from the first service (by key)
// that uses the target; changing them keeps the target's health, changing what is probed starts a
// new target (down until it passes).
import type { PlanHealthCheck, PlanRealServer, PlanService } from '../../api/plan.ts';
import { canonicalAddress, hostPort } from '../sync/keys.ts';
import type { Probe } from './check.ts';
import type { Health, Thresholds } from './policy.ts';

export interface Target {
  id: string;
  probe: Probe;
  intervalMs: number;
  thresholds: Thresholds;
  /** "serviceKey|address:port" of every destination this target decides. */
  uses: string[];
}

/** Key of one destination of one plan service. */
export function useKey(serviceKey: string, address: string, port: number): string {
  return `${serviceKey}|${hostPort(address, port)}`;
}

export function probeOf(hc: PlanHealthCheck, rs: PlanRealServer): Probe {
  const p: Probe = { type: hc.type, address: canonicalAddress(rs.address), port: rs.check?.port ?? rs.port, timeoutMs: hc.timeoutSeconds * 1000 };
  if (hc.type !== 'tcp') {
    p.path = rs.check?.path ?? hc.path ?? '/';
    if (hc.host !== undefined) p.host = hc.host;
    if (hc.statuses) p.statuses = hc.statuses;
  }
  return p;
}

export function probeId(p: Probe): string {
  return p.type === 'tcp'
    ? `tcp ${hostPort(p.address, p.port)}`
    : `${p.type} ${hostPort(p.address, p.port)}${p.path ?? '/'} host=${p.host ?? ''} statuses=${(p.statuses ?? []).join(',')}`;
}

/** This node's checked services, for the loops below. */
function* checked(plan: readonly PlanService[], node: string): Generator<PlanService & { healthCheck: PlanHealthCheck }> {
  for (const s of plan) if (isChecked(s, node)) yield s;
}

/** Every target this node must check, by id. Real servers with unusable addresses are skipped (desired.ts reports them). */
export function targetsOf(plan: readonly PlanService[], node: string): Map<string, Target> {
  const out = new Map<string, Target>();
  for (const s of checked(plan, node)) {
    for (const rs of s.realServers) {
      let probe: Probe;
      try { probe = probeOf(s.healthCheck, rs); } catch { continue; }
      const id = probeId(probe);
      let t = out.get(id);
      if (!t) {
        const hc = s.healthCheck;
        t = { id, probe, intervalMs: hc.intervalSeconds * 1000, thresholds: { failureThreshold: hc.failureThreshold, successThreshold: hc.successThreshold }, uses: [] };
        out.set(id, t);
      }
      t.uses.push(useKey(s.key, probe.address, rs.port));
    }
  }
  return out;
}

/**
 * The plan with health applied to this node's checked services: a real server that is not up
 * (down, or never passed) is Draining (weight 0, its connections finish) or, with onFailure
 * Remove, left out (the syncer drains and removes its destination). Everything else is the same
 * object as before, so unchanged services cost nothing downstream.
 */
export function withHealth(plan: readonly PlanService[], node: string, health: (id: string) => Health | undefined): PlanService[] {
  return plan.map((s) => healthApplied(s, node, health));
}

/** A plan entry this node checks: withHealth() may change it, targetsOf() probes it. */
export function isChecked(s: PlanService, node: string): s is PlanService & { healthCheck: PlanHealthCheck } {
  return s.healthCheck !== undefined && s.directors.includes(node);
}

/** withHealth() of one entry. */
export function healthApplied(s: PlanService, node: string, health: (id: string) => Health | undefined): PlanService {
  if (!isChecked(s, node)) return s;
  const hc = s.healthCheck;
  // Per real server: kept as it is (k), made Draining (d) or left out (-).
  let seen = '';
  for (const rs of s.realServers) {
    let up = false;
    try { up = health(probeId(probeOf(hc, rs)))?.up ?? false; } catch { seen += 'k'; continue; }
    seen += up ? 'k' : hc.onFailure === 'Quiesce' ? (rs.state === 'Draining' ? 'k' : 'd') : '-';
  }
  const hit = applied.get(s);
  if (hit?.seen === seen) return hit.out;
  const realServers: PlanRealServer[] = [];
  s.realServers.forEach((rs, i) => {
    if (seen[i] === 'k') realServers.push(rs);
    else if (seen[i] === 'd') realServers.push({ ...rs, state: 'Draining' });
  });
  const out = { ...s, realServers };
  applied.set(s, { seen, out });
  return out;
}

/** withHealth()'s result per plan entry while the same real servers are up: the same object (a sync rebuilds only new objects). */
const applied = new WeakMap<PlanService, { seen: string; out: PlanService }>();
