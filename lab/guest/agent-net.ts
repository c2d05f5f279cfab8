// Guest-side network helpers of the agent scenarios: the director topology the agent is run in,
// socat-based traffic for cases the Node identity client does not cover (many source addresses in
// one process, a connection held open and driven from the test), and kernel snapshots.
//
// Topology (all addresses exist only inside the VM):
//   lan front 192.0.2.0/24   client .10 (+ .100.. extra sources), director .1, dsrN .20+N
//   lan back  172.16.0.0/24  director .1, rsN .1+N (rs1 = .2, rs2 = .3: the seeds' real servers),
//                            rsnat .9, dsrN .20+N
// The director has no VIP anywhere: the agent binds VIPs on lvs0, which is not ARP-announced, so
// the client routes every VIP through 192.0.2.1. Forwarding is left off in the director: turning
// it on for NAT is the agent's job. rsN route through the director (NAT return path Gateway);
// rsnat's default route points at 172.16.0.254, a host that does not exist, so only a director
// that source-NATs gets its replies back; dsrN answer clients directly on front (DR/TUN).
import { spawn, type ChildProcess } from 'node:child_process';
import { ipvsStats, type IpvsServiceStats } from './ipvsadm.ts';
import { createTopology, nsSh, type HostSpec, type Topology } from './netns.ts';
import { startServer, type ServerHandle, type ServerOptions } from './traffic.ts';

export const CLIENT = '192.0.2.10';
export const DIRECTOR_FRONT = '192.0.2.1';
export const DIRECTOR_BACK = '172.16.0.1';

export interface AgentTopologyOptions {
  /** Real servers rs1..rsN (172.16.0.2..), default route via the director. At most 6. */
  gateways: number;
  /** rsnat (172.16.0.9), whose default route does not go through the director. */
  snat?: boolean;
  /** dsr1..dsrN: 192.0.2.20+N on front (DR) and 172.16.0.20+N on back (TUN). */
  direct?: number;
  /** Extra client source addresses 192.0.2.100.. */
  clientSources?: number;
}

export interface AgentTopology extends Topology {
  gateways: Array<{ ns: string; addr: string }>;
  snat?: { ns: string; addr: string };
  direct: Array<{ ns: string; front: string; back: string }>;
  clientSources: string[];
}

export function agentTopology(opts: AgentTopologyOptions): AgentTopology {
  if (opts.gateways > 6) throw new Error('agentTopology: at most 6 gateway real servers (172.16.0.2-7)');
  const gateways = Array.from({ length: opts.gateways }, (_, i) => ({ ns: `rs${i + 1}`, addr: `172.16.0.${2 + i}` }));
  const snat = opts.snat ? { ns: 'rsnat', addr: '172.16.0.9' } : undefined;
  const direct = Array.from({ length: opts.direct ?? 0 }, (_, i) => ({ ns: `dsr${i + 1}`, front: `192.0.2.${21 + i}`, back: `172.16.0.${21 + i}` }));
  const clientSources = Array.from({ length: opts.clientSources ?? 0 }, (_, i) => `192.0.2.${100 + i}`);
  const hosts: HostSpec[] = [
    { ns: 'client', links: [{ lan: 'front', addrs: [`${CLIENT}/24`, ...clientSources.map((a) => `${a}/24`)] }], routes: [{ to: 'default', via: DIRECTOR_FRONT }] },
    { ns: 'director', links: [{ lan: 'front', addrs: [`${DIRECTOR_FRONT}/24`] }, { lan: 'back', addrs: [`${DIRECTOR_BACK}/24`] }] },
    ...gateways.map((rs) => ({ ns: rs.ns, links: [{ lan: 'back', addrs: [`${rs.addr}/24`] }], routes: [{ to: 'default', via: DIRECTOR_BACK }] })),
    ...(snat ? [{ ns: snat.ns, links: [{ lan: 'back', addrs: [`${snat.addr}/24`] }], routes: [{ to: 'default', via: '172.16.0.254' }] }] : []),
    ...direct.map((rs) => ({ ns: rs.ns, links: [{ lan: 'front', addrs: [`${rs.front}/24`] }, { lan: 'back', addrs: [`${rs.back}/24`] }] })),
  ];
  const topo = createTopology({ lans: ['front', 'back'], hosts });
  return { ...topo, gateways, ...(snat ? { snat } : {}), direct, clientSources };
}

/**
 * Per-connection (per-datagram) patience of the traffic clients. The lib's default, 5 s, is
 * plenty on an idle host, but a loaded 2-core host running several TCG guests slows a forked
 * server's answer well past it; a missing answer then looks like a forwarding failure.
 */
export const CONNECT_TIMEOUT_MS = 20_000;

/**
 * startServer() from the shared lib, retried: its readiness limit is a fixed 30 s, which a Node
 * start under TCG can exceed on a loaded host (the retry starts with a warm page cache).
 */
export async function startServerPatiently(ns: string, opts: ServerOptions, attempts = 3): Promise<ServerHandle> {
  for (let i = 1; ; i++) {
    try {
      return await startServer(ns, opts);
    } catch (err) {
      if (i >= attempts || !/not ready after/.test((err as Error).message)) throw err;
      console.log(`\n# server ${opts.id} in ${ns} was not ready in time (attempt ${i}/${attempts}); starting it again`);
    }
  }
}

export interface Target { host: string; port: number; bind?: string }

/**
 * One short TCP connection per target, in order, from namespace `ns`, by socat in one bash
 * process; returns the first line each server sent ('' when the connection failed). The client
 * half-closes at once (stdin is empty) and waits for the server to finish; the generous timeouts
 * are for a loaded host, where a forked server under TCG can take seconds to greet.
 */
export function burst(ns: string, targets: readonly Target[]): string[] {
  const lines = targets.map((t) => {
    const bind = t.bind ? `,bind=${t.bind}` : '';
    return `r=$(socat -t30 -T30 - TCP:${t.host}:${t.port},connect-timeout=30${bind} </dev/null 2>/dev/null | head -n 1) || r=\nprintf '%s\\n' "$r"`;
  });
  const out = nsSh(ns, lines.join('\n') + '\n').split('\n');
  return targets.map((_, i) => out[i] ?? '');
}

const children = new Set<ChildProcess>();
process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); });

/**
 * A line-echo server with an identity: every connection first receives "<id>\n", then each line
 * it sends comes back. socat forks one `cat` per connection, so connections can stay open as long
 * as the test likes (what the drain and restart scenarios need).
 */
export async function startEchoServer(ns: string, id: string, port: number): Promise<void> {
  const child = spawn('ip', ['netns', 'exec', ns, 'socat', `TCP-LISTEN:${port},fork,reuseaddr,backlog=64`, `SYSTEM:echo ${id}; exec cat`], { stdio: 'ignore' });
  children.add(child);
  nsSh(ns, `end=$((SECONDS + 120))\nwhile [ $SECONDS -lt $end ]; do ss -Hltn 'sport = :${port}' | grep -q . && exit 0; sleep 0.2; done\necho 'echo server ${id} not listening on ${port}' >&2; exit 1\n`);
}

export function stopEchoServers(): void {
  for (const c of children) c.kill('SIGKILL');
  children.clear();
}

/**
 * One TCP connection from `ns`, kept open by a socat process the test drives line by line. It is
 * opened with SO_LINGER 0, so reset() (killing socat) makes the kernel end it with a RST.
 */
export interface HeldConnection {
  /** The identity the server greeted with. */
  readonly server: string;
  /** Sends one line and resolves with the line that comes back. */
  send(line: string, timeoutMs?: number): Promise<string>;
  /** Ends the connection with a RST and resolves when socat is gone. */
  reset(): Promise<void>;
}

export function holdConnection(ns: string, host: string, port: number, timeoutMs = 60_000): Promise<HeldConnection> {
  const child = spawn('ip', ['netns', 'exec', ns, 'socat', '-', `TCP:${host}:${port},connect-timeout=10,linger=0`], { stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  const received: string[] = [];
  let partial = '';
  let err = '';
  let closed = false;
  const waiters = new Set<() => void>();
  child.stdout!.setEncoding('utf8').on('data', (s: string) => {
    const parts = (partial + s).split('\n');
    partial = parts.pop() ?? '';
    received.push(...parts);
    for (const w of [...waiters]) w();
  });
  child.stderr!.setEncoding('utf8').on('data', (s: string) => { err += s; });
  const gone = new Promise<void>((resolve) => child.on('close', () => { closed = true; children.delete(child); for (const w of [...waiters]) w(); resolve(); }));
  const nextLine = (ms: number) => new Promise<string>((resolve, reject) => {
    const check = () => {
      const line = received.shift();
      if (line !== undefined) { done(); resolve(line); } else if (closed) { done(); reject(new Error(`held connection to ${host}:${port} closed: ${err.trim()}`)); }
    };
    const timer = setTimeout(() => { done(); reject(new Error(`held connection to ${host}:${port}: no line in ${ms} ms ${err.trim()}`)); }, ms);
    const done = () => { clearTimeout(timer); waiters.delete(check); };
    waiters.add(check);
    check();
  });
  return nextLine(timeoutMs).then((server) => ({
    server,
    async send(line, ms = 60_000) {
      child.stdin!.write(`${line}\n`);
      return nextLine(ms);
    },
    async reset() {
      child.kill('SIGKILL');
      await gone;
    },
  }));
}

export interface KernelSnapshot {
  /** `ipvsadm -S -n`: every rule, byte for byte. */
  save: string;
  /** `ip -br addr show dev lvs0` ('' without lvs0). */
  lvs0: string;
  /** `nft list ruleset`. */
  nft: string;
}

const SEP = '@@snapshot@@';

/** The director's IPVS rules, VIP device and nft ruleset, read by one bash process. */
export function kernelSnapshot(ns: string): KernelSnapshot {
  const out = nsSh(ns, `ipvsadm -S -n\necho ${SEP}\nip -br addr show dev lvs0 2>/dev/null || true\necho ${SEP}\nnft list ruleset\n`);
  const [save = '', lvs0 = '', nft = ''] = out.split(`${SEP}\n`);
  return { save, lvs0, nft };
}

/** Lines of `ipvsadm -S -n` that belong to services on `vip`. */
export function rulesOf(save: string, vip: string): string[] {
  return save.split('\n').filter((l) => l.includes(` ${vip}:`));
}

/**
 * `ipvsadm -Ln --stats --exact` once the counters have settled. The kernel sums its per-CPU
 * counters into the totals it reports from the rate estimator's timer (every 2 s), so a read
 * right after traffic can miss the last connections; read until two reads 2.5 s apart agree.
 */
export async function settledStats(ns: string, timeoutMs = 60_000): Promise<IpvsServiceStats[]> {
  const deadline = Date.now() + timeoutMs;
  let last = ipvsStats(ns);
  for (;;) {
    await new Promise((r) => setTimeout(r, 2500));
    const now = ipvsStats(ns);
    if (JSON.stringify(now) === JSON.stringify(last)) return now;
    if (Date.now() > deadline) throw new Error(`IPVS counters of ${ns} still moving after ${timeoutMs} ms`);
    last = now;
  }
}

export interface IpvsConnEntry { proto: string; expire: string; state: string; source: string; virtual: string; destination: string }

/** Pure: parses `ipvsadm -Lnc` (the connection table; a persistence template has source port 0). */
export function parseConnections(text: string): IpvsConnEntry[] {
  const out: IpvsConnEntry[] = [];
  for (const line of text.split('\n')) {
    const m = /^(TCP|UDP|SCTP|IP)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$/.exec(line);
    if (m) out.push({ proto: m[1]!, expire: m[2]!, state: m[3]!, source: m[4]!, virtual: m[5]!, destination: m[6]! });
  }
  return out;
}

/** Pure: PersistConn per destination from `ipvsadm -Ln --persistent-conn`, keyed "service -> dest". */
export function parsePersistentConns(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  let service = '';
  for (const line of text.split('\n')) {
    const s = /^(TCP|UDP|SCTP|FWM)\s+(\S+)/.exec(line);
    if (s) { service = `${s[1]} ${s[2]}`; continue; }
    // "  -> 172.16.0.2:1020   1   1   0   20": address, weight, persistent, active, inactive.
    const d = /^\s+->\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/.exec(line);
    if (d && service) out[`${service} -> ${d[1]}`] = Number(d[3]);
  }
  return out;
}
