// Health checks as the agent uses them, in both modes: the raw plan in, the plan with health
// applied out (weights are the policy's: targets.ts withHealth), the monitor kept in step with the
// plan's targets, seeded from the kernel at start, and what to report (down real servers by
// service key, for AgentReports and `lvs-agent show`).
import type { PlanService } from '../../api/plan.ts';
import type { IpvsServiceState } from '../ipvs/types.ts';
import { AlternatingList, rewrites, type ListDelta } from '../delta-list.ts';
import { ipvsServiceKey } from '../sync/keys.ts';
import { HealthMonitor, type MonitorOptions } from './monitor.ts';
import { healthApplied, isChecked, probeId, probeOf, targetsOf, useKey, withHealth, type Target } from './targets.ts';

/** The monitor's options (onChange: a real server went up or down — sync and report), plus: */
export interface AgentHealthOptions extends MonitorOptions {
  node: string;
  /** Overrides every check's successThreshold (one-shot `apply` runs one round: 1). */
  successThreshold?: number;
}

/** One checked real server of one service on this node. */
export interface RealServerHealth {
  up: boolean;
  serviceKey: string;
  /** namespace/name */
  virtualServer: string;
  address: string;
  /** The destination's port (the check may use another: backends.static[].healthCheck.port). */
  port: number;
  message: string;
  /** Since when (ms since the epoch) it is up or down (or unchecked). */
  since: number;
}

export interface AgentHealth {
  readonly monitor: HealthMonitor;
  /**
   * The plan with health applied; the monitor follows its targets. `delta`: `raw` differs from
   * `delta.from` only at `delta.at` — when that is the last plan applied and no checked entry
   * came or went there, only those positions and the checked entries are looked at.
   */
  apply(raw: readonly PlanService[], delta?: ListDelta<PlanService>): PlanService[];
  /** Where the last apply's plan differs from the one before it; undefined when it was made whole. */
  delta(): ListDelta<PlanService> | undefined;
  /** Destinations the kernel holds at weight > 0 now start up (call before the first sync). */
  seedFrom(state: readonly IpvsServiceState[]): void;
  endSeed(): void;
  /** Resolves once every current target has been checked at least once. */
  firstRound(): Promise<void>;
  /** Every checked real server of the last applied plan, in plan order. */
  states(): RealServerHealth[];
  /** The ones not up (down, or not passed yet). */
  down(): RealServerHealth[];
  /** How many targets (distinct probes) this node checks. */
  checked(): number;
  close(): void;
}

export function createAgentHealth(o: AgentHealthOptions): AgentHealth {
  const monitor = new HealthMonitor(o);
  let last: readonly PlanService[] = [];
  /** rewrites(last) when it was kept: a rewritten array is another plan (../delta-list.ts). */
  let lastRewrites = 0;
  /** Positions in `last` of this node's checked entries, ascending; and the last plan applied out. */
  let checkedAt: number[] = [];
  let out: PlanService[] = [];
  /** `out`'s arrays, used in turn: a caller keeps only the last plan applied (the syncer's memo). */
  const lists = new AlternatingList<PlanService>();
  let applied: ListDelta<PlanService> | undefined;
  let targets = new Map<string, Target>();
  const health = (id: string) => monitor.health(id);
  return {
    monitor,
    apply(raw, delta) {
      const checks = (s: PlanService) => isChecked(s, o.node);
      // Only unchecked entries replaced: targets and checked positions stand; health may have
      // flipped since, so the checked entries are applied again.
      const intact = rewrites(last) === lastRewrites;
      const at = !intact ? undefined : raw === last ? [] : delta?.from === last && delta.at.every((i) => !checks(last[i]!) && !checks(raw[i]!)) ? delta.at : undefined;
      if (at) {
        const next = lists.patch(out, [...at, ...checkedAt], (i) => healthApplied(raw[i]!, o.node, health));
        last = raw;
        lastRewrites = rewrites(raw);
        applied = next.delta;
        return (out = next.list as PlanService[]);
      }
      // The same entries as last time (the agent builds a new array per sync): the targets stand.
      if (!intact || raw.length !== last.length || raw.some((s, i) => s !== last[i])) {
        targets = targetsOf(raw, o.node);
        if (o.successThreshold) for (const t of targets.values()) t.thresholds.successThreshold = o.successThreshold;
        monitor.setTargets(targets);
      }
      last = raw;
      lastRewrites = rewrites(raw);
      checkedAt = raw.flatMap((s, i) => (checks(s) ? [i] : []));
      applied = undefined;
      return (out = lists.whole(withHealth(raw, o.node, health)).list as PlanService[]);
    },
    delta() {
      return applied;
    },
    seedFrom(state) {
      const keys: string[] = [];
      for (const s of state) {
        if (s.service.fwmark) continue;
        const key = ipvsServiceKey(s.service);
        for (const d of s.destinations) if (d.weight > 0) keys.push(useKey(key, d.address, d.port));
      }
      monitor.seed(keys);
    },
    endSeed: () => monitor.endSeed(),
    firstRound: () => monitor.firstRound(),
    states() {
      const out: RealServerHealth[] = [];
      for (const i of checkedAt) {
        const s = last[i]!;
        if (!isChecked(s, o.node)) continue;
        for (const rs of s.realServers) {
          let probe;
          try { probe = probeOf(s.healthCheck, rs); } catch { continue; }
          const h = monitor.health(probeId(probe));
          out.push({ up: h?.up ?? false, serviceKey: s.key, virtualServer: `${s.owner.namespace}/${s.owner.name}`, address: probe.address, port: rs.port, message: h?.message ?? 'not checked yet', since: h?.since ?? o.clock.wallNow() });
        }
      }
      return out;
    },
    down() { return this.states().filter((x) => !x.up); },
    checked: () => targets.size,
    close: () => monitor.close(),
  };
}
