// Helpers of the cluster tier's guest suite: kubectl and helm against the real cluster (the admin
// kubeconfig, server = the host's apiserver through guestfwd), the client namespace, and the
// node's state the operator may change (IPVS services, lvs0, nft tables, the director's sysctls).
import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import { DIRECTOR_SYSCTLS } from '../../../../dataplane/director/plan.ts';
import { sh } from '../../../../lab/guest/netns.ts';

export const RELEASE = 'lvs-operator';
export const RELEASE_NS = 'lvs-system';
export const CLIENT_IP = '192.0.2.10';
const NODE_CLIENT_IP = '192.0.2.1';

function env(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (test/cluster/cluster.test.ts sets it)`);
  return v;
}

function exec(bin: string, args: string[], o: { input?: string; timeoutMs?: number } = {}): string {
  try {
    return execFileSync(bin, args, { input: o.input ?? '', encoding: 'utf8', timeout: o.timeoutMs ?? 120_000, stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  } catch (err) {
    const e = err as { status?: number; stderr?: string; stdout?: string };
    throw new Error(`${bin.split('/').pop()} ${args.join(' ')} exited ${e.status}: ${(e.stderr || e.stdout || String(err)).trim().split('\n').slice(-8).join(' | ')}`);
  }
}

export const kube = (args: string[], o: { input?: string; timeoutMs?: number } = {}) => exec(env('KUBECTL'), args, o);
/** kubectl without blocking the event loop (e.g. `rollout status` while traffic runs). */
export function kubeAsync(args: string[], timeoutMs = 660_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(env('KUBECTL'), args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`kubectl ${args.join(' ')}: ${(stderr || err.message).trim().split('\n').slice(-5).join(' | ')}`));
      else resolve(stdout);
    });
  });
}
export const kubeJson = (args: string[]): unknown => JSON.parse(kube([...args, '-o', 'json']));

/**
 * `kubectl get <args> --watch`: one line per event (the -o template ends each with a newline),
 * each stamped with the guest's clock when it arrived; what kubectl says on stderr comes as lines
 * starting "kubectl: ". stop() ends the watch and returns them.
 */
export function kubeWatch(args: string[]): { lines(): ReadonlyArray<{ at: number; text: string }>; stop(): Array<{ at: number; text: string }> } {
  const got: Array<{ at: number; text: string }> = [];
  const child = spawn(env('KUBECTL'), ['get', ...args, '--watch'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const collect = (prefix: string) => {
    let rest = '';
    return (chunk: string) => {
      const at = Date.now();
      const lines = (rest + chunk).split('\n');
      rest = lines.pop()!;
      for (const text of lines) if (text.trim()) got.push({ at, text: `${prefix}${text.trim()}` });
    };
  };
  child.stdout.setEncoding('utf8').on('data', collect(''));
  child.stderr.setEncoding('utf8').on('data', collect('kubectl: '));
  child.on('exit', (code, signal) => { if (signal !== 'SIGTERM') got.push({ at: Date.now(), text: `kubectl: exited ${code ?? signal}` }); });
  return { lines: () => got, stop() { child.kill(); return got; } };
}
export const helm = (args: string[]) => exec(env('HELM'), args, { timeoutMs: 600_000 });

export interface Pod {
  metadata: { name: string; namespace: string; uid?: string; deletionTimestamp?: string };
  spec: { nodeName?: string; containers: Array<{ name: string; securityContext?: Record<string, unknown> }> };
  status: { phase: string; podIP?: string; containerStatuses?: Array<{ name: string; ready: boolean; restartCount: number; image: string; containerID?: string; state?: Record<string, unknown>; lastState?: Record<string, unknown> }> };
}

export const podsOf = (ns: string, selector: string): Pod[] => (kubeJson(['get', 'pods', '-n', ns, '-l', selector]) as { items: Pod[] }).items;

/**
 * The echo pods: the controller image's Node (no other image is here) as a TCP server on 8080 that
 * answers every connection with who it is and whom it saw, in the shape lab/guest/client.ts reads.
 */
export const ECHO_SERVER = {
  terminationGracePeriodSeconds: 40,
  containers: [{
    name: 'echo', image: 'lvs-operator-controller:dev', imagePullPolicy: 'IfNotPresent',
    command: ['node', '-e', [
      "const os = require('os');",
      // The kubelet's tcpSocket probe connects and resets: a socket error is that client's, not ours.
      "const v4 = (a) => String(a).replace(/^::ffff:/, '');",
      "require('net').createServer((s) => { s.on('error', () => {}); s.end(JSON.stringify({ id: os.hostname(), proto: 'tcp', peer: `${v4(s.remoteAddress)}:${s.remotePort}`, local: `${v4(s.localAddress)}:${s.localPort}` })); })",
      "  .listen(8080, () => console.log('listening'));",
      // Graceful like a production server: on SIGTERM it keeps serving for a while (the time the
      // termination takes to reach the director's kernel: EndpointSlice, controller, plan, agent),
      // then exits; a production pod does the same with a preStop sleep longer than that time.
      // 30 s (was 10, then 20): measured in this tier under TCG, the way from "terminating" in
      // the EndpointSlice to the agent's sync of the Draining plan took 18.3 s for the first old
      // pod (11.2 s of it to the PlanSlice) and 2.5 s for the second (2026-12-06 14:04), and 23 s
      // in a CI run that failed with 20 s: while pods start and stop, the API server in the VM
      // answered single writes in 4-6 s (the controller's slow-reconcile log in the chain print).
      "process.on('SIGTERM', () => { console.log('SIGTERM: serving 30 s more'); setTimeout(() => process.exit(0), 30000); });",
    ].join('\n')],
    ports: [{ name: 'web', containerPort: 8080, protocol: 'TCP' }],
    readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 2 },
    securityContext: { runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
  }],
};

/** The last lines the kubelet logged for the pods of `ns` whose name starts with `prefix`, from the node's files (pods gone or restarted included). */
export function podLogTail(ns: string, prefix: string, lines = 40): string {
  try {
    return sh(`for f in /var/log/pods/${ns}_${prefix}*/*/*.log; do echo "== $f"; tail -n ${lines} "$f"; done`);
  } catch (e) { return `(no logs: ${(e as Error).message})`; }
}

/** Whether a container of the pods of `ns` whose name starts with `prefix` has logged `text` (a fixed string). */
export function podLogHas(ns: string, prefix: string, text: string): boolean {
  try {
    return sh(`grep -lF -e ${JSON.stringify(text)} /var/log/pods/${ns}_${prefix}*/*/*.log || true`).trim() !== '';
  } catch { return false; }
}

/** The JSON record a container logged, from one line of its CRI log file ("<time> stdout F {...}"); throws if it is not JSON. */
export function logPayload(line: string): Record<string, unknown> {
  return JSON.parse(line.slice(line.indexOf('{'))) as Record<string, unknown>;
}

/**
 * Follows what the containers of the pods of `ns` whose name starts with `prefix` log from now on
 * (into a file, so a flood never blocks the follower), for a summary when the pods may be gone:
 * how many lines, the most frequent messages, the last lines.
 */
export function followLogs(ns: string, prefix: string): { summary(): string; records(): Array<Record<string, unknown>> } {
  // /var/log: the guest's root (the host's /, read-only) is writable only where node-up mounted tmpfs.
  const file = `/var/log/follow-${ns}-${prefix}.log`;
  const child = spawn('sh', ['-c', `exec tail -q -n 0 -F /var/log/pods/${ns}_${prefix}*/*/*.log > ${file} 2>/dev/null`], { stdio: 'ignore' });
  return {
    summary() {
      child.kill();
      try { return summarise(); } catch (e) { return `(no summary: ${(e as Error).message})`; }
    },
    /** The JSON log records followed (call after summary(), which stops following); other lines are skipped. */
    records() {
      if (!existsSync(file)) return [];
      return readFileSync(file, 'utf8').split('\n').flatMap((l) => { try { return [logPayload(l)]; } catch { return []; } });
    },
  };
  function summarise(): string {
    if (!existsSync(file)) return '(nothing followed)';
    const lines = sh(`wc -l < ${file}`).trim();
    const top = sh(`grep -o '"msg":"[^"]*"' ${file} | sort | uniq -c | sort -rn | head -5 | tr -s ' ' | tr '\\n' ';' || true`).trim();
    const last = sh(`tail -n 5 ${file} | cut -c1-300`).trim();
    return `${lines} lines; most frequent: ${top || '-'}; last:\n${last}`;
  }
}

/** A client outside the cluster: its own namespace on a veth pair, routing 203.0.113.0/24 (the VIPs) to the node. */
export function setupClient(): void {
  sh(`
ip netns add client
ip link add cl-node type veth peer name eth0 netns client
ip addr add ${NODE_CLIENT_IP}/24 dev cl-node
ip link set cl-node up
ip netns exec client sh -c 'ip link set lo up; ip link set eth0 up; ip addr add ${CLIENT_IP}/24 dev eth0; ip route add 203.0.113.0/24 via ${NODE_CLIENT_IP}'
`);
}

/**
 * The HTTP status the node's kubelet answers on its API port (10250) for GET `path`, with `token` as
 * the bearer token or no credentials at all. Its serving certificate is self-signed (no serving CA
 * in this cluster), so it is not verified: what is tested is the kubelet's checks of its client.
 */
export function kubeletStatus(path: string, token?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: 10250, path, method: 'GET', rejectUnauthorized: false, timeout: 30_000, headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error(`kubelet GET ${path}: no answer in 30 s`)));
    req.on('error', reject);
    req.end();
  });
}

export interface NodeState { ipvs: string; lvs0: boolean; vips: string[]; nftTables: string[]; sysctls: string }

/** What the operator may change on the node, comparable across time. */
export function nodeState(): NodeState {
  const out = sh(`
echo "== ipvs"; ipvsadm -Ln | tail -n +4
echo "== lvs0"; ip -o link show lvs0 2>/dev/null | wc -l
echo "== vips"; ip -o addr show dev lvs0 scope global 2>/dev/null | awk '{print $4}'
echo "== nft"; nft list tables
echo "== sysctl"; for k in ${DIRECTOR_SYSCTLS.join(' ')}; do printf '%s=%s\\n' "$k" "$(sysctl -n "$k" | tr -s '\\t ' ' ')"; done
`);
  const sections = new Map(out.split(/^== /m).slice(1).map((s) => [s.slice(0, s.indexOf('\n')), s.slice(s.indexOf('\n') + 1).trim()]));
  const part = (name: string) => sections.get(name) ?? '';
  return {
    ipvs: part('ipvs'),
    lvs0: part('lvs0') !== '0',
    // The addresses bound on lvs0 (the VIPs this node serves).
    vips: part('vips').split('\n').filter(Boolean).sort(),
    nftTables: part('nft').split('\n').filter(Boolean).sort(),
    sysctls: part('sysctl').split('\n').join(' '),
  };
}
