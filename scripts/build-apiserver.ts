#!/usr/bin/env node
// Builds the real control plane the apiserver tier runs: kube-apiserver and kubectl from the
// k8s.io/kubernetes Go module (and kube-proxy, which the lab runs inside the VM), etcd from go.etcd.io/etcd/server/v3, each through a small wrapper
// module in test/apiserver/build/. Binaries are cached outside the repo, keyed by version:
//   ~/.cache/lvs-operator/bin/<name>-<version>/<name>
//
//   node scripts/build-apiserver.ts            build whatever is not cached yet (idempotent)
//   node scripts/build-apiserver.ts generate   rewrite the wrapper go.mod files for the versions
//                                              below (k/k's staging replace block included), then
//                                              `go mod tidy` them; commit the result
//   node scripts/build-apiserver.ts paths      print the binary paths as JSON
//
// Why the replace block: k8s.io/kubernetes's own go.mod points every staging module (k8s.io/api,
// apimachinery, client-go, ...) at ./staging/src/..., and a dependency's replace directives are
// ignored by the module that depends on it. It still requires those modules at v0.0.0, which the
// proxy cannot serve, so the wrapper maps each one to the published v0.<minor>.<patch> of the
// same release. The list is read from k/k's go.mod in the module cache, never written by hand.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const KUBERNETES_VERSION = 'v1.34.4';
export const ETCD_VERSION = 'v3.6.16';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const buildDir = join(root, 'test/apiserver/build');

export type BinaryName = 'kube-apiserver' | 'kubectl' | 'kube-proxy' | 'etcd' | 'kube-controller-manager' | 'kube-scheduler' | 'kubelet';

interface Binary { name: BinaryName; version: string; module: 'kube' | 'etcd'; pkg: string; ldflags: string[] }

function kubeLdflags(v: string): string[] {
  const [major, minor] = v.slice(1).split('.');
  const vars = { gitVersion: v, gitMajor: major, gitMinor: minor, gitTreeState: 'clean' };
  // component-base/version feeds `kube-apiserver --version` and /version; client-go's copy feeds kubectl.
  return ['k8s.io/component-base/version', 'k8s.io/client-go/pkg/version'].flatMap((pkg) =>
    Object.entries(vars).map(([k, val]) => `-X ${pkg}.${k}=${val}`));
}

export const BINARIES: readonly Binary[] = [
  { name: 'etcd', version: ETCD_VERSION, module: 'etcd', pkg: '.', ldflags: [] },
  { name: 'kube-apiserver', version: KUBERNETES_VERSION, module: 'kube', pkg: './kube-apiserver', ldflags: kubeLdflags(KUBERNETES_VERSION) },
  { name: 'kubectl', version: KUBERNETES_VERSION, module: 'kube', pkg: './kubectl', ldflags: kubeLdflags(KUBERNETES_VERSION) },
  // Not part of the control plane: run inside the VM next to the agent (lab/guest/kube-proxy.ts).
  { name: 'kube-proxy', version: KUBERNETES_VERSION, module: 'kube', pkg: './kube-proxy', ldflags: kubeLdflags(KUBERNETES_VERSION) },
  // The cluster tier's real cluster (test/cluster): controllers and scheduler on this host, the
  // kubelet inside the VM beside containerd.
  { name: 'kube-controller-manager', version: KUBERNETES_VERSION, module: 'kube', pkg: './kube-controller-manager', ldflags: kubeLdflags(KUBERNETES_VERSION) },
  { name: 'kube-scheduler', version: KUBERNETES_VERSION, module: 'kube', pkg: './kube-scheduler', ldflags: kubeLdflags(KUBERNETES_VERSION) },
  { name: 'kubelet', version: KUBERNETES_VERSION, module: 'kube', pkg: './kubelet', ldflags: kubeLdflags(KUBERNETES_VERSION) },
];

export function cacheRoot(): string {
  return process.env.LVS_CACHE_DIR ?? join(homedir(), '.cache/lvs-operator');
}

export function binaryPath(name: BinaryName): string {
  const b = BINARIES.find((x) => x.name === name);
  if (!b) throw new Error(`unknown binary ${name}`);
  return join(cacheRoot(), 'bin', `${b.name}-${b.version}`, b.name);
}

export function missingBinaries(): BinaryName[] {
  return BINARIES.filter((b) => !existsSync(binaryPath(b.name))).map((b) => b.name);
}

function log(msg: string): void {
  console.log(`[build-apiserver] ${msg}`);
}

function go(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): string {
  // nice: the machine's two cores are shared; a build must not starve everyone else.
  const r = spawnSync('nice', ['-n', '10', 'go', ...args], {
    cwd, env: { ...process.env, GOFLAGS: '-mod=mod', ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 << 20,
  });
  if (r.error) throw new Error(`go ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`go ${args.join(' ')} (in ${cwd}) exited ${r.status}`);
  return r.stdout;
}

function timed<T>(what: string, fn: () => T): T {
  const t0 = performance.now();
  log(`${what} ...`);
  // fn blocks this process (spawnSync) for minutes on a cold machine: a small shell says every
  // 30 s that the build is still going, and stops with this process.
  const beat = spawn('bash', ['-c', `s=0; while sleep 30 && kill -0 ${process.pid} 2>/dev/null; do s=$((s+30)); echo "[build-apiserver] ${what.replace(/[^\w .()/-]/g, '')}: still running, $s s so far"; done`],
    { stdio: ['ignore', 'inherit', 'ignore'] });
  try {
    const out = fn();
    log(`${what}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return out;
  } finally {
    beat.kill('SIGKILL');
  }
}

// --- generate -----------------------------------------------------------------------------

/** v1.34.4 -> v0.34.4: staging modules are published with major 0 and the release's minor.patch. */
function stagingVersion(kubeVersion: string): string {
  return `v0.${kubeVersion.slice(1).split('.').slice(1).join('.')}`;
}

/** The staging replace block of k/k's go.mod, mapped to the published modules of the release. */
export function stagingReplaces(kkGoMod: string, kubeVersion: string): string[] {
  const block = /^replace \(\n([\s\S]*?)^\)/m.exec(kkGoMod);
  if (!block?.[1]) throw new Error('k8s.io/kubernetes go.mod has no replace ( ... ) block');
  const staging = stagingVersion(kubeVersion);
  return block[1].split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('//')).map((line) => {
    const m = /^(\S+) => \.\/staging\/src\/(\S+)$/.exec(line);
    if (!m || m[1] !== m[2]) throw new Error(`unexpected replace in k8s.io/kubernetes go.mod: ${line}`);
    return `${m[1]} => ${m[1]} ${staging}`;
  }).sort();
}

function kubeGoMod(kkGoMod: string): string {
  const godebug = kkGoMod.split('\n').filter((l) => l.startsWith('godebug '));
  return [
    `// Generated by scripts/build-apiserver.ts from k8s.io/kubernetes@${KUBERNETES_VERSION}'s go.mod: do not edit.`,
    'module lvs-operator.test/apiserver/build/kube',
    '',
    'go 1.24.0',
    '',
    ...godebug, ...(godebug.length ? [''] : []),
    // kubectl's main imports the staging module directly: require it at its published version.
    `require (\n\tk8s.io/kubectl ${stagingVersion(KUBERNETES_VERSION)}\n\tk8s.io/kubernetes ${KUBERNETES_VERSION}\n)`,
    '',
    'replace (',
    ...stagingReplaces(kkGoMod, KUBERNETES_VERSION).map((r) => `\t${r}`),
    ')',
    '',
  ].join('\n');
}

function etcdGoMod(): string {
  return [
    '// Generated by scripts/build-apiserver.ts: do not edit.',
    'module lvs-operator.test/apiserver/build/etcd',
    '',
    'go 1.24.0',
    '',
    `require go.etcd.io/etcd/server/v3 ${ETCD_VERSION}`,
    '',
  ].join('\n');
}

function generate(): void {
  const dl = timed(`go mod download k8s.io/kubernetes@${KUBERNETES_VERSION}`, () =>
    go(['mod', 'download', '-json', `k8s.io/kubernetes@${KUBERNETES_VERSION}`], root));
  const { GoMod } = JSON.parse(dl) as { GoMod: string };
  const kkGoMod = readFileSync(GoMod, 'utf8');
  writeFileSync(join(buildDir, 'kube/go.mod'), kubeGoMod(kkGoMod));
  writeFileSync(join(buildDir, 'etcd/go.mod'), etcdGoMod());
  for (const m of ['etcd', 'kube']) {
    rmSync(join(buildDir, m, 'go.sum'), { force: true });
    timed(`go mod tidy (${m}; downloads the module graph)`, () => go(['mod', 'tidy'], join(buildDir, m)));
  }
}

// --- build --------------------------------------------------------------------------------

function checkWrapper(b: Binary): void {
  const goMod = readFileSync(join(buildDir, b.module, 'go.mod'), 'utf8');
  const want = b.module === 'kube' ? `k8s.io/kubernetes ${b.version}` : `go.etcd.io/etcd/server/v3 ${b.version}`;
  if (!goMod.includes(want)) {
    throw new Error(`test/apiserver/build/${b.module}/go.mod does not require ${want}: run \`node scripts/build-apiserver.ts generate\``);
  }
}

function build(b: Binary): void {
  const out = binaryPath(b.name);
  if (existsSync(out)) { log(`${b.name} ${b.version}: cached at ${out}`); return; }
  checkWrapper(b);
  const cwd = join(buildDir, b.module);
  timed(`${b.module} module download (go mod download)`, () => go(['mod', 'download'], cwd));
  mkdirSync(dirname(out), { recursive: true });
  const tmp = `${out}.tmp-${process.pid}`;
  try {
    timed(`go build -trimpath ${b.name} ${b.version}`, () =>
      go(['build', '-trimpath', '-ldflags', ['-s', '-w', ...b.ldflags].join(' '), '-o', tmp, b.pkg], cwd));
    renameSync(tmp, out); // atomic: a half-written binary is never mistaken for a cached one
  } finally {
    rmSync(tmp, { force: true });
  }
  log(`${b.name} ${b.version}: built at ${out}`);
}

/** Builds every binary that is not cached, one at a time. Throws with the failing step. */
export function ensureBinaries(): Record<BinaryName, string> {
  if (missingBinaries().length === 0) {
    for (const b of BINARIES) log(`${b.name} ${b.version}: cached at ${binaryPath(b.name)}`);
    return paths();
  }
  const release = buildLock();
  try {
    for (const b of BINARIES) build(b);
  } finally {
    release();
  }
  return paths();
}

const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

function pidAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

// One build at a time per machine: two test runs (or two engineers) starting cold must not run two
// 20-minute kube-apiserver links side by side on two shared cores. mkdir is the atomic step.
function buildLock(): () => void {
  const dir = join(cacheRoot(), 'bin', '.build.lock');
  mkdirSync(dirname(dir), { recursive: true });
  let waited = false;
  for (;;) {
    try {
      mkdirSync(dir);
      writeFileSync(join(dir, 'pid'), String(process.pid));
      return () => rmSync(dir, { recursive: true, force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const holder = Number(readFileSync(join(dir, 'pid'), { encoding: 'utf8', flag: 'a+' }) || 0);
    // No pid a minute after mkdir: the holder died between its two steps.
    const stale = holder ? !pidAlive(holder) : Date.now() - statSync(dir).mtimeMs > 60_000;
    if (stale) { log(`removing stale build lock (pid ${holder || 'none'})`); rmSync(dir, { recursive: true, force: true }); continue; }
    if (!waited) { log(`another build (pid ${holder || '?'}) holds ${dir}: waiting for it`); waited = true; }
    sleepSync(5000);
  }
}

export function paths(): Record<BinaryName, string> {
  return Object.fromEntries(BINARIES.map((b) => [b.name, binaryPath(b.name)])) as Record<BinaryName, string>;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const cmd = process.argv[2] ?? 'build';
  try {
    if (cmd === 'generate') generate();
    else if (cmd === 'build') ensureBinaries();
    else if (cmd === 'paths') console.log(JSON.stringify(paths(), null, 2));
    else { console.error(`usage: build-apiserver.ts [build|generate|paths]`); process.exit(2); }
  } catch (e) {
    console.error(`[build-apiserver] ${(e as Error).message}`);
    process.exit(1);
  }
}
