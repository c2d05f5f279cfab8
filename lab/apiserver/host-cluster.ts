// Host side of the system tier: a real control plane (lab/apiserver/harness.ts) with the CRDs,
// both ClusterRoles bound to their own users, the controller as a child process (operator/main.ts,
// leader election on, as its least-privilege user), the Node object of the VM, and kubeconfigs
// for the guest whose server is the apiserver as the guest reaches it through qemu's guestfwd
// (https://10.0.2.100:<guestPort>, tls-server-name localhost, a name in the serving certificate,
// so TLS is verified end to end). Files written here before the VM boots are visible in the guest
// at the same path (the VM's root is the host's / over 9p).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { tokenKubeconfigYaml } from './certs.ts';
import { startControlPlane, type ControlPlane, type KubeconfigFile } from './harness.ts';
import { trackChild } from './procs.ts';
import { REPO_ROOT } from '../vm/vm.ts';
import { withNodeOptions } from '../node-options.ts';

export const NODE_NAME = 'lvs-node-1';
/** The VM's address on qemu's user network (eth0), as the Node's InternalIP. */
export const NODE_IP = '10.0.2.15';
export const LEASE_NS = 'lvs-system';
/** The agents' ServiceAccount (in LEASE_NS, as the chart puts both in the release namespace). */
export const AGENT_SA = 'lvs-agent';
/** Ports the guest dials on 10.0.2.100; qemu forwards them to the host's loopback. */
export const GUEST_API_PORT = 6443;
export const GUEST_CONTROL_PORT = 8090;

export interface ControllerProc {
  child: ChildProcess;
  logs: Array<Record<string, unknown>>;
  stderr(): string;
  stop(): Promise<number | null>;
}

export interface HostCluster {
  cp: ControlPlane;
  controller: ControllerProc;
  /** kubeconfigs the guest uses (server = the guestfwd address) */
  guest: { admin: string; agent: string; kubeProxy: string };
  /** kubeconfig of the agent's user, for `kubectl auth can-i` checks on the host */
  agentHost: KubeconfigFile;
  timings: Record<string, number>;
  stop(): Promise<void>;
}

async function kubectlOk(cp: ControlPlane, args: string[], stdin?: string): Promise<string> {
  const r = await cp.kubectl(args, stdin === undefined ? {} : { stdin });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** The same kubeconfig, pointed at the guestfwd address with the serving cert's DNS name. */
export function guestKubeconfig(contents: string, guestPort: number): string {
  const lines = contents.split('\n');
  const i = lines.findIndex((l) => /^\s+server: https:\/\/127\.0\.0\.1:\d+$/.test(l));
  if (i < 0) throw new Error('kubeconfig: no "server: https://127.0.0.1:<port>" line');
  const indent = /^(\s+)/.exec(lines[i]!)![1]!;
  lines.splice(i, 1, `${indent}server: https://10.0.2.100:${guestPort}`, `${indent}tls-server-name: localhost`);
  return lines.join('\n');
}

/** `nodeOptions`: added to the controller's NODE_OPTIONS (the benchmarks' heap cap). */
function startController(kubeconfig: string, logPath: string, nodeOptions?: string): ControllerProc {
  const child = spawn(process.execPath, [join(REPO_ROOT, 'operator/main.ts'), '--metrics-port=0'], {
    cwd: REPO_ROOT,
    env: withNodeOptions({ ...process.env, KUBECONFIG: kubeconfig, POD_NAME: 'lvs-operator-0', POD_NAMESPACE: LEASE_NS, LOG_LEVEL: 'debug' }, nodeOptions),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  let stderr = '';
  const lines: string[] = [];
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  createInterface(child.stdout!).on('line', (l) => {
    lines.push(l);
    try { logs.push(JSON.parse(l) as Record<string, unknown>); } catch { /* not a log line */ }
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  trackChild(child); // never outlives this process: the control plane's exit and signal hooks
  return {
    child, logs, stderr: () => stderr,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(timer);
      await writeFile(logPath, lines.join('\n') + '\n').catch(() => {});
      return code;
    },
  };
}

async function waitFor(what: string, probe: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const nodeYaml = (name: string) => `apiVersion: v1
kind: Node
metadata:
  name: ${name}
  labels: {kubernetes.io/hostname: ${name}, kubernetes.io/os: linux, lvs.dev/director: "true"}
`;

/** The VM's Node (NODE_NAME, InternalIP NODE_IP, Ready) as a kubelet registers it; its address is status, written through the subresource. */
export async function registerNode(cp: ControlPlane, name = NODE_NAME, ip = NODE_IP): Promise<void> {
  await kubectlOk(cp, ['apply', '-f', '-'], nodeYaml(name));
  await kubectlOk(cp, ['patch', 'node', name, '--subresource=status', '--type=merge', '-p', JSON.stringify({
    status: {
      addresses: [{ type: 'InternalIP', address: ip }, { type: 'Hostname', address: name }],
      conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'system tier: the VM is up' }],
    },
  })]);
}

/**
 * The agent's identity as the chart gives it: the lvs-agent ServiceAccount, and a token bound to
 * the agent's pod on this node (what the kubelet requests), so the token names the node
 * (authentication.kubernetes.io/node-name) and dataplane/rbac/report-policy.yaml applies.
 */
async function agentIdentity(cp: ControlPlane, node = NODE_NAME): Promise<KubeconfigFile> {
  if (node === NODE_NAME) {
    await kubectlOk(cp, ['create', 'serviceaccount', AGENT_SA, '-n', LEASE_NS]);
    await kubectlOk(cp, ['create', 'clusterrolebinding', 'lvs-agent', '--clusterrole=lvs-agent', `--serviceaccount=${LEASE_NS}:${AGENT_SA}`]);
  }
  await kubectlOk(cp, ['apply', '-f', '-'], JSON.stringify({
    apiVersion: 'v1', kind: 'Pod', metadata: { name: `lvs-agent-${node}`, namespace: LEASE_NS },
    spec: { nodeName: node, serviceAccountName: AGENT_SA, containers: [{ name: 'agent', image: 'lvs-operator-agent:dev' }] },
  }));
  const token = (await kubectlOk(cp, ['create', 'token', AGENT_SA, '-n', LEASE_NS, '--bound-object-kind=Pod', `--bound-object-name=lvs-agent-${node}`, '--duration=12h'])).trim();
  const path = join(cp.dir, node === NODE_NAME ? 'agent.kubeconfig' : `agent-${node}.kubeconfig`);
  const contents = await tokenKubeconfigYaml(cp.url, cp.caCert, token, `system:serviceaccount:${LEASE_NS}:${AGENT_SA}`);
  await writeFile(path, contents, { mode: 0o600 });
  return { path, contents };
}

/**
 * One more node with an agent (after startHostCluster): its Node, Ready, and the kubeconfig the
 * guest's agent for it uses (a token bound to a pod on that node, so it may write only that
 * node's AgentReport). Returns the guest kubeconfig's path.
 */
export async function addAgentNode(cp: ControlPlane, node: string, ip: string): Promise<string> {
  await registerNode(cp, node, ip);
  const kc = await agentIdentity(cp, node);
  const guest = join(cp.dir, `guest-agent-${node}.kubeconfig`);
  await writeFile(guest, guestKubeconfig(kc.contents, GUEST_API_PORT), { mode: 0o600 });
  return guest;
}

/**
 * The user the built-in ClusterRoleBinding `system:node-proxier` binds to the ClusterRole of the
 * same name (what kube-up gives kube-proxy): a client certificate for it needs no binding of ours.
 */
export const KUBE_PROXY_USER = 'system:kube-proxy';

/**
 * kube-proxy's identity: a client certificate for KUBE_PROXY_USER, as a kubeconfig for the host
 * (`kubectl auth can-i` checks) and one for the guest (server = the guestfwd address), written
 * before the VM boots. Needs nothing else of the host cluster: works on a bare control plane.
 */
export async function kubeProxyIdentity(cp: ControlPlane, guestPort = GUEST_API_PORT): Promise<{ host: KubeconfigFile; guest: string }> {
  const host = await cp.userKubeconfig(KUBE_PROXY_USER);
  const guest = join(cp.dir, 'guest-kube-proxy.kubeconfig');
  await writeFile(guest, guestKubeconfig(host.contents, guestPort), { mode: 0o600 });
  return { host, guest };
}

export async function startHostCluster(log: (m: string) => void, opts: { controllerNodeOptions?: string } = {}): Promise<HostCluster> {
  const t0 = Date.now();
  const timings: Record<string, number> = {};
  const cp = await startControlPlane({ log });
  let controller: ControllerProc | undefined;
  try {
    timings.controlPlaneMs = Date.now() - t0;
    await cp.installCrds('crds');
    timings.crdsMs = Date.now() - t0 - timings.controlPlaneMs;
    const agentRole = join(REPO_ROOT, 'dataplane/rbac/clusterrole.yaml');
    if (!existsSync(agentRole)) throw new Error(`${agentRole} is missing (the agent's ClusterRole)`);
    await kubectlOk(cp, ['apply', '-f', join(REPO_ROOT, 'operator/rbac/clusterrole.yaml'), '-f', agentRole, '-f', join(REPO_ROOT, 'dataplane/rbac/report-policy.yaml'), '-f', join(REPO_ROOT, 'operator/rbac/owned-policy.yaml')]);
    await kubectlOk(cp, ['create', 'clusterrolebinding', 'lvs-operator', '--clusterrole=lvs-operator', '--user=lvs-operator']);
    await kubectlOk(cp, ['create', 'namespace', LEASE_NS]);
    await registerNode(cp);
    const operatorKc = await cp.userKubeconfig('lvs-operator');
    const agentKc = await agentIdentity(cp);
    const kubeProxy = await kubeProxyIdentity(cp);
    const guest = { admin: join(cp.dir, 'guest-admin.kubeconfig'), agent: join(cp.dir, 'guest-agent.kubeconfig'), kubeProxy: kubeProxy.guest };
    await writeFile(guest.admin, guestKubeconfig(cp.kubeconfig.contents, GUEST_API_PORT), { mode: 0o600 });
    await writeFile(guest.agent, guestKubeconfig(agentKc.contents, GUEST_API_PORT), { mode: 0o600 });
    const t1 = Date.now();
    controller = startController(operatorKc.path, join(cp.dir, 'controller.log'), opts.controllerNodeOptions);
    const c = controller;
    await waitFor('the controller to become leader', () => {
      if (c.child.exitCode !== null) throw new Error(`the controller exited ${c.child.exitCode}`);
      return c.logs.some((l) => l.msg === 'became leader');
    }, 60_000).catch((err: unknown) => {
      throw new Error(`${String(err)}; controller stderr: ${c.stderr()}; last logs: ${c.logs.slice(-5).map((l) => JSON.stringify(l)).join('\n')}`);
    });
    timings.controllerMs = Date.now() - t1;
    timings.totalMs = Date.now() - t0;
    return {
      cp, controller: c, guest, agentHost: agentKc, timings,
      async stop() { await c.stop(); await cp.stop(); },
    };
  } catch (err) {
    await controller?.stop();
    await cp.stop();
    throw err;
  }
}
