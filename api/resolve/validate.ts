// Defensive validation of a VirtualServer spec. The CRD's schema and CEL rules reject bad input
// at the API server, but stored objects may predate a CRD change or have been written around it,
// and the resolver must never throw nor put a value into the plan that the kernel would refuse.
// Every problem becomes an InvalidSpec reason naming the field; a spec with any problem
// contributes no services. Fields that only apply to another forwarding method (tunnel with NAT,
// nat with DR, realServers with NAT) are ignored rather than rejected: they cannot harm the plan.
import type {
  Forwarding, NatReturnPath, Protocol, Reason, SchedulerFlag, SchedulerName, TunnelType,
} from '../plan.ts';
import { isContiguousNetmask, parseIp } from '../ip.ts';
import { validateCheckOverride, validateHealthCheck, checkOverrides } from './health-check.ts';
import type { NormalizedSpec, StaticBackend, Vip, VsPort } from './types.ts';

const PROTOCOLS: readonly Protocol[] = ['TCP', 'UDP', 'SCTP'];
const FORWARDINGS: readonly Forwarding[] = ['NAT', 'DR', 'TUN'];
const TUNNEL_TYPES: readonly TunnelType[] = ['ipip', 'gue', 'gre'];
const RETURN_PATHS: readonly NatReturnPath[] = ['Gateway', 'SNAT'];
const SCHEDULERS: readonly SchedulerName[] = [
  'rr', 'wrr', 'lc', 'wlc', 'lblc', 'lblcr', 'dh', 'sh', 'sed', 'nq', 'mh', 'fo', 'ovf',
];
const FLAGS: readonly SchedulerFlag[] = ['sh-fallback', 'sh-port', 'mh-fallback', 'mh-port'];
const CHECKSUMS = ['None', 'Checksum', 'RemoteChecksum'] as const;
const MAX_PERSISTENCE_SECONDS = 2678400;

type Obj = Record<string, unknown>;
export const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
export const isInt = (v: unknown, min: number, max: number): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
const oneOf = <T extends string>(list: readonly T[], v: unknown): v is T =>
  typeof v === 'string' && (list as readonly string[]).includes(v);

export class Problems {
  readonly reasons: Reason[] = [];
  add(field: string, message: string): void {
    this.reasons.push({ type: 'InvalidSpec', field, message });
  }
}

export type Validation = { ok: true; spec: NormalizedSpec } | { ok: false; reasons: Reason[] };

export function validateSpec(spec: unknown): Validation {
  const p = new Problems();
  if (!isObj(spec)) {
    p.add('spec', 'spec is missing or not an object');
    return { ok: false, reasons: p.reasons };
  }
  const vips = validateAddresses(spec.addresses, p);
  const forwarding = spec.forwarding === undefined ? 'NAT' : spec.forwarding;
  if (!oneOf(FORWARDINGS, forwarding)) {
    p.add('spec.forwarding', `unknown forwarding method ${JSON.stringify(forwarding)}; expected NAT, DR or TUN`);
  }
  const fwd: Forwarding = oneOf(FORWARDINGS, forwarding) ? forwarding : 'NAT';
  const isStatic = isObj(spec.backends) && spec.backends.static !== undefined;
  const ports = validatePorts(spec.ports, fwd, isStatic, p);
  const scheduler = validateScheduler(spec.scheduler, p);
  const persistence = validatePersistence(spec.persistence, p);
  const backends = validateBackends(spec.backends, vips, ports, fwd, p);
  const nodeSelector = validateDirectors(spec.directors, p);
  const healthCheck = validateHealthCheck(spec.healthCheck, p);
  // An invalid healthCheck is reported once, not again by each override.
  if (backends?.kind === 'static' && (healthCheck || spec.healthCheck === undefined)) checkOverrides(backends.entries, healthCheck, p);
  const out: NormalizedSpec = {
    vips, ports, forwarding: fwd, scheduler, backends: backends ?? { kind: 'static', entries: [] },
    prepareRealServers: fwd !== 'NAT' && validatePrepare(spec.realServers, p),
  };
  if (fwd === 'TUN') out.tunnel = validateTunnel(spec.tunnel, p);
  if (fwd === 'NAT') out.natReturnPath = validateNat(spec.nat, p);
  if (persistence) out.persistence = persistence;
  if (nodeSelector) out.nodeSelector = nodeSelector;
  if (healthCheck) out.healthCheck = healthCheck;
  return p.reasons.length ? { ok: false, reasons: p.reasons } : { ok: true, spec: out };
}

/**
 * Checks a VIP or static real-server address the way the CRD does (isIP + isGlobalUnicast),
 * except that non-canonical spellings are accepted: the resolver canonicalizes them anyway.
 */
export function addressProblem(v: unknown): string | undefined {
  const ip = parseIp(v);
  if (!ip) return `${JSON.stringify(v)} is not an IPv4 or IPv6 address`;
  if (ip.v4Mapped) return `${ip.address} is an IPv4-mapped IPv6 address; write the IPv4 address`;
  if (ip.unspecified) return `${ip.address} is the unspecified address`;
  if (ip.loopback) return `${ip.address} is a loopback address`;
  if (ip.linkLocal) return `${ip.address} is a link-local address`;
  if (ip.multicast || ip.broadcast) return `${ip.address} is a multicast or broadcast address`;
  return undefined;
}

function validateAddresses(v: unknown, p: Problems): Vip[] {
  if (!Array.isArray(v) || v.length < 1 || v.length > 16) {
    p.add('spec.addresses', 'spec.addresses must list 1 to 16 addresses');
    return [];
  }
  const seen = new Set<string>();
  const vips: Vip[] = [];
  v.forEach((a: unknown, index) => {
    const field = `spec.addresses[${index}]`;
    const problem = addressProblem(a);
    const ip = parseIp(a);
    if (problem || !ip) { p.add(field, problem ?? 'invalid address'); return; }
    if (seen.has(ip.address)) { p.add(field, `${ip.address} is listed twice`); return; }
    seen.add(ip.address);
    vips.push({ address: ip.address, family: ip.family, index });
  });
  return vips;
}

function validatePorts(v: unknown, fwd: Forwarding, isStatic: boolean, p: Problems): VsPort[] {
  if (!Array.isArray(v) || v.length < 1 || v.length > 64) {
    p.add('spec.ports', 'spec.ports must list 1 to 64 ports');
    return [];
  }
  const names = new Set<string>();
  const keys = new Set<string>();
  const ports: VsPort[] = [];
  v.forEach((e: unknown, index) => {
    const f = `spec.ports[${index}]`;
    if (!isObj(e)) { p.add(f, 'port entry is not an object'); return; }
    const protocol = e.protocol === undefined ? 'TCP' : e.protocol;
    let ok = true;
    if (typeof e.name !== 'string' || e.name === '') { p.add(`${f}.name`, 'port name is required'); ok = false; }
    else if (names.has(e.name)) { p.add(`${f}.name`, `port name ${e.name} is used twice`); ok = false; }
    if (!isInt(e.port, 1, 65535)) { p.add(`${f}.port`, 'port must be an integer from 1 to 65535'); ok = false; }
    if (!oneOf(PROTOCOLS, protocol)) { p.add(`${f}.protocol`, `unknown protocol ${JSON.stringify(protocol)}; expected TCP, UDP or SCTP`); ok = false; }
    if (e.targetPort !== undefined) {
      if (!isInt(e.targetPort, 1, 65535)) { p.add(`${f}.targetPort`, 'targetPort must be an integer from 1 to 65535'); ok = false; }
      else if (fwd !== 'NAT') { p.add(`${f}.targetPort`, `${fwd} forwarding cannot remap ports: targetPort is NAT only`); ok = false; }
      else if (!isStatic) { p.add(`${f}.targetPort`, "targetPort applies to static backends only; a Service's endpoints carry their own port"); ok = false; }
    }
    if (!ok) return;
    const key = `${protocol as string}/${e.port as number}`;
    if (keys.has(key)) { p.add(f, `port ${key} is listed twice`); return; }
    names.add(e.name as string);
    keys.add(key);
    const port: VsPort = { index, name: e.name as string, port: e.port as number, protocol: protocol as Protocol };
    if (e.targetPort !== undefined) port.targetPort = e.targetPort as number;
    ports.push(port);
  });
  return ports;
}

function validateTunnel(v: unknown, p: Problems): NonNullable<NormalizedSpec['tunnel']> {
  const t: Obj = isObj(v) ? v : {};
  if (v !== undefined && !isObj(v)) p.add('spec.tunnel', 'tunnel is not an object');
  const type = t.type === undefined ? 'ipip' : t.type;
  const checksum = t.checksum === undefined ? 'None' : t.checksum;
  if (!oneOf(TUNNEL_TYPES, type)) {
    p.add('spec.tunnel.type', `unknown tunnel type ${JSON.stringify(type)}; expected ipip, gue or gre`);
    return { type: 'ipip' };
  }
  const out: NonNullable<NormalizedSpec['tunnel']> = { type };
  if (type === 'gue') {
    if (!isInt(t.port, 1, 65535)) p.add('spec.tunnel.port', 'a gue tunnel needs a UDP port from 1 to 65535');
    else out.port = t.port;
  } else if (t.port !== undefined) {
    p.add('spec.tunnel.port', `tunnel.port applies to gue only, not ${type}`);
  }
  if (!oneOf(CHECKSUMS, checksum)) {
    p.add('spec.tunnel.checksum', `unknown checksum ${JSON.stringify(checksum)}; expected None, Checksum or RemoteChecksum`);
  } else if (checksum === 'RemoteChecksum' && type !== 'gue') {
    p.add('spec.tunnel.checksum', 'RemoteChecksum applies to gue only');
  } else if (checksum !== 'None' && type !== 'ipip') {
    // The kernel's ipip encapsulation has no checksum option; gue and gre do.
    out.flags = [checksum === 'Checksum' ? 'csum' : 'remcsum'];
  }
  return out;
}

function validateNat(v: unknown, p: Problems): NatReturnPath {
  if (v === undefined) return 'Gateway';
  const rp = isObj(v) ? (v.returnPath ?? 'Gateway') : undefined;
  if (!oneOf(RETURN_PATHS, rp)) {
    p.add('spec.nat.returnPath', `unknown returnPath ${JSON.stringify(rp)}; expected Gateway or SNAT`);
    return 'Gateway';
  }
  return rp;
}

function validatePrepare(v: unknown, p: Problems): boolean {
  if (v === undefined) return true;
  const prepare = isObj(v) ? v.prepare : undefined;
  if (isObj(v) && prepare === undefined) return true;
  if (typeof prepare !== 'boolean') {
    p.add('spec.realServers.prepare', 'realServers.prepare must be true or false');
    return false;
  }
  return prepare;
}

function validateScheduler(v: unknown, p: Problems): NormalizedSpec['scheduler'] {
  if (v === undefined) return { name: 'wlc', flags: [] };
  const s: Obj = isObj(v) ? v : {};
  if (!isObj(v)) p.add('spec.scheduler', 'scheduler is not an object');
  const name = s.name === undefined ? 'wlc' : s.name;
  if (!oneOf(SCHEDULERS, name)) {
    p.add('spec.scheduler.name', `unknown scheduler ${JSON.stringify(name)}; expected one of ${SCHEDULERS.join(' ')}`);
    return { name: 'wlc', flags: [] };
  }
  const raw = s.flags === undefined ? [] : s.flags;
  if (!Array.isArray(raw)) { p.add('spec.scheduler.flags', 'flags is not a list'); return { name, flags: [] }; }
  const flags = new Set<SchedulerFlag>();
  raw.forEach((f: unknown, i) => {
    const field = `spec.scheduler.flags[${i}]`;
    if (!oneOf(FLAGS, f)) p.add(field, `unknown scheduler flag ${JSON.stringify(f)}`);
    else if (!f.startsWith(`${name}-`)) p.add(field, `flag ${f} does not apply to scheduler ${name}`);
    else if (flags.has(f)) p.add(field, `flag ${f} is listed twice`);
    else flags.add(f);
  });
  return { name, flags: [...flags].sort() };
}

function validatePersistence(v: unknown, p: Problems): NormalizedSpec['persistence'] {
  if (v === undefined) return undefined;
  if (!isObj(v)) { p.add('spec.persistence', 'persistence is not an object'); return undefined; }
  if (!isInt(v.timeoutSeconds, 1, MAX_PERSISTENCE_SECONDS)) {
    p.add('spec.persistence.timeoutSeconds', `timeoutSeconds must be an integer from 1 to ${MAX_PERSISTENCE_SECONDS}`);
  }
  if (v.netmask !== undefined && !isContiguousNetmask(v.netmask)) {
    p.add('spec.persistence.netmask', `${JSON.stringify(v.netmask)} is not a contiguous dotted IPv4 netmask`);
  }
  if (v.ipv6PrefixLength !== undefined && !isInt(v.ipv6PrefixLength, 1, 128)) {
    p.add('spec.persistence.ipv6PrefixLength', 'ipv6PrefixLength must be an integer from 1 to 128');
  }
  return {
    timeoutSeconds: v.timeoutSeconds as number,
    // The kernel takes the IPv4 mask as an address and the IPv6 one as a prefix length.
    netmask4: (parseIp(v.netmask)?.address) ?? '255.255.255.255',
    netmask6: String(v.ipv6PrefixLength ?? 128),
  };
}

function validateDirectors(v: unknown, p: Problems): Record<string, string> | undefined {
  if (v === undefined) return undefined;
  if (!isObj(v)) { p.add('spec.directors', 'directors is not an object'); return undefined; }
  const sel = v.nodeSelector;
  if (sel === undefined) return undefined;
  if (!isObj(sel) || !Object.values(sel).every((x) => typeof x === 'string')) {
    p.add('spec.directors.nodeSelector', 'nodeSelector must map label names to string values');
    return undefined;
  }
  return sel as Record<string, string>;
}

function validateBackends(v: unknown, vips: Vip[], ports: VsPort[], fwd: Forwarding, p: Problems): NormalizedSpec['backends'] | undefined {
  if (!isObj(v) || (v.service === undefined) === (v.static === undefined)) {
    p.add('spec.backends', 'backends needs exactly one of service or static');
    return undefined;
  }
  if (v.service !== undefined) return validateServiceBackend(v.service, ports, p);
  return validateStatic(v.static, vips, ports, fwd, p);
}

function validateServiceBackend(v: unknown, ports: VsPort[], p: Problems): NormalizedSpec['backends'] | undefined {
  const f = 'spec.backends.service';
  if (!isObj(v)) { p.add(f, 'service backend is not an object'); return undefined; }
  if (typeof v.name !== 'string' || v.name === '') { p.add(`${f}.name`, 'the Service name is required'); return undefined; }
  const mapping = new Map<string, { index: number; servicePort: number | string }>();
  if (v.ports === undefined) return { kind: 'service', name: v.name, mapping };
  if (!Array.isArray(v.ports)) { p.add(`${f}.ports`, 'ports is not a list'); return undefined; }
  const names = new Set(ports.map((x) => x.name));
  v.ports.forEach((m: unknown, index) => {
    const mf = `${f}.ports[${index}]`;
    if (!isObj(m)) { p.add(mf, 'port mapping is not an object'); return; }
    if (typeof m.name !== 'string' || !names.has(m.name)) {
      p.add(`${mf}.name`, `${JSON.stringify(m.name)} is not the name of a spec.ports entry`);
    } else if (mapping.has(m.name)) {
      p.add(`${mf}.name`, `port ${m.name} is mapped twice`);
    } else if (!isInt(m.servicePort, 1, 65535) && !(typeof m.servicePort === 'string' && m.servicePort !== '')) {
      p.add(`${mf}.servicePort`, 'servicePort must be a Service port name or a number from 1 to 65535');
    } else {
      mapping.set(m.name, { index, servicePort: m.servicePort as number | string });
    }
  });
  return { kind: 'service', name: v.name, mapping };
}

function validateStatic(v: unknown, vips: Vip[], ports: VsPort[], fwd: Forwarding, p: Problems): NormalizedSpec['backends'] | undefined {
  const f = 'spec.backends.static';
  if (!Array.isArray(v) || v.length < 1 || v.length > 1024) { p.add(f, 'static must list 1 to 1024 real servers'); return undefined; }
  const seen = new Set<string>();
  const vipSet = new Set(vips.map((x) => x.address));
  const targetPorts = ports.some((x) => x.targetPort !== undefined);
  const entries: StaticBackend[] = [];
  v.forEach((e: unknown, index) => {
    const ef = `${f}[${index}]`;
    if (!isObj(e)) { p.add(ef, 'real server entry is not an object'); return; }
    const problem = addressProblem(e.address);
    const ip = parseIp(e.address);
    if (problem || !ip) { p.add(`${ef}.address`, problem ?? 'invalid address'); return; }
    // The list is keyed by address: the same address twice would be one IPVS destination twice.
    if (seen.has(ip.address)) { p.add(`${ef}.address`, `real server ${ip.address} is listed twice`); return; }
    seen.add(ip.address);
    if (vipSet.has(ip.address)) { p.add(`${ef}.address`, `${ip.address} is a VIP of this VirtualServer; a VIP cannot be its own real server`); return; }
    if (e.port !== undefined) {
      const why = !isInt(e.port, 1, 65535) ? 'port must be an integer from 1 to 65535'
        : fwd !== 'NAT' ? `${fwd} forwarding cannot remap ports: a static port is NAT only`
          : ports.length !== 1 ? 'a static port needs exactly one spec.ports entry; use spec.ports[].targetPort'
            : targetPorts ? 'spec.ports[].targetPort is set too: set the real servers\' port in one place' : undefined;
      if (why) { p.add(`${ef}.port`, why); return; }
    }
    const weight = e.weight === undefined ? 1 : e.weight;
    if (!isInt(weight, 0, 65535)) { p.add(`${ef}.weight`, 'weight must be an integer from 0 to 65535'); return; }
    const entry: StaticBackend = { index, address: ip.address, family: ip.family, sortKey: ip.sortKey, weight };
    if (e.port !== undefined) entry.port = e.port as number;
    const check = validateCheckOverride(e.healthCheck, `${ef}.healthCheck`, p);
    if (check) entry.check = check;
    entries.push(entry);
  });
  return { kind: 'static', entries };
}
