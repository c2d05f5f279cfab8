// The return path of DR/TUN pods on a director node. A DR/TUN real server answers from the VIP.
// When that real server is a pod on a node that directs the same VIP, the VIP is a local address
// of the node (lvs0), and the pod's reply enters the node's root namespace on the host side of
// the pod's veth (or on that veth's bridge master, cni0 with the bridge plugin) on its way to the
// client. fib_validate_source() rejects a packet whose source is a local address ("martian
// source") unless the receiving interface has accept_local=1. With accept_local=1 the reply then
// goes through the reverse-path check, where a local source never matches the receiving interface:
// strict mode (effective rp_filter = max(conf.all, conf.<dev>) = 1) drops it, loose mode (2) and
// off (0) accept it. So on exactly those interfaces: accept_local=1, and rp_filter=2 where the
// effective value would be 1 (max() makes 2 win over all=1 without touching conf.all).
// conf.all.accept_local is never set: it would let every interface accept local sources.
// IPv6 needs none of this: it has neither the martian-source check nor rp_filter, and a pod's reply
// sourced from an IPv6 VIP on the node's lvs0 is forwarded to the client as it is (seen in the test
// VM, kernel 6.1), so only pods serving IPv4 VIPs get these settings.
//
// What we changed is recorded (previous values, per interface) in a file under /run/lvs-agent, a
// tmpfs with the same lifetime as the sysctls (one boot); an interface no longer needed gets its
// previous values back, but only where it still holds ours.
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from './state-file.ts';
import type { Logger } from 'pino';
import { describeTarget, inNetns, type NetnsTarget, type Runner } from '../exec.ts';
import { readSysctls, writeSysctls } from '../realserver/iproute.ts';

export const DEFAULT_RETURN_PATH_RECORD = '/run/lvs-agent/return-path.json';

/** The fields of `ip -j link show` used here. */
export interface RawIpLink {
  ifindex?: number;
  ifname?: string;
  /** The peer's ifindex (veth), in the namespace named by link_netnsid when that is present. */
  link_index?: number;
  link_netnsid?: number;
  master?: string;
}

/**
 * Pure: the root-namespace interfaces a pod's packets arrive on. Each pod interface whose veth
 * peer is in `host` (peer relation checked both ways, since ifindexes are per namespace) counts;
 * the host-side veth is replaced by its master when it is enslaved to a bridge, because the bridge
 * device is where a bridged packet enters the IP layer.
 */
export function podUplinks(host: readonly RawIpLink[], pod: readonly RawIpLink[]): string[] {
  const out = new Set<string>();
  for (const p of pod) {
    if (p.link_index === undefined || p.link_netnsid === undefined || p.ifindex === undefined) continue;
    const h = host.find((l) => l.ifindex === p.link_index && l.link_index === p.ifindex && l.link_netnsid !== undefined);
    const dev = h?.master ?? h?.ifname;
    if (dev) out.add(dev);
  }
  return [...out].sort();
}

/** Previous values of what we changed, per interface ("" = we did not change it). */
export type ReturnPathRecord = Record<string, { accept_local: string; rp_filter: string }>;

export interface ReturnPathStep {
  key: string;
  from: string;
  to: string;
  op: 'set' | 'restore';
}

const key = (dev: string, name: string) => `net.ipv4.conf.${dev}.${name}`;

/** Every sysctl planReturnPath reads, for `devices` (wanted) and those in `record`. */
export function returnPathKeys(devices: readonly string[], record: ReturnPathRecord): string[] {
  const devs = [...new Set([...devices, ...Object.keys(record)])].sort();
  return ['net.ipv4.conf.all.rp_filter', ...devs.flatMap((d) => [key(d, 'accept_local'), key(d, 'rp_filter')])];
}

/**
 * Pure: steps taking the interfaces to `devices` prepared and every other recorded one back to its
 * previous values, and the record after them. An interface that is gone (its keys absent) leaves
 * the record; a value someone else changed since is left alone.
 */
export function planReturnPath(devices: readonly string[], sysctls: ReadonlyMap<string, string>, record: ReturnPathRecord): { steps: ReturnPathStep[]; record: ReturnPathRecord } {
  const steps: ReturnPathStep[] = [];
  const next: ReturnPathRecord = {};
  const all = Number(sysctls.get('net.ipv4.conf.all.rp_filter') ?? '0');
  for (const dev of [...new Set(devices)].sort()) {
    const accept = sysctls.get(key(dev, 'accept_local'));
    const rpf = sysctls.get(key(dev, 'rp_filter'));
    if (accept === undefined || rpf === undefined) continue; // not (or no longer) there
    const was = record[dev] ?? { accept_local: '', rp_filter: '' };
    const entry = { ...was };
    if (accept !== '1') {
      steps.push({ key: key(dev, 'accept_local'), from: accept, to: '1', op: 'set' });
      if (!entry.accept_local) entry.accept_local = accept;
    }
    if (Math.max(all, Number(rpf)) === 1) {
      steps.push({ key: key(dev, 'rp_filter'), from: rpf, to: '2', op: 'set' });
      if (!entry.rp_filter) entry.rp_filter = rpf;
    }
    if (entry.accept_local || entry.rp_filter) next[dev] = entry;
  }
  for (const [dev, was] of Object.entries(record).sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (next[dev] || devices.includes(dev)) continue;
    const restore = (name: 'accept_local' | 'rp_filter', ours: string) => {
      const cur = sysctls.get(key(dev, name));
      if (was[name] && cur === ours) steps.push({ key: key(dev, name), from: cur, to: was[name], op: 'restore' });
    };
    restore('accept_local', '1');
    restore('rp_filter', '2');
  }
  return { steps, record: next };
}

export function readRecord(path: string): ReturnPathRecord {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as ReturnPathRecord;
  } catch {
    return {};
  }
}

function writeRecord(path: string, record: ReturnPathRecord): void {
  writeFileAtomic(path, `${JSON.stringify(record)}\n`);
}

const linksIn = async (run: Runner) => JSON.parse((await run('ip', ['-j', 'link', 'show'])).stdout || '[]') as RawIpLink[];

export interface ReturnPathOptions {
  run: Runner;
  log: Logger;
  /** The record file; default DEFAULT_RETURN_PATH_RECORD. */
  recordPath?: string;
}

/**
 * Prepare the uplinks of the pods in `targets` (namespaces other than the host's whose real
 * servers serve a VIP this node directs) and restore every other recorded interface. Returns the
 * interfaces prepared, read back.
 */
export async function syncReturnPath(opts: ReturnPathOptions, targets: readonly NetnsTarget[]): Promise<string[]> {
  const path = opts.recordPath ?? DEFAULT_RETURN_PATH_RECORD;
  const host = targets.length > 0 ? await linksIn(opts.run) : [];
  const devices = new Set<string>();
  for (const t of targets) {
    if (t.kind === 'host') continue;
    for (const d of podUplinks(host, await linksIn(inNetns(opts.run, t)))) devices.add(d);
  }
  const want = [...devices].sort();
  const record = readRecord(path);
  if (want.length === 0 && Object.keys(record).length === 0) return [];
  const sysctls = await readSysctls(opts.run, returnPathKeys(want, record));
  const plan = planReturnPath(want, sysctls, record);
  if (plan.steps.length === 0 && JSON.stringify(plan.record) === JSON.stringify(record)) return want.filter((d) => sysctls.has(key(d, 'accept_local')));
  // Record before setting (a crash in between still knows the previous values); forget after restoring.
  writeRecord(path, { ...record, ...plan.record });
  if (plan.steps.length > 0) {
    opts.log.info({ op: 'returnPath', devices: want, targets: targets.map(describeTarget), steps: plan.steps }, 'return path steps');
    await writeSysctls(opts.run, plan.steps.map((s) => [s.key, s.to] as const));
  }
  writeRecord(path, plan.record);
  const after = await readSysctls(opts.run, returnPathKeys(want, {}));
  const check = planReturnPath(want, after, plan.record);
  const left = check.steps.filter((s) => s.op === 'set');
  if (left.length > 0) throw new Error(`return path of ${want.join(', ')} did not stick; still to do: ${JSON.stringify(left)}`);
  return want.filter((d) => after.has(key(d, 'accept_local')));
}
