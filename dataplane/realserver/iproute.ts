// Reading and writing the bits of a network namespace that director and real-server
// preparation touch: links with their addresses (`ip -j -d addr show`), and sysctls (`sysctl`).
// Shared by dataplane/director and dataplane/realserver; every call goes through a Runner that is
// already bound to the target namespace (see inNetns in ../exec.ts).
import { isIPv4, isIPv6 } from 'node:net';
import { CommandError, type Runner } from '../exec.ts';

export interface AddrInfo {
  family: 4 | 6;
  address: string;
  prefixLen: number;
  /** global | host | link | ... */
  scope: string;
  /** IPv4 address label (e.g. "lo:lvs"); absent for IPv6. */
  label?: string;
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
export function canonicalIp(text: string): string | undefined {
  if (isIPv4(text)) return text.split('.').map((o) => String(Number(o))).join('.');
  if (isIPv6(text) && !text.includes('%')) return new URL(`http://[${text}]/`).hostname.slice(1, -1);
  return undefined;
}

export function ipFamily(address: string): 4 | 6 {
  return address.includes(':') ? 6 : 4;
}

interface RawAddr { family?: string; local?: string; prefixlen?: number; scope?: string; label?: string }
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

/** Map of sysctl key (dotted) to value; keys the kernel does not have are absent. */
export async function readSysctls(run: Runner, keys: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  if (keys.length === 0) return out;
  // -e: unknown keys (e.g. net.ipv4.vs.* before ip_vs is loaded) are skipped, not fatal.
  const { stdout } = await run('sysctl', ['-e', ...keys]);
  for (const line of stdout.split('\n')) {
    const m = /^(\S+)\s*=\s*(.*)$/.exec(line.trim());
    if (m) out.set(m[1]!.replace(/\//g, '.'), m[2]!.trim());
  }
  return out;
}

export async function writeSysctls(run: Runner, entries: ReadonlyArray<readonly [string, string]>): Promise<void> {
  if (entries.length === 0) return;
  await run('sysctl', ['-q', '-w', ...entries.map(([k, v]) => `${k}=${v}`)]);
}

/** `VIP/32` or `VIP/128`: the host prefix both roles use for a VIP. */
export function hostPrefix(address: string): string {
  return `${address}/${ipFamily(address) === 4 ? 32 : 128}`;
}
