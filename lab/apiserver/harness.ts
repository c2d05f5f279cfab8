// A real control plane for tests, like controller-runtime's envtest: etcd and kube-apiserver
// (built from their Go modules by scripts/build-apiserver.ts, cached under ~/.cache/lvs-operator)
// on 127.0.0.1 with random free ports, a temp dir, generated certificates and RBAC on.
//
//   import { apiserverPrereqs, startControlPlane } from './harness.ts';
//   const test = gated(suite('x'), apiserverPrereqs());   // builds the binaries if not cached
//   let cp: ControlPlane;
//   test.before(async () => { cp = await startControlPlane(); await cp.installCrds('crds'); });
//   test.after(async () => { await cp?.stop(); });
//   ... new KubeConfig().loadFromFile(cp.kubeconfig.path) ... / await cp.kubectl(['get', 'vs', '-A'])
//
// What is NOT running: no kube-controller-manager, scheduler or kubelet. So namespaces never
// finish deleting (no namespace controller), no ServiceAccount or token is created for you
// (ServiceAccount admission is off so pods can be created without one), Services get cluster IPs
// but no EndpointSlices (create them yourself), and garbage collection does not happen.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { binaryPath, missingBinaries } from '../../scripts/build-apiserver.ts';
import { egressSelectorConfig } from '../cluster/kubelet-tunnel.ts';
import { clientCert, kubeconfigYaml, makePki, type KeyPair, type Pki } from './certs.ts';
import { registerTempDir, releaseTempDir, startProc, waitReady, type Proc } from './procs.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');

export interface KubeconfigFile { path: string; contents: string }
export interface KubectlResult { code: number; stdout: string; stderr: string }
export interface KubectlOptions {
  /** defaults to the admin kubeconfig */
  kubeconfig?: KubeconfigFile | string;
  stdin?: string;
  timeoutMs?: number;
}

export interface ControlPlaneOptions {
  /** progress and timing lines; default console.log */
  log?: (msg: string) => void;
  /** per component; default 90 s (a cold first start on a busy 2-core machine is slow) */
  startTimeoutMs?: number;
  /** extra kube-apiserver flags, e.g. ['--feature-gates=...'] */
  apiserverArgs?: string[];
  /** keep the temp dir (certs, logs, etcd data) after stop(); also LVS_APISERVER_KEEP=1 */
  keepDir?: boolean;
  /**
   * A control plane for real kubelets (lab/cluster): the `kubernetes` Service's endpoint is
   * advertiseAddress (what nodes reach this apiserver at; the port stays the one it listens on),
   * the serving certificate also names servingSans (e.g. 'IP:10.96.0.1', the Service's ClusterIP
   * pods dial), kubelets are authorized by the Node authorizer and NodeRestriction admission, and
   * ServiceAccount admission is on (pods get their projected token). Unset: the envtest-like
   * plane described at the top. The apiserver reaches kubelets with a client certificate
   * (CN kube-apiserver-kubelet-client; the caller grants it system:kubelet-api-admin) at their
   * InternalIP, through the HTTP CONNECT proxy on the unix socket `egressSocket` when set
   * (lab/cluster/kubelet-tunnel.ts).
   */
  cluster?: { advertiseAddress: string; servingSans: string[]; egressSocket?: string };
}

export interface ControlPlane {
  /** https://127.0.0.1:<port> */
  url: string;
  /** admin: CN=lvs-admin, O=system:masters (bypasses RBAC) */
  kubeconfig: KubeconfigFile;
  /** PEM file of the CA that signed the serving certificate */
  caCert: string;
  /** the certificates and keys behind it (client CA, service-account keys): for more components */
  pki: Pki;
  /** temp dir holding certs, kubeconfigs, logs (etcd.log, kube-apiserver.log) and etcd data */
  dir: string;
  timings: { etcdMs: number; apiserverMs: number; totalMs: number };
  pids: { etcd: number; apiserver: number };
  /** a kubeconfig authenticating as `user` in `groups` (client cert); no RBAC granted */
  userKubeconfig(user: string, groups?: string[]): Promise<KubeconfigFile>;
  /** server-side applies every manifest in `dir` (relative: to the repo root), waits until each
   *  CRD is Established and its resource is served; returns the CRD names */
  installCrds(dir: string): Promise<string[]>;
  kubectl(args: string[], opts?: KubectlOptions): Promise<KubectlResult>;
  /** stops kube-apiserver then etcd and removes the temp dir; safe to call twice */
  stop(): Promise<void>;
}

function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/**
 * Why the apiserver tier cannot run, or undefined. Builds missing binaries first (minutes when
 * cold; skipped when LVS_APISERVER_NO_BUILD=1), so a fresh machine or CI needs only Go and openssl.
 */
export function apiserverPrereqs(): string | undefined {
  if (!hasCommand('openssl')) return 'openssl not found (scripts/provision.sh installs it)';
  if (!hasCommand('setpriv')) return 'setpriv (util-linux) not found';
  const missing = missingBinaries();
  if (missing.length === 0) return undefined;
  const what = `${missing.join(', ')} not built (~/.cache/lvs-operator/bin)`;
  if (process.env.LVS_APISERVER_NO_BUILD === '1') return `${what} and LVS_APISERVER_NO_BUILD=1`;
  if (!hasCommand('go')) return `${what} and no Go toolchain to build them`;
  const r = spawnSync(process.execPath, [join(root, 'scripts/build-apiserver.ts'), 'build'], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) return `${what}: node scripts/build-apiserver.ts build exited ${r.status ?? r.signal}`;
  const still = missingBinaries();
  return still.length ? `${still.join(', ')} still missing after the build` : undefined;
}

/** Distinct free loopback ports: all are held open together, so none is handed out twice. */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: n }, () => new Promise<ReturnType<typeof createServer>>((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => res(s));
  })));
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

function httpGet(url: string, tls?: { ca: Buffer; cert: Buffer; key: Buffer }): Promise<{ status: number; body: string }> {
  return new Promise((res, rej) => {
    const req = (tls ? request : httpRequest)(url, { ...tls, agent: false, timeout: 2000 }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (c: string) => { body += c; });
      r.on('end', () => res({ status: r.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', rej);
    req.end();
  });
}

function startEtcd(dir: string, clientPort: number, peerPort: number): Proc {
  const client = `http://127.0.0.1:${clientPort}`, peer = `http://127.0.0.1:${peerPort}`;
  return startProc('etcd', binaryPath('etcd'), [
    '--name=test', `--data-dir=${join(dir, 'etcd-data')}`,
    `--listen-client-urls=${client}`, `--advertise-client-urls=${client}`,
    `--listen-peer-urls=${peer}`, `--initial-advertise-peer-urls=${peer}`, `--initial-cluster=test=${peer}`,
    '--initial-cluster-state=new',
    // Test data is disposable: skipping fsync makes every write (and so every API call) fast.
    '--unsafe-no-fsync', '--log-level=warn', '--quota-backend-bytes=1073741824',
  ], join(dir, 'etcd.log'));
}

/** The flags of a plane for real kubelets (ControlPlaneOptions.cluster); files it names are written into `dir`. */
async function clusterArgs(pki: Pki, dir: string, cluster: NonNullable<ControlPlaneOptions['cluster']>): Promise<string[]> {
  const kubeletClient = await clientCert(pki, 'apiserver-kubelet-client', 'kube-apiserver-kubelet-client', []);
  const args = [
    '--authorization-mode=Node,RBAC', '--enable-admission-plugins=NodeRestriction',
    `--kubelet-client-certificate=${kubeletClient.cert}`, `--kubelet-client-key=${kubeletClient.key}`,
    // As kubeadm: the node's address, not its name (which nothing here resolves).
    '--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname',
  ];
  if (cluster.egressSocket) {
    const file = join(dir, 'egress-selector.json');
    await writeFile(file, egressSelectorConfig(cluster.egressSocket));
    args.push(`--egress-selector-config-file=${file}`);
  }
  return args;
}

function apiserverArgs(pki: Pki, etcdUrl: string, port: number, extra: string[], cluster: ControlPlaneOptions['cluster'], clusterFlags: string[] | undefined): string[] {
  // ServiceAccount admission needs the token/SA controllers of kube-controller-manager.
  const modes = clusterFlags ?? ['--authorization-mode=RBAC', '--disable-admission-plugins=ServiceAccount'];
  return [
    '--bind-address=127.0.0.1', `--advertise-address=${cluster?.advertiseAddress ?? '127.0.0.1'}`, `--secure-port=${port}`,
    `--etcd-servers=${etcdUrl}`,
    `--tls-cert-file=${pki.serving.cert}`, `--tls-private-key-file=${pki.serving.key}`,
    `--client-ca-file=${pki.clientCa.cert}`,
    ...modes,
    '--service-cluster-ip-range=10.96.0.0/24',
    '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
    `--service-account-key-file=${pki.saPub}`, `--service-account-signing-key-file=${pki.saKey}`,
    '--allow-privileged=true', '--profiling=false',
    // No kubelets and no load: flow control only adds bootstrap objects and startup time.
    '--enable-priority-and-fairness=false',
    ...extra,
  ];
}

let starts = 0;

export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const log = opts.log ?? ((m: string) => console.log(`[apiserver harness] ${m}`));
  // A free port can be taken by someone else between our probe and the server's bind: retry then.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts, log);
    } catch (e) {
      if (attempt >= 3 || !/address already in use/.test((e as Error).message)) throw e;
      log(`port taken before bind (attempt ${attempt}); retrying with new ports`);
    }
  }
}

async function startOnce(opts: ControlPlaneOptions, log: (m: string) => void): Promise<ControlPlane> {
  const timeout = opts.startTimeoutMs ?? 90_000;
  const keep = opts.keepDir ?? process.env.LVS_APISERVER_KEEP === '1';
  const t0 = performance.now();
  const dir = await mkdtemp(join(tmpdir(), 'lvs-apiserver-'));
  if (!keep) registerTempDir(dir);
  const procs: Proc[] = [];
  const stopAll = async () => { for (const p of procs.reverse()) await p.stop(); procs.length = 0; };
  try {
    const pki = await makePki(dir, opts.cluster?.servingSans ?? []);
    const [etcdPort = 0, peerPort = 0, apiPort = 0] = await freePorts(3);
    const etcd = startEtcd(dir, etcdPort, peerPort);
    procs.push(etcd);
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    await waitReady(etcd, async () => (await httpGet(`${etcdUrl}/health`)).body.includes('"health":"true"'), timeout);
    const etcdMs = performance.now() - t0;

    const admin = await clientCert(pki, 'admin', 'lvs-admin', ['system:masters']);
    const tls = { ca: await readFile(pki.serverCa.cert), cert: await readFile(admin.cert), key: await readFile(admin.key) };
    const url = `https://127.0.0.1:${apiPort}`;
    const clusterFlags = opts.cluster && await clusterArgs(pki, dir, opts.cluster);
    const api = startProc('kube-apiserver', binaryPath('kube-apiserver'), apiserverArgs(pki, etcdUrl, apiPort, opts.apiserverArgs ?? [], opts.cluster, clusterFlags), join(dir, 'kube-apiserver.log'));
    procs.push(api);
    await waitReady(api, async () => (await httpGet(`${url}/readyz`, tls)).status === 200, timeout);
    const totalMs = performance.now() - t0;
    const timings = { etcdMs: Math.round(etcdMs), apiserverMs: Math.round(totalMs - etcdMs), totalMs: Math.round(totalMs) };
    starts += 1;
    log(`control plane #${starts} in this process ready at ${url} in ${timings.totalMs} ms (etcd ${timings.etcdMs} ms, kube-apiserver ${timings.apiserverMs} ms); dir ${dir}`);
    const pids = { etcd: etcd.child.pid ?? 0, apiserver: api.child.pid ?? 0 };
    return controlPlane({ url, dir, pki, keep, timings, pids, stopAll, log, adminPair: admin });
  } catch (e) {
    await stopAll();
    if (!keep) releaseTempDir(dir);
    throw e;
  }
}

interface Parts {
  url: string; dir: string; pki: Pki; keep: boolean; adminPair: KeyPair;
  timings: ControlPlane['timings']; pids: ControlPlane['pids']; stopAll: () => Promise<void>; log: (m: string) => void;
}

async function writeKubeconfig(p: Parts, name: string, pair: KeyPair, user: string): Promise<KubeconfigFile> {
  const contents = await kubeconfigYaml(p.url, p.pki.serverCa.cert, pair, user);
  const path = join(p.dir, `${name}.kubeconfig`);
  await writeFile(path, contents, { mode: 0o600 });
  return { path, contents };
}

async function controlPlane(p: Parts): Promise<ControlPlane> {
  const kubeconfig = await writeKubeconfig(p, 'admin', p.adminPair, 'lvs-admin');
  let users = 0;
  let stopped = false;
  const kubectl = (args: string[], o: KubectlOptions = {}) => runKubectl(p.dir, args, o, kubeconfig);
  return {
    url: p.url, kubeconfig, caCert: p.pki.serverCa.cert, pki: p.pki, dir: p.dir, timings: p.timings, pids: p.pids, kubectl,
    async userKubeconfig(user, groups = []) {
      users += 1;
      const pair = await clientCert(p.pki, `user${users}`, user, groups);
      return writeKubeconfig(p, `user${users}`, pair, user);
    },
    installCrds: (dir) => installCrds(kubectl, isAbsolute(dir) ? dir : resolve(root, dir)),
    async stop() {
      if (stopped) return;
      stopped = true;
      const t = performance.now();
      await p.stopAll();
      if (!p.keep) releaseTempDir(p.dir);
      p.log(`control plane stopped in ${Math.round(performance.now() - t)} ms${p.keep ? `; kept ${p.dir}` : ''}`);
    },
  };
}

function runKubectl(dir: string, args: string[], o: KubectlOptions, admin: KubeconfigFile): Promise<KubectlResult> {
  const kc = o.kubeconfig ?? admin;
  const path = typeof kc === 'string' ? kc : kc.path;
  return new Promise((res, rej) => {
    const child = spawn(binaryPath('kubectl'), [`--kubeconfig=${path}`, `--cache-dir=${join(dir, 'kubectl-cache')}`, ...args], {
      // KUBERC=off: a developer's ~/.kube/kuberc (aliases, default flags) must not change results.
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, KUBERC: 'off' },
      stdio: ['pipe', 'pipe', 'pipe'], timeout: o.timeoutMs ?? 60_000,
    });
    let stdout = '', stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c; });
    child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
    child.on('error', rej);
    child.on('close', (code, signal) => res({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
    child.stdin.end(o.stdin ?? '');
  });
}

type Kubectl = ControlPlane['kubectl'];

async function installCrds(kubectl: Kubectl, dir: string): Promise<string[]> {
  const files = (await readdir(dir)).filter((f) => /\.(ya?ml|json)$/.test(f)).sort();
  if (files.length === 0) throw new Error(`installCrds: no .yaml/.yml/.json files in ${dir}`);
  const applied = await kubectl(['apply', '--server-side', '--force-conflicts', '--field-manager=lvs-test', '-o', 'name', '-f', dir]);
  if (applied.code !== 0) throw new Error(`installCrds: kubectl apply -f ${dir} failed:\n${applied.stderr}${applied.stdout}`);
  const prefix = 'customresourcedefinition.apiextensions.k8s.io/';
  const names = applied.stdout.split('\n').map((l) => l.trim()).filter((l) => l.startsWith(prefix)).map((l) => l.slice(prefix.length));
  if (names.length === 0) throw new Error(`installCrds: ${dir} holds no CustomResourceDefinition`);
  const est = await kubectl(['wait', '--for=condition=Established', '--timeout=60s', ...names.map((n) => `crd/${n}`)]);
  if (est.code !== 0) throw new Error(`installCrds: CRDs not Established: ${est.stderr}`);
  // Established means the handler serves; discovery (what kubectl resolves `vs` with) follows shortly.
  for (const name of names) {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const r = await kubectl(['get', name, '--all-namespaces', '-o', 'name']);
      if (r.code === 0) break;
      if (Date.now() > deadline) throw new Error(`installCrds: ${name} not served after 30 s: ${r.stderr}`);
      await new Promise((s) => setTimeout(s, 200));
    }
  }
  return names;
}
