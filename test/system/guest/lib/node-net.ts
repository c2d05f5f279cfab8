// The VM as one Kubernetes node (runs only inside the test VM). Its root network namespace is the
// node: the agent runs there and is the director. Pods are named network namespaces on a bridge
// `cni0` (10.244.0.1/24, like the bridge CNI plugin: a veth per pod, default route via the
// bridge address). A `client` namespace outside the cluster is attached by its own veth pair
// (node 192.0.2.1, client 192.0.2.10) and routes the VIP range to the node, as an upstream router
// would. The node forwards (ip_forward=1) between the two, as every Kubernetes node does.
//
// Dual-stack: the bridge also has fd00:10:244::1/64 and every pod an IPv6 address on eth0 with a
// default IPv6 route via it; the client has 2001:db8:2::10/64 (node side 2001:db8:2::1) and routes
// the IPv6 VIP range 2001:db8:100::/64 to the node, which forwards IPv6 too. Every IPv6 address
// is added `nodad`: duplicate address detection would leave it tentative (unusable) for a while.
//
// Addresses: documentation ranges for the client and VIPs, 10.244.0.0/24 and fd00:10:244::/64
// for pods: only inside the VM. Everything is one bash script per call (a process spawn costs up to a second under TCG).
import { execFileSync } from 'node:child_process';

export const CNI_BRIDGE = 'cni0';
export const POD_GATEWAY = '10.244.0.1';
export const CLIENT_NS = 'client';
export const CLIENT_IP = '192.0.2.10';
export const NODE_CLIENT_IP = '192.0.2.1';
export const VIP_RANGE = '198.51.100.0/24';
export const POD_GATEWAY6 = 'fd00:10:244::1';
export const CLIENT_IP6 = '2001:db8:2::10';
export const NODE_CLIENT_IP6 = '2001:db8:2::1';
export const VIP_RANGE6 = '2001:db8:100::/64';

export interface PodNet {
  /** network namespace name (/run/netns/<ns>) */
  ns: string;
  ip: string;
  /** the pod's IPv6 address (dual-stack pods), on eth0 beside `ip` */
  ip6?: string;
  /** host-side veth, attached to cni0 (at most 15 characters) */
  veth: string;
}

export function assertInVm(): void {
  if (process.env.LVS_IN_VM !== '1') throw new Error('test/system/guest runs only inside the test VM (LVS_IN_VM=1)');
}

/** Runs a bash script with `set -e -x`; throws with the failing command and its stderr. */
export function bash(script: string): string {
  try {
    return execFileSync('bash', ['-e', '-s'], { input: script, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { status?: number; stderr?: string };
    throw new Error(`bash script exited ${e.status}: ${(e.stderr ?? String(err)).trim().split('\n').slice(-6).join(' | ')}`);
  }
}

export function setupNode(): void {
  assertInVm();
  bash(`
sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
ip link add ${CNI_BRIDGE} type bridge
ip addr add ${POD_GATEWAY}/24 dev ${CNI_BRIDGE}
ip addr add ${POD_GATEWAY6}/64 dev ${CNI_BRIDGE} nodad
ip link set ${CNI_BRIDGE} up
ip netns add ${CLIENT_NS}
ip -n ${CLIENT_NS} link set lo up
ip link add vclient type veth peer name eth0 netns ${CLIENT_NS}
ip addr add ${NODE_CLIENT_IP}/24 dev vclient
ip addr add ${NODE_CLIENT_IP6}/64 dev vclient nodad
ip link set vclient up
ip -n ${CLIENT_NS} addr add ${CLIENT_IP}/24 dev eth0
ip -n ${CLIENT_NS} addr add ${CLIENT_IP6}/64 dev eth0 nodad
ip -n ${CLIENT_NS} link set eth0 up
ip -n ${CLIENT_NS} route add ${VIP_RANGE} via ${NODE_CLIENT_IP}
ip -n ${CLIENT_NS} -6 route add ${VIP_RANGE6} via ${NODE_CLIENT_IP6}
`);
}

/**
 * Pod sandboxes as a CNI bridge plugin makes them (dual-stack when the pod has an `ip6`). Their sysctls start like a typical Linux host
 * (rp_filter=1), so DR/TUN real servers work only once the agent has prepared them.
 */
export function addPods(pods: readonly PodNet[]): void {
  assertInVm();
  bash(pods.map((p) => `
ip netns add ${p.ns}
ip netns exec ${p.ns} sysctl -qw net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.default.rp_filter=1
ip -n ${p.ns} link set lo up
ip link add ${p.veth} type veth peer name eth0 netns ${p.ns}
ip link set ${p.veth} master ${CNI_BRIDGE} up
ip -n ${p.ns} addr add ${p.ip}/24 dev eth0
ip -n ${p.ns} link set eth0 up
ip -n ${p.ns} route add default via ${POD_GATEWAY}
${p.ip6 ? `ip -n ${p.ns} addr add ${p.ip6}/64 dev eth0 nodad
ip -n ${p.ns} -6 route add default via ${POD_GATEWAY6}` : ''}
`).join('\n'));
}

/** Deletes pod sandboxes (their veth pairs go with them). */
export function removePods(pods: readonly PodNet[]): void {
  bash(pods.map((p) => `ip netns del ${p.ns} 2>/dev/null || true`).join('\n'));
}

/** Addresses on `dev` inside `ns`, e.g. the VIP the agent put on lo or tunl0 of a pod. */
export function addressesIn(ns: string | undefined, dev: string): string[] {
  const argv = ns ? ['-n', ns] : [];
  let out: string;
  try {
    out = execFileSync('ip', [...argv, '-j', 'addr', 'show', 'dev', dev], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return [];
  }
  const links = JSON.parse(out || '[]') as Array<{ addr_info?: Array<{ local: string; prefixlen: number }> }>;
  return links.flatMap((l) => (l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`));
}
