// Guest side: the convergence benchmark's second reporting director (issue 14: "two directors
// reporting"). The host registers a second Node (lvs-node-2, labelled a director like the first),
// so the controller directs every VirtualServer to both nodes: every plan slice names two
// directors, both agents sync every change and write their AgentReports, and the controller
// folds two reports into each VirtualServer's status. The second node is a network namespace of
// this VM with its own IPVS table, lvs0 and nft tables (all per namespace), running the same agent
// bundle with its own identity (a token bound to a pod on lvs-node-2) and state file. It reaches
// the apiserver (10.0.2.100, qemu's guestfwd) over a veth masqueraded by the VM's root namespace,
// as test/ha/guest/cluster-election.guest.ts does; its pod routes come from a dummy device.
//
// The changes are still timed on the first director's kernel only; the second adds what a second
// director costs the first and the controller on the same CPUs (under TCG both agents share the
// VM's two vCPUs, which real directors would not).
import { performance } from 'node:perf_hooks';
import { startAgent, type AgentProc } from '../../lab/guest/agent.ts';
import { sh } from '../../lab/guest/netns.ts';
import { ENDPOINTS, POD_CIDR_GATEWAY } from './layout.ts';

export const SECOND_NETNS = 'director2';
const STATE_FILE = '/run/lvs-agent/director2-cluster.json';

/** The namespace, its management link to the apiserver and its pod routes. */
function prepareNamespace(): void {
  const ns = SECOND_NETNS;
  sh([
    `ip netns add ${ns}`, `ip -n ${ns} link set lo up`,
    `ip link add mgmt2 type veth peer name mgmt netns ${ns}`,
    'ip addr add 10.99.2.1/30 dev mgmt2', 'ip link set mgmt2 up',
    `ip -n ${ns} addr add 10.99.2.2/30 dev mgmt`, `ip -n ${ns} link set mgmt up`,
    `ip -n ${ns} route add 10.0.2.100/32 via 10.99.2.1`,
    `ip -n ${ns} link add pods0 type dummy`, `ip -n ${ns} addr add ${POD_CIDR_GATEWAY} dev pods0`, `ip -n ${ns} link set pods0 up`,
    'sysctl -qw net.ipv4.ip_forward=1',
    'nft add table ip bench_mgmt',
    'nft add chain ip bench_mgmt post "{ type nat hook postrouting priority srcnat; }"',
    'nft add rule ip bench_mgmt post ip saddr 10.99.2.0/30 oifname eth0 masquerade',
  ].join('\n'));
}

/** IPVS services and live destinations (weight > 0) in the second director's namespace. */
export function secondKernel(): { services: number; live: number } {
  const lines = sh(`ip netns exec ${SECOND_NETNS} ipvsadm -S -n`).split('\n');
  return {
    services: lines.filter((l) => l.startsWith('-A ')).length,
    live: lines.filter((l) => l.startsWith('-a ') && !/ -w 0\b/.test(l)).length,
  };
}

/** Starts the second director's agent (info level, as deployed: its log is not analysed). */
export function startSecondDirector(o: { node: string; kubeconfig: string; nodeOptions?: string }): AgentProc {
  prepareNamespace();
  return startAgent({
    node: o.node, kubeconfig: o.kubeconfig, logLevel: 'info', logFile: '/run/tmp/lvs-agent-2.log', netns: SECOND_NETNS,
    args: ['--state-file', STATE_FILE], ...(o.nodeOptions ? { nodeOptions: o.nodeOptions } : {}),
  });
}

/** Waits until the second director holds all n services with every destination live; ms taken. */
export async function secondProgrammed(agent: AgentProc, n: number, timeoutMs: number, log: (m: string) => void): Promise<number> {
  const t0 = performance.now();
  let last = '';
  for (;;) {
    if (agent.child.exitCode !== null) throw new Error(`the second director's agent exited ${agent.child.exitCode}:\n${agent.tail(20)}`);
    const k = secondKernel();
    const seen = `${k.services} services, ${k.live} live destinations`;
    if (seen !== last) log(`# director 2 at ${((performance.now() - t0) / 1000).toFixed(1)} s: ${seen}`);
    last = seen;
    if (k.services === n && k.live === n * ENDPOINTS) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) throw new Error(`director 2 not programmed after ${timeoutMs} ms: ${seen}; agent:\n${agent.tail(20)}`);
    await new Promise((r) => setTimeout(r, 5000));
  }
}
