// Guest-side helpers (run only inside the test VM): commands, network namespaces and a small
// topology builder. Each "lan" is a bridge in the guest's root namespace; each host is a network
// namespace attached to its lans by veth pairs (eth0, eth1, ... in the order of `links`). The root
// namespace keeps no addresses, so traffic only flows between the namespaces built here.
//
//   const topo = natTopology({ realServers: 2 });   // or createTopology({ lans, hosts })
//   topo.exec('director', ['ipvsadm', '-Ln']);        // = nsRun
//   topo.destroy();                                  // deletes namespaces and bridges
//
// Addresses: documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) for clients and
// VIPs, 10.x for real-server networks; never anything that could exist outside the VM.
import { execFileSync } from 'node:child_process';

/** Throws unless running inside the harness VM: these helpers reconfigure networking as root. */
export function assertInVm(): void {
  if (process.env.LVS_IN_VM !== '1') throw new Error('test/kernel/guest helpers run only inside the test VM (LVS_IN_VM=1)');
}

export class CommandError extends Error {
  readonly argv: string[];
  readonly status: number | undefined;
  readonly stderr: string;
  constructor(message: string, argv: string[], status: number | undefined, stderr: string) {
    super(message);
    this.argv = argv;
    this.status = status;
    this.stderr = stderr;
  }
}

/** Runs argv, returns stdout; throws CommandError (command, status, stderr) on a non-zero exit. */
export function run(argv: string[], opts: { input?: string } = {}): string {
  const [cmd, ...args] = argv;
  if (!cmd) throw new Error('run: empty argv');
  try {
    // 256 MiB: `ipvsadm -Ln` of 20,000 destinations is over a MiB, execFileSync's default cap.
    return execFileSync(cmd, args, { encoding: 'utf8', input: opts.input, stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 256 << 20 });
  } catch (err) {
    const e = err as { status?: number | null; signal?: string | null; stderr?: string; stdout?: string };
    const stderr = e.stderr ?? '';
    throw new CommandError(`\`${argv.join(' ')}\` exited ${e.status ?? `by ${e.signal ?? 'an unknown cause'}`}: ${(stderr || e.stdout || String(err)).trim()}`, argv, e.status ?? undefined, stderr);
  }
}

/** Runs a bash script (set -e, read from stdin so errors stay short), returns stdout. */
export const sh = (script: string): string => run(['bash', '-e', '-s'], { input: script });

/** Runs argv inside network namespace `ns` (ip netns exec), returns stdout. */
export const nsRun = (ns: string, argv: string[]): string => run(['ip', 'netns', 'exec', ns, ...argv]);

export function sysctl(ns: string, key: string, value: string | number): void {
  nsRun(ns, ['sysctl', '-qw', `${key}=${value}`]);
}

export interface LinkSpec {
  lan: string; // bridge to attach to
  addrs: string[]; // CIDRs, first one primary, e.g. ['192.0.2.1/24', '198.51.100.10/32']
}

export interface HostSpec {
  ns: string; // namespace name, at most 10 characters of [a-z0-9]
  links: LinkSpec[]; // become eth0, eth1, ...
  routes?: Array<{ to: string; via: string }>; // to may be 'default'
  forwarding?: boolean; // net.ipv4.ip_forward=1
}

export interface TopologySpec { lans: string[]; hosts: HostSpec[] }

export interface Topology {
  spec: TopologySpec;
  exec(ns: string, argv: string[]): string;
  /** Name of the interface `ns` has on `lan` (eth0, eth1, ...). */
  ifname(ns: string, lan: string): string;
  destroy(): void;
}

function checkSpec(spec: TopologySpec): void {
  for (const lan of spec.lans) if (!/^[a-z0-9]{1,12}$/.test(lan)) throw new Error(`topology: lan name ${JSON.stringify(lan)} must be 1-12 of [a-z0-9]`);
  const seen = new Set<string>();
  for (const h of spec.hosts) {
    if (!/^[a-z0-9]{1,10}$/.test(h.ns)) throw new Error(`topology: host ns ${JSON.stringify(h.ns)} must be 1-10 of [a-z0-9]`);
    if (seen.has(h.ns)) throw new Error(`topology: host ns ${h.ns} defined twice`);
    seen.add(h.ns);
    for (const l of h.links) if (!spec.lans.includes(l.lan)) throw new Error(`topology: host ${h.ns} links to unknown lan ${l.lan}`);
  }
}

const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Runs a bash script (set -e) inside network namespace `ns`, returns stdout. */
export const nsSh = (ns: string, script: string): string => run(['ip', 'netns', 'exec', ns, 'bash', '-e', '-s'], { input: script });

// Spawning a process from Node costs up to a second under TCG, so the whole topology is one
// bash script (bash forks cheaply) rather than one spawn per `ip` command.
function topologyScript(spec: TopologySpec): string {
  const lines: string[] = [];
  for (const lan of spec.lans) lines.push(`ip link add br-${lan} type bridge`, `ip link set br-${lan} up`);
  for (const h of spec.hosts) {
    const n = `ip -n ${h.ns}`;
    lines.push(`ip netns add ${h.ns}`, `${n} link set lo up`);
    // IPv6 addresses would stay tentative (unusable) for DAD's ~1-2 s: devices made from here on
    // in this namespace skip DAD, as nothing else on these private lans can hold their addresses.
    if (h.links.some((l) => l.addrs.some((a) => a.includes(':')))) lines.push(`ip netns exec ${h.ns} sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0`);
    h.links.forEach((link, i) => {
      const outer = `v-${h.ns}-${i}`; // root-namespace end, attached to the lan's bridge
      lines.push(`ip link add ${outer} type veth peer name eth${i} netns ${h.ns}`, `ip link set ${outer} master br-${link.lan} up`);
      for (const a of link.addrs) lines.push(`${n} addr add ${shq(a)} dev eth${i}`);
      lines.push(`${n} link set eth${i} up`);
    });
    if (h.forwarding) lines.push(`ip netns exec ${h.ns} sysctl -qw net.ipv4.ip_forward=1`);
    for (const r of h.routes ?? []) lines.push(`${n} route add ${shq(r.to)} via ${shq(r.via)}`);
  }
  // set -e stops at the first failure; -x on stderr names the command that failed.
  return `set -x\n${lines.join('\n')}\n`;
}

/** Builds bridges, namespaces, veth pairs, addresses and routes; on failure removes what it built. */
export function createTopology(spec: TopologySpec): Topology {
  assertInVm();
  checkSpec(spec);
  const topo: Topology = {
    spec,
    exec: nsRun,
    ifname(ns, lan) {
      const i = spec.hosts.find((h) => h.ns === ns)?.links.findIndex((l) => l.lan === lan) ?? -1;
      if (i < 0) throw new Error(`topology: ${ns} has no link on ${lan}`);
      return `eth${i}`;
    },
    destroy() {
      // Deleting a namespace deletes its veth ends, and with them the peers on the bridges.
      run(['bash', '-c', [...spec.hosts.map((h) => `ip netns del ${h.ns}`), ...spec.lans.map((l) => `ip link del br-${l}`)]
        .map((c) => `${c} 2>/dev/null`).join('\n') + '\ntrue']);
    },
  };
  try {
    sh(topologyScript(spec));
  } catch (err) {
    topo.destroy();
    // Keep the failing command (the last `set -x` trace line) and its error, not the whole trace.
    const lines = (err instanceof CommandError ? err.stderr : String(err)).trim().split('\n');
    const failed = lines.filter((l) => l.startsWith('+ ')).at(-1) ?? '';
    throw new Error(`topology: ${failed.slice(2)}: ${lines.filter((l) => !l.startsWith('+ ')).join(' ').trim()}`);
  }
  return topo;
}

export interface NatTopology extends Topology {
  vip: string; // 198.51.100.10, on the director's front interface
  clientAddr: string; // 192.0.2.10
  directorFront: string; // 192.0.2.1
  directorBack: string; // 10.0.0.1, the real servers' default gateway
  realServers: Array<{ ns: string; addr: string }>; // rs1 10.0.0.11, rs2 10.0.0.12, ...
}

/**
 * The classic LVS-NAT layout: client (lan "front", 192.0.2.0/24) -> director (front + lan "back",
 * 10.0.0.0/24, forwarding on) -> real servers rs1..rsN on "back" whose default route is the
 * director, so replies pass back through it to be un-NATed. The VIP must be local on the
 * director: IPVS takes packets for a virtual service at LOCAL_IN.
 */
export function natTopology(opts: { realServers: number }): NatTopology {
  const vip = '198.51.100.10';
  const realServers = Array.from({ length: opts.realServers }, (_, i) => ({ ns: `rs${i + 1}`, addr: `10.0.0.${11 + i}` }));
  const topo = createTopology({
    lans: ['front', 'back'],
    hosts: [
      { ns: 'client', links: [{ lan: 'front', addrs: ['192.0.2.10/24'] }], routes: [{ to: 'default', via: '192.0.2.1' }] },
      {
        ns: 'director', forwarding: true,
        links: [{ lan: 'front', addrs: ['192.0.2.1/24', `${vip}/32`] }, { lan: 'back', addrs: ['10.0.0.1/24'] }],
      },
      ...realServers.map((rs) => ({
        ns: rs.ns, links: [{ lan: 'back', addrs: [`${rs.addr}/24`] }], routes: [{ to: 'default', via: '10.0.0.1' }],
      })),
    ],
  });
  return { ...topo, vip, clientAddr: '192.0.2.10', directorFront: '192.0.2.1', directorBack: '10.0.0.1', realServers };
}
