// Guest-side helpers for the director and real-server kernel suites (run only inside the test VM):
// one bridged LAN of network namespaces, socat identity servers and clients, ARP probes, and
// ipvsadm counters. Self-contained on purpose (the shared guest lib was not in the tree yet).
// Addresses are documentation ranges and 10.x inside the VM only.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';

export function assertInVm(): void {
  if (process.env.LVS_IN_VM !== '1') throw new Error('kernel guest suites run only inside the test VM (LVS_IN_VM=1)');
}

export function run(argv: string[], input?: string): string {
  const [cmd, ...args] = argv;
  try {
    return execFileSync(cmd!, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { status?: number; stderr?: string };
    throw new Error(`\`${argv.join(' ')}\` exited ${e.status}: ${(e.stderr ?? String(err)).trim()}`);
  }
}

export const inNs = (ns: string, argv: string[]): string => run(['ip', 'netns', 'exec', ns, ...argv]);

export interface HostSpec {
  ns: string;
  /** One veth per LAN, named eth0, eth1, ... in this order, with these addresses (CIDR). */
  links: Array<{ lan: string; addrs: string[] }>;
  routes?: Array<{ to: string; via?: string; dev?: string }>;
  sysctls?: Record<string, string>;
}

/** Bridges "br-<lan>" in the root namespace and one namespace per host; returns destroy(). */
export function buildNet(lans: string[], hosts: HostSpec[]): () => void {
  const destroy = () => {
    for (const h of hosts) try { run(['ip', 'netns', 'del', h.ns]); } catch { /* gone */ }
    for (const lan of lans) try { run(['ip', 'link', 'del', `br-${lan}`]); } catch { /* gone */ }
  };
  destroy();
  for (const lan of lans) {
    run(['ip', 'link', 'add', `br-${lan}`, 'type', 'bridge']);
    run(['ip', 'link', 'set', `br-${lan}`, 'up']);
  }
  for (const h of hosts) {
    run(['ip', 'netns', 'add', h.ns]);
    inNs(h.ns, ['ip', 'link', 'set', 'lo', 'up']);
    for (const [k, v] of Object.entries(h.sysctls ?? {})) inNs(h.ns, ['sysctl', '-qw', `${k}=${v}`]);
    h.links.forEach((l, i) => {
      run(['ip', 'link', 'add', `v-${h.ns}-${i}`, 'type', 'veth', 'peer', 'name', `eth${i}`, 'netns', h.ns]);
      run(['ip', 'link', 'set', `v-${h.ns}-${i}`, 'master', `br-${l.lan}`, 'up']);
      for (const a of l.addrs) inNs(h.ns, ['ip', 'addr', 'add', a, 'dev', `eth${i}`]);
      inNs(h.ns, ['ip', 'link', 'set', `eth${i}`, 'up']);
    });
    for (const r of h.routes ?? []) {
      inNs(h.ns, ['ip', 'route', 'add', r.to, ...(r.via ? ['via', r.via] : []), ...(r.dev ? ['dev', r.dev] : [])]);
    }
  }
  return destroy;
}

const servers = new Set<ChildProcess>();
process.on('exit', () => { for (const s of servers) s.kill('SIGKILL'); });

/**
 * A TCP server in `ns` answering every connection with "<id> <local addr> <peer addr>" as the
 * kernel reports them to socat (SOCAT_SOCKADDR/SOCKPORT, SOCAT_PEERADDR/PEERPORT;
 * no ':' or ',' in the command, socat's address parser would split on them).
 */
export async function startServer(ns: string, id: string, port: number): Promise<ChildProcess> {
  const child = spawn('ip', ['netns', 'exec', ns, 'socat', `TCP-LISTEN:${port},fork,reuseaddr`,
    `SYSTEM:echo ${id} $SOCAT_SOCKADDR $SOCAT_SOCKPORT $SOCAT_PEERADDR $SOCAT_PEERPORT`], { stdio: 'ignore' });
  servers.add(child);
  for (let i = 0; i < 100; i++) {
    if (inNs(ns, ['ss', '-Hltn', `sport = :${port}`]).trim()) return child;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server ${id} in ${ns} not listening on ${port}`);
}

export function stopServers(): void {
  for (const s of servers) s.kill('SIGKILL');
  servers.clear();
}

export interface Reply { id: string; local: string; peer: string }

/** One TCP connection from `ns`; the server's reply, or an Error (timeout, refused). */
export function request(ns: string, host: string, port: number, timeoutSec = 3): Reply | Error {
  try {
    const out = inNs(ns, ['socat', `-T${timeoutSec}`, '-u', `TCP:${host}:${port},connect-timeout=${timeoutSec}`, '-']).trim();
    const [id = '', laddr, lport, paddr, pport] = out.split(/\s+/);
    return id && pport ? { id, local: `${laddr}:${lport}`, peer: `${paddr}:${pport}` } : new Error(`bad reply ${JSON.stringify(out)}`);
  } catch (err) {
    return err as Error;
  }
}

export function requests(ns: string, host: string, port: number, count: number): { byId: Record<string, number>; replies: Reply[]; errors: string[] } {
  const byId: Record<string, number> = {};
  const replies: Reply[] = [];
  const errors: string[] = [];
  for (let i = 0; i < count; i++) {
    const r = request(ns, host, port);
    if (r instanceof Error) errors.push(r.message);
    else { replies.push(r); byId[r.id] = (byId[r.id] ?? 0) + 1; }
  }
  return { byId, replies, errors };
}

/** Values of `keys` in `ns`, one `sysctl` process. */
export function sysctls(ns: string, keys: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of inNs(ns, ['sysctl', ...keys]).split('\n')) {
    const m = /^(\S+) = (.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

export function macOf(ns: string, dev: string): string {
  return (JSON.parse(inNs(ns, ['ip', '-j', 'link', 'show', 'dev', dev])) as Array<{ address: string }>)[0]!.address;
}

/**
 * Ask the LAN who has `ip` the way the kernel does: make `ip` on-link for `ns`, send one UDP
 * datagram (the kernel ARPs for it), wait, and read the neighbour entry. Returns the MAC that
 * answered, or undefined when nobody did.
 */
export async function arpProbe(ns: string, ip: string, waitMs = 2500): Promise<string | undefined> {
  inNs(ns, ['ip', 'neigh', 'flush', 'dev', 'eth0']);
  try { inNs(ns, ['ip', 'route', 'add', `${ip}/32`, 'dev', 'eth0']); } catch { /* already there */ }
  try {
    run(['sh', '-c', `echo x | ip netns exec ${ns} socat -u - UDP-SENDTO:${ip}:9`]);
    await new Promise((r) => setTimeout(r, waitMs));
    const entries = JSON.parse(inNs(ns, ['ip', '-j', 'neigh', 'show', 'to', ip, 'dev', 'eth0']) || '[]') as Array<{ lladdr?: string; state?: string[] }>;
    return entries.find((e) => e.lladdr && !(e.state ?? []).includes('FAILED'))?.lladdr;
  } finally {
    inNs(ns, ['ip', 'route', 'del', `${ip}/32`, 'dev', 'eth0']);
  }
}

export interface Counters { conns: number; inPkts: number; outPkts: number }

/**
 * `ipvsadm -Ln --stats --exact` in `ns`: counters of the service at `address` (198.51.100.10:80).
 * On this kernel the exported counters are folded in from per-CPU counters by the rate estimator,
 * which runs every 2 s, so a reading waits 2.5 s to include the traffic just sent.
 */
export async function ipvsCounters(ns: string, address: string): Promise<Counters | undefined> {
  await new Promise((r) => setTimeout(r, 2500));
  for (const line of inNs(ns, ['ipvsadm', '-Ln', '--stats', '--exact']).split('\n')) {
    const m = /^(TCP|UDP|SCTP)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)/.exec(line);
    if (m && m[2] === address) return { conns: Number(m[3]), inPkts: Number(m[4]), outPkts: Number(m[5]) };
  }
  return undefined;
}

export function timed<T>(label: string, fn: () => T): T {
  const t0 = Date.now();
  const out = fn();
  console.log(`# ${label}: ${Date.now() - t0} ms`);
  return out;
}
