// Pure: the rule sets of the agent benchmark, as the agent's input (a plan) and as the reference
// tool's input (an ipvsadm-restore file), plus the two changes applied on top of them.
//
// N services × M destinations: service i is TCP 198.18.<i>:80 (198.18.0.0/15, the benchmarking
// range of RFC 2544; it only ever exists inside the VM), NAT, round robin; its destinations are
// 10.<i>.<j>:8080 with weight 1. The VM routes 10.0.0.0/8 onto a dummy link, so every destination
// is a routable unicast address (the kernel refuses others with EINVAL).
//
// Changes, both expressed as "these destinations were replaced by new ones" (a pod rolled):
//   one percent — ceil(N·M/100) destinations, every 100th in (service, slot) order, so they spread
//                 over the whole table instead of bunching in a few services;
//   single      — one destination of the middle service.
// Replacing a TCP destination that carries no connection is one DEL_DEST and one NEW_DEST for the
// agent (an idle destination is deleted at once, not drained) and the same two lines for
// ipvsadm-restore, so both sides perform the same kernel work for a change.
import { serviceKey, type PlanRealServer, type PlanService } from '../../api/plan.ts';

export const NODE = 'bench-director';

/**
 * Shell commands that make the destinations routable in a network namespace: 10.0.0.0/8 on-link
 * behind a dummy device (the kernel refuses a destination that is not a routable unicast address).
 */
export const ROUTE_DESTINATIONS = 'ip link set lo up && ip link add bench0 type dummy && ip link set bench0 up && ip addr add 10.255.255.254/8 dev bench0';
export const SERVICE_PORT = 80;
export const TARGET_PORT = 8080;

export interface RuleSet {
  services: number;
  destsPerService: number;
  /** replaced.get(serviceIndex) = slot → generation of the address now in that slot. */
  replaced: Map<number, Map<number, number>>;
}

export interface Replacement {
  service: number;
  slot: number;
  /** Generation of the address before and after the change. */
  from: number;
  to: number;
}

function quad(n: number): string {
  return `${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** VIP of service i: 198.18.0.1 upward, over 198.18.0.0/15 (131,070 usable). */
export function vipOf(i: number): string {
  if (!Number.isInteger(i) || i < 0 || i >= 131_070) throw new RangeError(`service index ${i} is outside 0..131069`);
  const n = i + 1;
  return `198.${18 + (n >>> 16)}.${(n >>> 8) & 255}.${n & 255}`;
}

/**
 * Address of slot j of service i at a generation: 10.x.y.z with a distinct host part for every
 * (i, j, generation). Generations let a replacement produce a new address in the same slot.
 */
export function destAddress(i: number, slot: number, generation: number, destsPerService: number): string {
  const n = (generation * 131_072 + i) * destsPerService + slot + 1;
  if (n >= 1 << 24) throw new RangeError(`destination ${i}/${slot}/g${generation} does not fit in 10.0.0.0/8`);
  return `10.${quad(n)}`;
}

export function ruleSet(services: number, destsPerService: number): RuleSet {
  if (!(services >= 1 && destsPerService >= 1)) throw new RangeError(`rule set needs services >= 1 and destsPerService >= 1, got ${services}x${destsPerService}`);
  return { services, destsPerService, replaced: new Map() };
}

function generationOf(rs: RuleSet, i: number, slot: number): number {
  return rs.replaced.get(i)?.get(slot) ?? 0;
}

/** A new rule set with the given slots moved to their next generation, and what moved. */
export function replace(rs: RuleSet, slots: Array<{ service: number; slot: number }>): { next: RuleSet; changes: Replacement[] } {
  const replaced = new Map([...rs.replaced].map(([i, m]) => [i, new Map(m)]));
  const changes: Replacement[] = [];
  for (const { service, slot } of slots) {
    const from = generationOf(rs, service, slot);
    let m = replaced.get(service);
    if (!m) replaced.set(service, (m = new Map()));
    m.set(slot, from + 1);
    changes.push({ service, slot, from, to: from + 1 });
  }
  return { next: { ...rs, replaced }, changes };
}

/** Every 100th destination in (service, slot) order: ceil(N·M/100) slots. */
export function onePercent(rs: RuleSet): Array<{ service: number; slot: number }> {
  const total = rs.services * rs.destsPerService;
  const out: Array<{ service: number; slot: number }> = [];
  for (let d = 0; d < total; d += 100) out.push({ service: Math.floor(d / rs.destsPerService), slot: d % rs.destsPerService });
  return out;
}

/** One destination of the middle service (a slot the one-percent change does not touch when M > 1). */
export function single(rs: RuleSet): Array<{ service: number; slot: number }> {
  return [{ service: Math.floor(rs.services / 2), slot: rs.destsPerService > 1 ? 1 : 0 }];
}

/** The agent's input: one PlanService per service, directed by NODE. */
export function plan(rs: RuleSet): PlanService[] {
  const out: PlanService[] = [];
  for (let i = 0; i < rs.services; i++) {
    const vip = vipOf(i);
    const realServers: PlanRealServer[] = [];
    for (let j = 0; j < rs.destsPerService; j++) {
      realServers.push({ address: destAddress(i, j, generationOf(rs, i, j), rs.destsPerService), port: TARGET_PORT, weight: 1, state: 'Ready' });
    }
    out.push({
      key: serviceKey('TCP', vip, SERVICE_PORT),
      owner: { namespace: 'bench', name: `vs-${i}`, generation: 1 },
      portName: 'http',
      vip,
      family: 4,
      protocol: 'TCP',
      port: SERVICE_PORT,
      forwarding: 'NAT',
      scheduler: { name: 'rr', flags: [] },
      prepareRealServers: false,
      realServers,
      directors: [NODE],
    });
  }
  return out;
}

const svcArg = (i: number) => `-t ${vipOf(i)}:${SERVICE_PORT}`;
const addDest = (i: number, addr: string) => `-a ${svcArg(i)} -r ${addr}:${TARGET_PORT} -m -w 1`;

/**
 * The rule set as `ipvsadm-restore` input (the format `ipvsadm -S -n` writes): every service, or
 * services from..to-1 only.
 */
export function restoreFile(rs: RuleSet, from = 0, to = rs.services): string {
  const lines: string[] = [];
  for (let i = from; i < to; i++) {
    lines.push(`-A ${svcArg(i)} -s rr`);
    for (let j = 0; j < rs.destsPerService; j++) lines.push(addDest(i, destAddress(i, j, generationOf(rs, i, j), rs.destsPerService)));
  }
  return lines.join('\n') + '\n';
}

/** A change as `ipvsadm-restore` input: for each replacement, delete the old destination, add the new. */
export function restoreDelta(rs: RuleSet, changes: readonly Replacement[]): string {
  const lines: string[] = [];
  for (const c of changes) {
    lines.push(`-d ${svcArg(c.service)} -r ${destAddress(c.service, c.slot, c.from, rs.destsPerService)}:${TARGET_PORT}`);
    lines.push(addDest(c.service, destAddress(c.service, c.slot, c.to, rs.destsPerService)));
  }
  return lines.join('\n') + '\n';
}

/**
 * The rule set as `lvs-agent apply` input: one NAT VirtualServer per service in block YAML, as
 * people write them (and as `kubectl get -o yaml` prints them), its destinations as static real
 * servers on the target port — the same services and destinations as restoreFile.
 */
export function manifests(rs: RuleSet): string {
  const docs: string[] = [];
  for (let i = 0; i < rs.services; i++) {
    const lines = [
      'apiVersion: lvs.dev/v1alpha1', 'kind: VirtualServer', 'metadata:', `  name: vs-${i}`, '  namespace: bench', 'spec:',
      '  addresses:', `    - ${vipOf(i)}`, '  ports:', '    - name: http', `      port: ${SERVICE_PORT}`, '      protocol: TCP',
      '  forwarding: NAT', '  scheduler:', '    name: rr', '  backends:', '    static:',
    ];
    for (let j = 0; j < rs.destsPerService; j++) {
      lines.push(`      - address: ${destAddress(i, j, generationOf(rs, i, j), rs.destsPerService)}`, `        port: ${TARGET_PORT}`, '        weight: 1');
    }
    docs.push(lines.join('\n'));
  }
  return docs.join('\n---\n') + '\n';
}

/** The services' VIPs as `ip -batch` input: a dummy device holding every VIP, as a director needs them local. */
export function vipBatch(rs: RuleSet, device: string): string {
  const lines = [`link add ${device} type dummy`, `link set ${device} up`];
  for (let i = 0; i < rs.services; i++) lines.push(`addr add ${vipOf(i)}/32 dev ${device}`);
  return lines.join('\n') + '\n';
}
