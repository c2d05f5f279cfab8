// Reading and writing the bits of a network namespace that director and real-server
// preparation touch: links with their addresses (`ip -j -d addr show`), and sysctls (`sysctl`).
// Shared by dataplane/director and dataplane/realserver; every call goes through a Runner that is
// already bound to the target namespace (see inNetns in ../exec.ts).
import { canonicalIp } from '../../api/ip.ts';
import { CommandError, type Runner } from '../exec.ts';

export interface AddrInfo {
  family: 4 | 6;
  address: string;
  prefixLen: number;
  /** global | host | link | ... */
  scope: string;
  /** IPv4 address label (e.g. "lo:lvs"); absent for IPv6. */
  label?: string;
  /** Prefix-route metric given when the address was added (IFA_RT_PRIORITY), if any. */
  metric?: number;
}

export interface LinkInfo {
  name: string;
  up: boolean;
  /** rtnl link kind from `-d` (dummy, ipip, veth...); absent for lo and physical devices. */
  kind?: string;
  /** IFLA_IFALIAS, a free-form per-device string ("" when unset). */
  alias: string;
  addresses: AddrInfo[];
}

/** Canonical text of an IP address (IPv6 lower-case, compressed), or undefined if not an IP. */
export { canonicalIp };

export function ipFamily(address: string): 4 | 6 {
  return address.includes(':') ? 6 : 4;
}

interface RawAddr { family?: string; local?: string; prefixlen?: number; scope?: string; label?: string; metric?: number }
interface RawLink { ifname?: string; flags?: string[]; ifalias?: string; linkinfo?: { info_kind?: string }; addr_info?: RawAddr[] }

/** Parse `ip -j -d addr show` output. */
export function parseIpAddrJson(text: string): LinkInfo[] {
  const raw = JSON.parse(text || '[]') as RawLink[];
  return raw.map((l) => {
    const addresses: AddrInfo[] = [];
    for (const a of l.addr_info ?? []) {
      if ((a.family !== 'inet' && a.family !== 'inet6') || !a.local) continue;
      const address = canonicalIp(a.local) ?? a.local;
      const info: AddrInfo = { family: a.family === 'inet' ? 4 : 6, address, prefixLen: a.prefixlen ?? 0, scope: a.scope ?? 'global' };
      if (a.label !== undefined) info.label = a.label;
      if (a.metric !== undefined) info.metric = a.metric;
      addresses.push(info);
    }
    const link: LinkInfo = { name: l.ifname ?? '', up: (l.flags ?? []).includes('UP'), alias: l.ifalias ?? '', addresses };
    if (l.linkinfo?.info_kind) link.kind = l.linkinfo.info_kind;
    return link;
  });
}

/** One link, or undefined when it does not exist in the namespace. */
export async function readLink(run: Runner, name: string): Promise<LinkInfo | undefined> {
  try {
    const { stdout } = await run('ip', ['-j', '-d', 'addr', 'show', 'dev', name]);
    return parseIpAddrJson(stdout).find((l) => l.name === name);
  } catch (err) {
    if (err instanceof CommandError && /does not exist/.test(err.stderr)) return undefined;
    throw err;
  }
}

/** Every link in the namespace with its addresses. */
export async function readLinks(run: Runner): Promise<LinkInfo[]> {
  return parseIpAddrJson((await run('ip', ['-j', '-d', 'addr', 'show'])).stdout);
}

/**
 * Where sysctls are read and written, or undefined for the `sysctl` tool on /proc/sys.
 * Container runtimes mount /proc/sys read-only in every non-privileged container, so `sysctl -w`
 * fails there (EROFS). The DaemonSet mounts the host's /proc/sys/net read-write at
 * /host/proc/sys/net and sets LVS_PROC_SYS=/host/proc/sys. Entries under /proc/sys/net resolve in
 * the network namespace of the process that opens them, whatever mount they are reached through,
 * so a write made after `nsenter --net` lands in the pod's namespace, not the host's.
 */
export function procSysRoot(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const root = env.LVS_PROC_SYS?.replace(/\/+$/, '');
  return root ? root : undefined;
}

/**
 * A dotted key's file below the sysctl root. Only per-device keys can hold a dot that is not a
 * separator (VLAN devices such as "eth0.100"): the device is everything between "conf." or
 * "neigh." and the last dot.
 */
export function sysctlPath(root: string, key: string): string {
  const m = /^(net\.ipv[46]\.(?:conf|neigh))\.(.+)\.([^.]+)$/.exec(key);
  const rel = m ? `${m[1]!.replace(/\./g, '/')}/${m[2]}/${m[3]}` : key.replace(/\./g, '/');
  return `${root}/${rel}`;
}

// `read` is the shell's own: no process per key (a director check reads ~10 of them).
const READ_FILES = 'while [ $# -gt 1 ]; do v=; if [ -e "$2" ] && { IFS= read -r v || [ -n "$v" ]; } < "$2"; then printf \'%s = %s\\n\' "$1" "$v"; fi; shift 2; done';
const WRITE_FILES = 'while [ $# -gt 1 ]; do printf \'%s\\n\' "$2" > "$1" || exit 1; shift 2; done';

function readOnlyHint(err: unknown): never {
  // procps sysctl reports EROFS as "permission denied on key"; a shell write as "Read-only file system".
  if (err instanceof CommandError && /Read-only file system|permission denied on key/i.test(err.stderr)) {
    throw new Error(`${err.message.trim()} — /proc/sys is read-only here (non-privileged containers get it so): `
      + 'set LVS_PROC_SYS to a read-write mount of the host\'s /proc/sys (the chart mounts /proc/sys/net at /host/proc/sys/net)');
  }
  throw err;
}

/** Map of sysctl key (dotted) to value; keys the kernel does not have are absent. */
export async function readSysctls(run: Runner, keys: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  if (keys.length === 0) return out;
  const root = procSysRoot();
  // -e: unknown keys (e.g. net.ipv4.vs.* before ip_vs is loaded) are skipped, not fatal.
  const { stdout } = root
    ? await run('sh', ['-c', READ_FILES, 'sh', ...keys.flatMap((k) => [k, sysctlPath(root, k)])])
    : await run('sysctl', ['-e', ...keys]);
  for (const line of stdout.split('\n')) {
    const m = /^(\S+)\s*=\s*(.*)$/.exec(line.trim());
    if (m) out.set(m[1]!.replace(/\//g, '.'), m[2]!.trim());
  }
  return out;
}

export async function writeSysctls(run: Runner, entries: ReadonlyArray<readonly [string, string]>): Promise<void> {
  if (entries.length === 0) return;
  const root = procSysRoot();
  await (root
    ? run('sh', ['-c', WRITE_FILES, 'sh', ...entries.flatMap(([k, v]) => [sysctlPath(root, k), v])])
    : run('sysctl', ['-q', '-w', ...entries.map(([k, v]) => `${k}=${v}`)])).catch(readOnlyHint);
}

/**
 * Lines per `ip -batch` process. Each address added to a device walks the device's address list
 * in the kernel, so 10,000 VIP adds in one process took longer under emulation than the runner's
 * 30 s timeout, which killed it half-way (lab/results/director-scale-2026-12-06.txt); in chunks
 * each process stays well inside it and a failure repeats only its chunk's work.
 */
export const IP_BATCH_LINES = 1000;

/** `ip -batch -` of `lines` in chunks of IP_BATCH_LINES, in order; stops at the first failed chunk. */
export async function ipBatch(run: Runner, lines: readonly string[]): Promise<void> {
  for (let i = 0; i < lines.length; i += IP_BATCH_LINES) {
    await run('ip', ['-batch', '-'], { input: lines.slice(i, i + IP_BATCH_LINES).join('\n') + '\n' });
  }
}

/** `VIP/32` or `VIP/128`: the host prefix both roles use for a VIP. */
export function hostPrefix(address: string): string {
  return `${address}/${ipFamily(address) === 4 ? 32 : 128}`;
}
