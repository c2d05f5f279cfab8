// The guest's side of the system tier, set up once: the node's networking and pod sandboxes, the
// pods' workloads, the client, the Kubernetes objects (Services, Pods, EndpointSlices,
// VirtualServers) written through the host's apiserver, and the agent. Scenarios share it.
import type { OwnerPlan } from '../../../../api/plan-slice.ts';
import { AGENT_REPORTS, type KubeObject } from '../../../../kube/types.ts';
import type { AgentReportObject } from '../../../../api/agent-report.ts';
import { planSlicesPath, publishedPlan } from '../../../lib/published-plan.ts';
import { startAgent, type AgentProc } from '../../../../lab/guest/agent.ts';
import { ApiError, Kube } from '../../../../lab/guest/kube.ts';
import { addPods, assertInVm, bash, CLIENT_NS, setupNode, VIP_RANGE, VIP_RANGE6, type PodNet } from './node-net.ts';
import { VIP_POOLS, VIRTUAL_SERVERS, Workload } from '../../../../lab/guest/objects.ts';
import { startClient, startPodServer, type Client, type PodServer } from './traffic.ts';
import { until } from './wait.ts';

export const NS = 'shop';
export const VIP = { nat: '198.51.100.10', dr: '198.51.100.11', tun: '198.51.100.12' } as const;
export const PORT = 80;

export interface Env { adminKubeconfig: string; agentKubeconfig: string; control: string; node: string; nodeIP: string }

export function envFromProcess(): Env {
  const need = (k: string) => {
    const v = process.env[k];
    if (!v) throw new Error(`guest suite: ${k} is not set (the host test passes it)`);
    return v;
  };
  return {
    adminKubeconfig: need('LVS_SYSTEM_ADMIN_KUBECONFIG'), agentKubeconfig: need('LVS_SYSTEM_AGENT_KUBECONFIG'),
    control: need('LVS_SYSTEM_CONTROL_URL'), node: need('LVS_SYSTEM_NODE'), nodeIP: need('LVS_SYSTEM_NODE_IP'),
  };
}

/** Pod sandboxes, dual-stack: "web" serves 8080 behind NAT; "direct" serves 80 itself for DR and TUN. */
export const POD_NETS: Record<string, PodNet> = {
  'web-1': { ns: 'web-1', ip: '10.244.0.11', ip6: 'fd00:10:244::11', veth: 'vweb1' },
  'web-2': { ns: 'web-2', ip: '10.244.0.12', ip6: 'fd00:10:244::12', veth: 'vweb2' },
  'web-3': { ns: 'web-3', ip: '10.244.0.13', ip6: 'fd00:10:244::13', veth: 'vweb3' },
  'direct-1': { ns: 'direct-1', ip: '10.244.0.21', ip6: 'fd00:10:244::21', veth: 'vdirect1' },
  'direct-2': { ns: 'direct-2', ip: '10.244.0.22', ip6: 'fd00:10:244::22', veth: 'vdirect2' },
};

/** `vip`: one address, or several (an IPv4 and an IPv6 one: dual-stack). */
export function virtualServer(name: string, vip: string | readonly string[], forwarding: 'NAT' | 'DR' | 'TUN', service: string): KubeObject & Record<string, unknown> {
  return {
    apiVersion: 'lvs.dev/v1alpha1', kind: 'VirtualServer',
    metadata: { name, namespace: NS },
    spec: {
      addresses: typeof vip === 'string' ? [vip] : [...vip], ports: [{ name: 'http', port: PORT, protocol: 'TCP' }], forwarding,
      scheduler: { name: 'rr' }, backends: { service: { name: service } },
    },
  };
}

export interface World {
  env: Env;
  kube: Kube;
  web: Workload;
  direct: Workload;
  servers: Map<string, PodServer>;
  client: Client;
  agent: AgentProc;
  startAgent(): AgentProc;
  vs(name: string): Promise<VsObj>;
  /** The plan the controller published for a VirtualServer, assembled from its PlanSlices as the agent does. */
  plan(name: string): Promise<OwnerPlan>;
  /** This node's AgentReport (undefined before the agent wrote one). */
  report(): Promise<AgentReportObject | undefined>;
}

/** The agent's /healthz and /metrics in the guest. */
export const AGENT_METRICS = '127.0.0.1:9810';

/** Every sample of a series on the agent's /metrics, by its label text ('' for none). */
export async function agentMetric(name: string): Promise<Map<string, number>> {
  const body = await (await fetch(`http://${AGENT_METRICS}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of body.matchAll(new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)$`, 'gm'))) out.set(m[1] ?? '', Number(m[2]));
  return out;
}

export interface VsObj extends KubeObject {
  spec: Record<string, unknown>;
  status?: {
    observedGeneration?: number;
    conditions?: Array<{ type: string; status: string; reason: string; message: string }>;
    services?: string[];
    directors?: string[];
    readyRealServers?: number;
    realServerCount?: number;
    plan?: { revision: string; slices: number; generation: number };
    unprogrammedNodes?: Array<{ name: string; state: string; message: string }>;
    programmedNodes?: number;
  };
}

export const cond = (vs: VsObj | undefined, type: string) => vs?.status?.conditions?.find((c) => c.type === type);

/** Programmed=True for the current generation (every director reported it). */
export async function waitProgrammed(w: World, name: string, timeoutMs = 120_000): Promise<VsObj> {
  return until(`VirtualServer ${NS}/${name} Programmed=True for its generation`, async () => {
    const vs = await w.vs(name);
    const c = cond(vs, 'Programmed');
    return c?.status === 'True' && vs.status?.observedGeneration === vs.metadata.generation ? vs : undefined;
  }, { timeoutMs, show: async () => (await w.vs(name)).status });
}

export async function setupWorld(env: Env): Promise<World> {
  assertInVm();
  setupNode();
  addPods(Object.values(POD_NETS));
  // Logging only: a reply dropped as a martian is then named in the kernel log.
  bash('sysctl -qw net.ipv4.conf.all.log_martians=1');
  const kube = new Kube(env.adminKubeconfig);
  const servers = new Map<string, PodServer>();
  const starting = Object.entries(POD_NETS).map(async ([name, net]) => {
    servers.set(name, await startPodServer(net.ns, name, name.startsWith('web') ? [8080] : [PORT]));
  });
  const clientP = startClient(CLIENT_NS);
  await kube.create({ group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false }, undefined, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
  // What the cluster admin grants the shop: the VIPs of every scenario, IPv4 and IPv6 (deny by default otherwise).
  await kube.create(VIP_POOLS, undefined, {
    apiVersion: 'lvs.dev/v1alpha1', kind: 'VIPPool', metadata: { name: 'shop' },
    // The 10,000-endpoint scenario's endpoints are bare addresses (no Pod targetRef): a pool must
    // allow them like static real servers, or they are RealServerNotAllowed.
    spec: { addresses: [VIP_RANGE, VIP_RANGE6], allocation: { namespaces: [NS], autoAssign: true }, staticRealServers: ['10.250.0.0/16'] },
  });
  const common = { ns: NS, node: env.node, hostIP: env.nodeIP };
  const web = new Workload(kube, { ...common, name: 'web', ports: [{ name: 'http', port: PORT, targetPort: 8080 }] });
  const direct = new Workload(kube, { ...common, name: 'direct', ports: [{ name: 'http', port: PORT, targetPort: PORT }] });
  await web.createService();
  await direct.createService();
  for (const p of ['web-1', 'web-2']) await web.addPod(p, POD_NETS[p]!.ip, POD_NETS[p]!.ip6);
  for (const p of ['direct-1', 'direct-2']) await direct.addPod(p, POD_NETS[p]!.ip, POD_NETS[p]!.ip6);
  await web.syncSlice();
  await direct.syncSlice();
  for (const [name, vip, fwd, svc] of [['web-nat', VIP.nat, 'NAT', 'web'], ['direct-dr', VIP.dr, 'DR', 'direct'], ['direct-tun', VIP.tun, 'TUN', 'direct']] as const) {
    await kube.create(VIRTUAL_SERVERS, NS, virtualServer(name, vip, fwd, svc));
  }
  await Promise.all(starting);
  const client = await clientP;
  const w: World = {
    env, kube, web, direct, servers, client,
    agent: undefined as unknown as AgentProc,
    startAgent() {
      w.agent = startAgent({ node: env.node, kubeconfig: env.agentKubeconfig, args: ['--metrics-address', AGENT_METRICS] });
      return w.agent;
    },
    vs: (name) => kube.get<VsObj>(VIRTUAL_SERVERS, NS, name),
    async plan(name) {
      const uid = (await w.vs(name)).metadata.uid!;
      const got = publishedPlan((await kube.request<{ items: unknown[] }>('GET', planSlicesPath(uid))).items, uid);
      if (!got.ok) throw new Error(`plan of ${NS}/${name}: ${got.field}: ${got.message}`);
      return got.value;
    },
    report: () => kube.getOrUndefined<AgentReportObject>(AGENT_REPORTS, undefined, env.node),
  };
  return w;
}

export { ApiError };
