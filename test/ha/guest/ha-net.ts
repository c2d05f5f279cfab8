// Topology and kernel knobs of the two-director failover suite (test/ha/guest/failover.guest.ts).
//
//   lan  192.0.2.0/24  client .10, d1 .2, d2 .3, rs1 .21, rs2 .22 (DR/TUN real servers);
//                      VIP 192.0.2.100 on both directors' lvs0 (put there by lvs-agent, ARP-silent)
//   back 10.0.0.0/24   d1 .2, d2 .3, nrs1 .21, nrs2 .22 (NAT real servers); 10.0.0.1 is the
//                      shared gateway address the NAT real servers route through. Nobody holds
//                      it: like the VIP, which director it reaches is a static neighbour entry.
//
// Which director is active is decided by the test, with permanent neighbour entries: the
// client's for the VIP (d1's or d2's lan MAC) and the NAT real servers' for the gateway (the same
// director's back MAC). That stands for the gratuitous ARP a VRRP/keepalived takeover sends.
import { nsRun, nsSh, run, createTopology, type Topology } from '../../../lab/guest/netns.ts';
import { parseConnections } from '../../../lab/guest/agent-net.ts';

export const VIP = '192.0.2.100';
export const CLIENT = '192.0.2.10';
export const GATEWAY = '10.0.0.1';
export const DIRECTORS = ['d1', 'd2'] as const;
export type Director = typeof DIRECTORS[number];
export const PORTS = { DR: 8080, TUN: 8081, NAT: 8082, SNAT: 8083 } as const;
export type Method = keyof typeof PORTS;
export const SYNC_ID = 7;
export const SYNC_PORT = 8848; // IPVS sync multicast 224.0.0.81:8848 (+ syncid for >1 sync thread; one here)

export function haTopology(): Topology {
  const director = (ns: Director, host: number) => ({
    ns, forwarding: true,
    links: [{ lan: 'lan', addrs: [`192.0.2.${host}/24`] }, { lan: 'back', addrs: [`10.0.0.${host}/24`] }],
  });
  const topo = createTopology({
    lans: ['lan', 'back'],
    hosts: [
      { ns: 'client', links: [{ lan: 'lan', addrs: [`${CLIENT}/24`] }] },
      director('d1', 2),
      director('d2', 3),
      { ns: 'rs1', links: [{ lan: 'lan', addrs: ['192.0.2.21/24'] }] },
      { ns: 'rs2', links: [{ lan: 'lan', addrs: ['192.0.2.22/24'] }] },
      { ns: 'nrs1', links: [{ lan: 'back', addrs: ['10.0.0.21/24'] }], routes: [{ to: 'default', via: GATEWAY }] },
      { ns: 'nrs2', links: [{ lan: 'back', addrs: ['10.0.0.22/24'] }], routes: [{ to: 'default', via: GATEWAY }] },
    ],
  });
  // Sync counters: every sync datagram a director sends (output) and receives (input).
  const nft = [
    'add table inet hasync',
    'add chain inet hasync out { type filter hook output priority 0; }',
    'add chain inet hasync in { type filter hook input priority 0; }',
    `add rule inet hasync out udp dport ${SYNC_PORT} counter`,
    `add rule inet hasync in udp dport ${SYNC_PORT} counter`,
  ].join('\n') + '\n';
  for (const d of DIRECTORS) run(['ip', 'netns', 'exec', d, 'nft', '-f', '-'], { input: nft });
  return topo;
}

export interface Macs { lan: Record<Director, string>; back: Record<Director, string> }

export function directorMacs(): Macs {
  const mac = (ns: string, dev: string) => (JSON.parse(nsRun(ns, ['ip', '-j', 'link', 'show', 'dev', dev])) as Array<{ address: string }>)[0]!.address;
  return { lan: { d1: mac('d1', 'eth0'), d2: mac('d2', 'eth0') }, back: { d1: mac('d1', 'eth1'), d2: mac('d2', 'eth1') } };
}

/** Makes `d` the active director: the client's VIP entry and the NAT real servers' gateway entry. */
export function switchTo(macs: Macs, d: Director): void {
  run(['bash', '-e', '-s'], {
    input: [
      `ip -n client neigh replace ${VIP} lladdr ${macs.lan[d]} dev eth0 nud permanent`,
      ...['nrs1', 'nrs2'].map((ns) => `ip -n ${ns} neigh replace ${GATEWAY} lladdr ${macs.back[d]} dev eth0 nud permanent`),
    ].join('\n') + '\n',
  });
}

export interface SyncSettings { threshold: string; refreshPeriod: number; version: 0 | 1 }
export const SYNC_DEFAULTS: SyncSettings = { threshold: '3 50', refreshPeriod: 0, version: 1 };

export function setSync(s: SyncSettings): void {
  for (const d of DIRECTORS) {
    nsRun(d, ['sysctl', '-qw', `net.ipv4.vs.sync_threshold=${s.threshold}`, `net.ipv4.vs.sync_refresh_period=${s.refreshPeriod}`, `net.ipv4.vs.sync_version=${s.version}`]);
  }
}

/** Starts the kernel's sync daemons of `d` (`roles` in order) on eth0 with one sync id. */
export function startSyncDaemons(d: Director, roles: Array<'master' | 'backup'> = ['master', 'backup']): string {
  return nsSh(d, roles.map((r) => `ipvsadm --start-daemon ${r} --mcast-interface eth0 --syncid ${SYNC_ID}`).join('\n') + '\nipvsadm -L --daemon\n');
}

export function stopSyncDaemons(d: Director): string {
  // `--stop-daemon` of a role that is not running exits 255 ("No daemon is running").
  return nsSh(d, 'ipvsadm --stop-daemon master || true\nipvsadm --stop-daemon backup || true\nipvsadm -L --daemon\n');
}

export interface SyncCounters { outPackets: number; outBytes: number; inPackets: number; inBytes: number }

export function syncCounters(d: Director): SyncCounters {
  const text = nsRun(d, ['nft', 'list', 'table', 'inet', 'hasync']);
  const chain = (name: string) => {
    const m = new RegExp(`chain ${name} \\{[^}]*counter packets (\\d+) bytes (\\d+)`).exec(text);
    if (!m) throw new Error(`no sync counter in chain ${name} of ${d}:\n${text}`);
    return [Number(m[1]), Number(m[2])] as const;
  };
  const [outPackets, outBytes] = chain('out');
  const [inPackets, inBytes] = chain('in');
  return { outPackets, outBytes, inPackets, inBytes };
}

export function counterDelta(a: SyncCounters, b: SyncCounters): SyncCounters {
  return { outPackets: b.outPackets - a.outPackets, outBytes: b.outBytes - a.outBytes, inPackets: b.inPackets - a.inPackets, inBytes: b.inBytes - a.inBytes };
}

/**
 * Of the client's connections from `ports` to VIP:port, how many `d`'s table holds ESTABLISHED.
 * Counted by source port: an earlier stream run to the same port leaves entries that a backup
 * learns only ~2 s later have ended (the master sends a partly filled buffer after ~2 s), and
 * counting those once let a failover begin before this run's connections were on the backup.
 */
export function establishedConns(d: Director, port: number, ports: readonly number[]): { ours: number; others: number } {
  const sources = new Set(ports.map((p) => `${CLIENT}:${p}`));
  const est = parseConnections(nsRun(d, ['ipvsadm', '-Lnc']))
    .filter((c) => c.virtual === `${VIP}:${port}` && c.source.startsWith(`${CLIENT}:`) && c.state === 'ESTABLISHED');
  const ours = est.filter((c) => sources.has(c.source)).length;
  return { ours, others: est.length - ours };
}

/**
 * Polls until `d` holds every one of the client's connections from `ports` to VIP:port
 * established: the ms it took (undefined after `timeoutMs`), and the most ESTABLISHED entries of
 * other (earlier) client connections to VIP:port seen meanwhile.
 */
export async function waitConns(d: Director, port: number, ports: readonly number[], timeoutMs: number): Promise<{ ms?: number; others: number }> {
  const t0 = Date.now();
  let others = 0;
  while (Date.now() - t0 < timeoutMs) {
    const held = establishedConns(d, port, ports);
    others = Math.max(others, held.others);
    if (ports.length > 0 && held.ours >= ports.length) return { ms: Date.now() - t0, others };
    await sleep(150);
  }
  return { others };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
