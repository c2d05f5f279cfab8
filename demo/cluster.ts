// The demo's cluster side inside the VM: the director namespace's management link to the
// apiserver (which runs on the host, reached through qemu's guestfwd at 10.0.2.100), the
// lvs-agent in cluster mode as the DaemonSet would run it, and kubectl as the user runs it.
import { spawn, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { listIpvs, type IpvsService } from '../lab/guest/ipvsadm.ts';
import { sh } from '../lab/guest/netns.ts';
import { AGENT_ENTRY } from '../lab/vm/guest-agent.ts';

export interface DemoEnv { adminKubeconfig: string; agentKubeconfig: string; node: string; kubectl: string }

export function envFromProcess(): DemoEnv {
  const need = (k: string) => {
    const v = process.env[k];
    if (!v) throw new Error(`demo guest: ${k} is not set (demo/run.ts passes it)`);
    return v;
  };
  return { adminKubeconfig: need('DEMO_ADMIN_KUBECONFIG'), agentKubeconfig: need('DEMO_AGENT_KUBECONFIG'), node: need('DEMO_NODE'), kubectl: need('DEMO_KUBECTL') };
}

/**
 * The director is a namespace of its own; only the VM's root namespace has the NIC that reaches
 * the host. A veth "management" link and a masquerade in the root namespace give the director
 * (and only the director) a path to 10.0.2.100, the way a node reaches its control plane.
 */
export function connectDirectorToApiserver(ns = 'director'): void {
  sh([
    `ip link add mgmt0 type veth peer name mgmt netns ${ns}`,
    'ip addr add 10.99.0.1/30 dev mgmt0', 'ip link set mgmt0 up',
    `ip -n ${ns} addr add 10.99.0.2/30 dev mgmt`, `ip -n ${ns} link set mgmt up`,
    `ip -n ${ns} route add 10.0.2.100/32 via 10.99.0.1`,
    'sysctl -qw net.ipv4.ip_forward=1',
    "nft -f - <<'EOF'",
    'table ip demo_mgmt {',
    '  chain post { type nat hook postrouting priority srcnat; ip saddr 10.99.0.0/30 oifname "eth0" masquerade; }',
    '}',
    'EOF',
  ].join('\n') + '\n');
}

export function kubectl(env: DemoEnv, args: string[], input?: string): string {
  return execFileSync(env.kubectl, ['--kubeconfig', env.adminKubeconfig, ...args], { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

export interface AgentProcess {
  readonly started: number;
  /** When the agent wrote its first log line (Node has loaded its modules), or undefined. */
  firstLogAt(): number | undefined;
  /** The agent's log lines so far (pino JSON). */
  lines(): string[];
  stop(): Promise<void>;
}

/** `lvs-agent run` in the director namespace: NODE_NAME and KUBECONFIG, as the DaemonSet sets them. */
export function startClusterAgent(env: DemoEnv, ns: string, stateFile: string): AgentProcess {
  const child: ChildProcess = spawn('ip', ['netns', 'exec', ns, process.execPath, AGENT_ENTRY, 'run', '--state-file', stateFile], {
    env: { ...process.env, NODE_NAME: env.node, KUBECONFIG: env.agentKubeconfig, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let firstLogAt: number | undefined;
  const onLine = (l: string) => { firstLogAt ??= Date.now(); lines.push(l); };
  createInterface(child.stdout!).on('line', onLine);
  createInterface(child.stderr!).on('line', onLine);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  process.once('exit', () => child.kill('SIGKILL'));
  return {
    started: Date.now(),
    lines: () => lines,
    firstLogAt: () => firstLogAt,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Polls the director's IPVS table (ipvsadm, an independent reader) until `done` holds. */
export async function waitForKernel(ns: string, what: string, done: (svcs: IpvsService[]) => boolean, agent: AgentProcess, timeoutMs = 600_000): Promise<number> {
  const t0 = Date.now();
  let told = t0;
  for (;;) {
    if (done(listIpvs(ns))) return Date.now() - t0;
    if (Date.now() - told >= 20_000) {
      told = Date.now();
      const last = agent.lines().at(-1);
      console.log(`  ... still waiting for ${what} in the kernel (${((told - t0) / 1000).toFixed(0)} s; the agent's last log line: ${last ? last.slice(0, 160) : 'none yet (Node is loading its modules)'})`);
    }
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not in the kernel after ${timeoutMs} ms; agent log:\n${agent.lines().slice(-20).join('\n')}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Waits until every listed VirtualServer has condition `type` = True; returns the ms it took. */
export async function waitForCondition(env: DemoEnv, names: string[], type: string, timeoutMs = 180_000): Promise<number> {
  const t0 = Date.now();
  let told = t0;
  const jsonpath = `{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="${type}")].status}{"\\n"}{end}`;
  for (;;) {
    const out = kubectl(env, ['get', 'vs', '-n', 'default', '-o', `jsonpath=${jsonpath}`]);
    const ok = new Set(out.split('\n').filter((l) => l.endsWith('=True')).map((l) => l.split('=')[0]));
    if (names.every((n) => ok.has(n))) return Date.now() - t0;
    if (Date.now() - t0 > timeoutMs) throw new Error(`${type} not True for all of ${names.join(', ')} after ${timeoutMs} ms:\n${out}`);
    if (Date.now() - told >= 20_000) { told = Date.now(); console.log(`  ... still waiting for ${type}=True (${((told - t0) / 1000).toFixed(0)} s): ${out.trim().split('\n').join(' ')}`); }
    await new Promise((r) => setTimeout(r, 2000));
  }
}
