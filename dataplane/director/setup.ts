// Side effects of the director role: observe lvs0, the sysctls and our nft tables; diff against
// the spec (pure, below); apply through the injected runner; observe again until nothing is left.
// The final observation is the read-back verification of every sysctl, address and table.
import type { Logger } from 'pino';
import { CommandError, type NetnsTarget, type Runner, describeTarget, inNetns } from '../exec.ts';
import { type LinkInfo, hostPrefix, ipBatch, ipFamily, readLink, readLinks, readSysctls, writeSysctls } from '../realserver/iproute.ts';
import {
  type Announcement, type ProxyEntry, announceCommand, announcements, newlyAnnounced, parseProxies, proxyChanges, uplinkSysctls, wantedProxies,
} from './announce.ts';
import {
  DEVICE, DIRECTOR_SYSCTLS, NFT_FAMILIES, NFT_TABLE, type DirectorSpec, type NftTables,
  directorSysctls, nftTables, nftTransaction, normalizeSpec, sameRuleset, withKeptSnat,
} from './plan.ts';

export interface ObservedDirector {
  device?: LinkInfo;
  sysctls: Record<string, string>;
  nft: NftTables;
  /** IPv6 proxy-NDP entries of the namespace (read when asked). */
  proxies?: ProxyEntry[];
  /** The namespace's other links with their addresses, when the observation read every link. */
  others?: LinkInfo[];
}

export type DirectorStep =
  | { kind: 'sysctl'; key: string; from: string; to: string }
  | { kind: 'nft'; tables: NftTables }
  | { kind: 'link'; device: string; op: 'create' | 'up' | 'delete' }
  | { kind: 'address'; address: string; op: 'add' | 'remove' }
  | { kind: 'proxy'; address: string; device: string; op: 'add' | 'remove' };

/** Global-scope addresses on the device: the VIPs this node owns (link-local ones are the kernel's). */
export function ownedAddresses(device: LinkInfo | undefined): string[] {
  return (device?.addresses ?? []).filter((a) => a.scope === 'global').map((a) => a.address);
}

/** A sysctl's value for comparison, whitespace-normalised: a vector sysctl (sync_threshold) reads back tab-separated. */
function sysctlValue(v: string): string {
  return v.replace(/\s+/g, ' ').trim();
}

/**
 * Pure: the steps that take `obs` to `spec` (already normalised). Order keeps ARP safe.
 * `announced`: the spec's announced VIPs with their devices (./announce.ts announcements()).
 */
export function planDirector(given: DirectorSpec, obs: ObservedDirector, device = DEVICE, announced: readonly Announcement[] = []): DirectorStep[] {
  const spec = withKeptSnat(given, obs.nft.inet);
  const steps: DirectorStep[] = [];
  for (const s of [...directorSysctls(spec), ...uplinkSysctls(announced)]) {
    const cur = obs.sysctls[s.key];
    if (cur === undefined) {
      const hint = s.key.startsWith('net.ipv4.vs.') ? ' (the ip_vs module is not loaded)' : s.key.startsWith('net.ipv6.') ? ' (IPv6 is off on that device)' : '';
      throw new Error(`director: sysctl ${s.key} does not exist in this namespace${hint}`);
    }
    const same = sysctlValue(cur) === s.want;
    if (!same && ('onlyFrom' in s ? cur === s.onlyFrom : true)) steps.push({ kind: 'sysctl', key: s.key, from: cur, to: s.want });
  }
  const want = new Set(spec.vips.map((v) => v.address));
  const have = ownedAddresses(obs.device);
  const removing = have.filter((a) => !want.has(a));
  // While a VIP is being removed it stays in the ARP drop list, so it is never answered; the next
  // round (after the address is gone) drops the rule.
  const tables = nftTables(spec, removing);
  if (NFT_FAMILIES.some((f) => !sameRuleset(tables[f], obs.nft[f]))) steps.push({ kind: 'nft', tables });
  if (spec.vips.length > 0 && !obs.device) steps.push({ kind: 'link', device, op: 'create' }, { kind: 'link', device, op: 'up' });
  if (obs.device && !obs.device.up && spec.vips.length > 0) steps.push({ kind: 'link', device, op: 'up' });
  // One lookup per VIP (a node with thousands of VIPs must not compare every pair).
  const exact = new Set((obs.device?.addresses ?? []).filter((a) => a.prefixLen === (a.family === 4 ? 32 : 128)).map((a) => a.address));
  for (const v of spec.vips) {
    if (!exact.has(v.address)) steps.push({ kind: 'address', address: v.address, op: 'add' });
  }
  for (const a of obs.device?.addresses ?? []) {
    if (a.scope !== 'global') continue;
    const wrongPrefix = a.prefixLen !== (a.family === 4 ? 32 : 128);
    if (!want.has(a.address) || wrongPrefix) steps.push({ kind: 'address', address: `${a.address}/${a.prefixLen}`, op: 'remove' });
  }
  if (obs.proxies) {
    // After the address steps: an IPv6 VIP is answered for only once it is local.
    const { add, remove } = proxyChanges(wantedProxies(announced), obs.proxies, new Set([...have, ...want]));
    for (const e of remove) steps.push({ kind: 'proxy', ...e, op: 'remove' });
    for (const e of add) steps.push({ kind: 'proxy', ...e, op: 'add' });
  }
  return steps;
}

/** The IPv4 VIPs our arp table drops requests for. */
function arpDropped(obs: ObservedDirector): Set<string> {
  return new Set([...obs.nft.arp.matchAll(/arp daddr ip (\S+) drop/g)].map((m) => m[1]!));
}

/** The VIPs on the device that are answered now: IPv4 not ARP-dropped, IPv6 with a proxy-NDP entry. */
export function answeredNow(obs: ObservedDirector): string[] {
  const dropped = arpDropped(obs);
  const proxied = new Set((obs.proxies ?? []).map((e) => e.address));
  return ownedAddresses(obs.device).filter((a) => (ipFamily(a) === 4 ? !dropped.has(a) : proxied.has(a)));
}

/** The announcements `obs` already makes: IPv4 VIPs on the device and not ARP-dropped; IPv6 proxy entries. */
export function announcedNow(obs: ObservedDirector, wanted: readonly Announcement[]): Announcement[] {
  const bound = new Set(ownedAddresses(obs.device));
  const dropped = arpDropped(obs);
  const proxied = new Set((obs.proxies ?? []).map((e) => `${e.address}%${e.device}`));
  return wanted.map((a) => ({
    address: a.address,
    devices: ipFamily(a.address) === 4
      ? (bound.has(a.address) && !dropped.has(a.address) ? a.devices : [])
      : a.devices.filter((d) => proxied.has(`${a.address}%${d}`)),
  }));
}

export interface DirectorOptions {
  run: Runner;
  /** Namespace of the director; default the host's. */
  target?: NetnsTarget;
  logger?: Logger;
  device?: string;
  maxRounds?: number;
  /** Send a gratuitous ARP / unsolicited NA for VIPs that became announced (default true). */
  announceNow?: boolean;
}

export interface DirectorReport {
  target: string;
  changed: boolean;
  steps: DirectorStep[];
  /** Addresses on the device after the call (read back). */
  vips: string[];
  /** Each sysctl the spec needs, as read back after the call; `previous` when we changed it. */
  sysctls: Array<{ key: string; value: string; previous?: string; why: string }>;
  /** Our nft tables present after the call, e.g. "inet lvs_operator". */
  nftTables: string[];
  /**
   * Address → the other devices it is assigned on (every scope), read once per call, before any
   * step (steps only touch `device`): what the agent must not adopt as a VIP (sync/adoption.ts).
   */
  elsewhere: Map<string, string[]>;
  /** Announced VIPs with the devices they are announced on (VIPs without an uplink left out). */
  announced: Announcement[];
  /** Those announced by this call (a gratuitous ARP / unsolicited NA went out for each). */
  newlyAnnounced: Announcement[];
  /** Every VIP of the spec with the devices it would be announced on (for announceQuick). */
  devices: Announcement[];
}

/** Address → devices holding it, over `links` (canonical addresses, as parseIpAddrJson gives them). */
export function addressesByDevice(links: readonly LinkInfo[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const l of links) for (const a of l.addresses) {
    const devices = out.get(a.address) ?? [];
    if (!devices.includes(l.name)) devices.push(l.name);
    out.set(a.address, devices);
  }
  return out;
}

async function listTable(run: Runner, family: string): Promise<string> {
  try {
    return (await run('nft', ['list', 'table', family, NFT_TABLE])).stdout;
  } catch (err) {
    if (err instanceof CommandError && /No such file or directory/.test(err.stderr)) return '';
    throw err;
  }
}

async function listProxies(run: Runner): Promise<ProxyEntry[]> {
  return parseProxies((await run('ip', ['-6', '-j', 'neigh', 'show', 'proxy'])).stdout);
}

/**
 * `all`: read every link (one `ip -j -d addr show` instead of the device's), keeping the others.
 * `extraSysctls`: the uplinks' keys of announced IPv6 VIPs. Proxy-NDP entries are always read.
 *
 * The six reads run one after the other, not side by side. Each is a process, and most of a
 * director check's cost is theirs: under emulation (lab/director-scale.ts --check, 400 VIPs)
 * `nft` took ~270 ms of CPU a start, `ip` 110-190, the check's processes 1.8-3.5 s of CPU against
 * 0.2-0.9 s for the agent. Started together they held both of the VM's CPUs for a second or more
 * every 30 s, and a change arriving then waited for a CPU (bench/RESULTS.md: the changes that
 * overlapped a check had a p50 of 148-235 ms against 55-65). One at a time, a check takes
 * longer, beside the syncs, and leaves the other CPUs to them.
 */
export async function observeDirector(run: Runner, device = DEVICE, all = false, extraSysctls: readonly string[] = []): Promise<ObservedDirector> {
  const linked = all ? await readLinks(run) : await readLink(run, device).then((l) => (l ? [l] : []));
  const sysctls = await readSysctls(run, [...DIRECTOR_SYSCTLS, ...extraSysctls]);
  const proxies = await listProxies(run);
  const inet = await listTable(run, 'inet');
  const arp = await listTable(run, 'arp');
  const ip6 = await listTable(run, 'ip6');
  const link = linked.find((l) => l.name === device);
  const obs: ObservedDirector = { sysctls: Object.fromEntries(sysctls), nft: { inet, arp, ip6 }, proxies };
  if (all) obs.others = linked.filter((l) => l.name !== device);
  if (link) {
    if (link.kind !== 'dummy') throw new Error(`director: device ${device} exists but is ${link.kind ? `a ${link.kind}` : 'not a dummy'} device`);
    obs.device = link;
  }
  return obs;
}

/** The `ip -batch` line of a link/address step. */
export function ipLine(step: DirectorStep, device: string): string | undefined {
  if (step.kind === 'link') {
    if (step.op === 'create') return `link add ${device} type dummy`;
    return step.op === 'delete' ? `link del dev ${device}` : `link set dev ${device} up`;
  }
  if (step.kind === 'proxy') return `neigh ${step.op === 'add' ? 'add' : 'del'} proxy ${step.address} dev ${step.device}`;
  if (step.kind !== 'address') return undefined;
  if (step.op === 'remove') return `addr del ${step.address} dev ${device}`;
  // nodad: the address is ours alone (a dummy device has no link to probe anyway).
  return `addr add ${hostPrefix(step.address)} dev ${device}${ipFamily(step.address) === 6 ? ' nodad' : ''}`;
}

/** Steps in order, with consecutive sysctl steps in one `sysctl -w` and ip steps in `ip -batch` chunks. */
async function applySteps(run: Runner, steps: readonly DirectorStep[], device: string): Promise<void> {
  let i = 0;
  while (i < steps.length) {
    const step = steps[i]!;
    if (step.kind === 'nft') {
      await run('nft', ['-f', '-'], { input: nftTransaction(step.tables) });
      i++;
    } else if (step.kind === 'sysctl') {
      const batch: Array<[string, string]> = [];
      for (; i < steps.length && steps[i]!.kind === 'sysctl'; i++) {
        const s = steps[i] as Extract<DirectorStep, { kind: 'sysctl' }>;
        batch.push([s.key, s.to]);
      }
      await writeSysctls(run, batch);
    } else {
      const lines: string[] = [];
      for (let line; i < steps.length && (line = ipLine(steps[i]!, device)); i++) lines.push(line);
      await ipBatch(run, lines);
    }
  }
}

/** Bring the director's namespace to `spec`: lvs0 + VIPs, sysctls, our nft tables, announcements. */
export async function syncDirector(opts: DirectorOptions, input: DirectorSpec): Promise<DirectorReport> {
  const spec = normalizeSpec(input);
  const target = opts.target ?? { kind: 'host' };
  const run = inNetns(opts.run, target);
  const device = opts.device ?? DEVICE;
  const log = opts.logger?.child({ op: 'director', netns: describeTarget(target) });
  const applied: DirectorStep[] = [];
  let obs = await observeDirector(run, device, true);
  const devices = announcements({ ...spec, vips: spec.vips.map((v) => ({ ...v, announce: true })) }, obs.others ?? [], device);
  const on = new Set(spec.vips.filter((v) => v.announce).map((v) => v.address));
  const announced = devices.filter((d) => on.has(d.address));
  const extra = uplinkSysctls(announced).map((s) => s.key);
  if (extra.length > 0) Object.assign(obs.sysctls, Object.fromEntries(await readSysctls(run, extra)));
  const was = announcedNow(obs, announced);
  const before = obs.sysctls;
  const elsewhere = addressesByDevice(obs.others ?? []);
  let steps = planDirector(spec, obs, device, announced);
  for (let round = 0; steps.length > 0 && round < (opts.maxRounds ?? 3); round++) {
    log?.info({ steps }, 'director steps');
    await applySteps(run, steps, device);
    applied.push(...steps);
    obs = await observeDirector(run, device, false, extra);
    steps = planDirector(spec, obs, device, announced);
  }
  if (steps.length > 0) throw new Error(`director setup of ${describeTarget(target)} did not converge; still to do: ${JSON.stringify(steps)}`);
  const fresh = newlyAnnounced(was, announced);
  // Not awaited: arping exits a second after it sent, and nothing here depends on its end.
  if (fresh.length > 0 && opts.announceNow !== false) void sendAnnouncements(run, fresh, log);
  return {
    target: describeTarget(target),
    changed: applied.length > 0,
    steps: applied,
    vips: ownedAddresses(obs.device),
    sysctls: [...directorSysctls(spec), ...uplinkSysctls(announced)].filter((s) => obs.sysctls[s.key] !== undefined).map((s) => ({
      key: s.key, value: obs.sysctls[s.key]!, why: s.why,
      ...(before[s.key] !== obs.sysctls[s.key] ? { previous: before[s.key]! } : {}),
    })),
    nftTables: NFT_FAMILIES.filter((f) => obs.nft[f]).map((f) => `${f} ${NFT_TABLE}`),
    elsewhere,
    announced: announced.filter((a) => a.devices.length > 0),
    newlyAnnounced: fresh,
    devices,
  };
}

/**
 * The failover path: only the announce flags of bound VIPs changed since `prev` (the last full
 * sync's report), so only what answers ARP/NDP changes — our arp and ip6 nft tables in one
 * transaction, the proxy entries of the IPv6 VIPs that flipped — and the newly announced VIPs are
 * announced. No observation (a full sync reads everything back right after, and repairs). Returns
 * the announced list, to pass as `prev.announced` next time. `all`: announce every announced VIP,
 * not only the new ones (a peer came back: its neighbours may still point at it).
 */
export async function announceQuick(opts: DirectorOptions, input: DirectorSpec, prev: Pick<DirectorReport, 'announced' | 'devices'>, all = false): Promise<Announcement[]> {
  const spec = normalizeSpec(input);
  const run = inNetns(opts.run, opts.target ?? { kind: 'host' });
  const log = opts.logger?.child({ op: 'announce' });
  const byVip = new Map(prev.devices.map((d) => [d.address, d.devices]));
  const announced = spec.vips.filter((v) => v.announce).map((v) => ({ address: v.address, devices: v.interfaces ?? spec.interfaces ?? byVip.get(v.address) ?? [] }))
    .filter((a) => a.devices.length > 0);
  const tables = nftTables(spec);
  const script = nftTransaction({ inet: '', arp: tables.arp, ip6: tables.ip6 }, ['arp', 'ip6']);
  const { add, remove } = proxyChanges(wantedProxies(announced), wantedProxies(prev.announced), new Set(spec.vips.map((v) => v.address)));
  // Silence first, then answer: never a moment where a VIP leaving us is still proxied after its
  // successor answers (the order within this node does not matter to the successor).
  await run('nft', ['-f', '-'], { input: script });
  const lines = [...remove.map((e) => `neigh del proxy ${e.address} dev ${e.device}`), ...add.map((e) => `neigh add proxy ${e.address} dev ${e.device}`)];
  if (lines.length > 0) await run('ip', ['-batch', '-'], { input: lines.join('\n') + '\n' });
  const fresh = all ? announced : newlyAnnounced(prev.announced, announced);
  log?.info({ announced: announced.map((a) => a.address), fresh: fresh.map((a) => a.address) }, 'announcements changed');
  if (fresh.length > 0 && opts.announceNow !== false) void sendAnnouncements(run, fresh, log);
  return announced;
}

/**
 * Tell the segments where `list` lives now: one gratuitous ARP or unsolicited NA per VIP and
 * device, all at once. Failures are logged and returned, never thrown: a missing announcement
 * slows clients down (they find the VIP when their neighbour entry expires) but breaks nothing.
 */
export async function sendAnnouncements(run: Runner, list: readonly Announcement[], log?: Logger): Promise<Array<{ address: string; device: string; error?: string }>> {
  return Promise.all(list.flatMap((a) => a.devices.map(async (device) => {
    const [cmd, args] = announceCommand(a.address, device);
    try {
      await run(cmd, args);
      log?.debug({ vip: a.address, device }, 'announced');
      return { address: a.address, device };
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      log?.warn({ vip: a.address, device, err: error }, `could not announce ${a.address} on ${device} (${cmd})`);
      return { address: a.address, device, error };
    }
  })));
}

/** What a teardown did. */
export interface TeardownReport {
  target: string;
  changed: boolean;
  steps: DirectorStep[];
}

/**
 * Give up the director role: no VIPs, no nft tables, no device. Sysctls are left as they are,
 * but for `restore` (key -> value, e.g. the values recorded before the agent changed them).
 * One observation — `observed` when the caller has just made it (the agent's release), else read
 * here — then three processes at most: lvs0 (its VIPs go with it) and the proxy-NDP entries of
 * its VIPs in one `ip -batch`; our nft tables in one transaction, after the addresses, so a VIP
 * never answers ARP while it is still local; the recorded sysctls. No read-back: it ran at the
 * agent's stop, against the kubelet's grace period, and under emulation each process costs about
 * a second — the version that synced to an empty spec and read everything back twice took 16.8 s
 * of a 30 s grace period in the cluster tier (2026-12-05, load ~3.7).
 */
export async function teardownDirector(opts: DirectorOptions, restore: Readonly<Record<string, string>> = {}, observed?: ObservedDirector): Promise<TeardownReport> {
  const target = opts.target ?? { kind: 'host' };
  const run = inNetns(opts.run, target);
  const device = opts.device ?? DEVICE;
  const obs = observed ?? await observeDirector(run, device);
  const steps: DirectorStep[] = [];
  const vips = new Set(ownedAddresses(obs.device));
  for (const e of proxyChanges([], obs.proxies ?? [], vips).remove) steps.push({ kind: 'proxy', ...e, op: 'remove' });
  if (obs.device) steps.push({ kind: 'link', device, op: 'delete' });
  if (NFT_FAMILIES.some((f) => obs.nft[f])) steps.push({ kind: 'nft', tables: { inet: '', arp: '', ip6: '' } });
  const unread = Object.keys(restore).filter((k) => obs.sysctls[k] === undefined);
  const now: Record<string, string> = { ...obs.sysctls, ...Object.fromEntries(unread.length > 0 ? await readSysctls(run, unread) : []) };
  // Keys that do not exist here (a device gone since) are skipped, as `sysctl -e` reads them.
  for (const [key, to] of Object.entries(restore)) if (now[key] !== undefined && sysctlValue(now[key]!) !== sysctlValue(to)) steps.push({ kind: 'sysctl', key, from: now[key]!, to });
  await applySteps(run, steps, device);
  return { target: describeTarget(target), changed: steps.length > 0, steps };
}
