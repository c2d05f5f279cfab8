// Helpers of the chart tier: the real Helm v4 CLI (built from its Go module by
// scripts/build-helm.sh, cached under ~/.cache/lvs-operator/bin/helm-<version>/) and the rendered
// chart as parsed objects.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';
import { binaryPath } from '../../scripts/build-apiserver.ts';

export const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
export const chartDir = join(root, 'charts/lvs-operator');
export const RELEASE = 'lvs';
export const NAMESPACE = 'lvs-system';

export type Obj = Record<string, any>;
export interface HelmResult { code: number; stdout: string; stderr: string }

let helmBin: string | undefined;

/**
 * Why Helm cannot be had, or undefined. Builds it when it is not cached (minutes when cold;
 * LVS_HELM_NO_BUILD=1 skips the build), so a fresh machine or CI needs only Go.
 */
export function helmPrereqs(): string | undefined {
  const script = join(root, 'scripts/build-helm.sh');
  const cached = spawnSync('bash', [script, '--path'], { encoding: 'utf8' });
  if (cached.status === 0) { helmBin = cached.stdout.trim(); return undefined; }
  if (process.env.LVS_HELM_NO_BUILD === '1') return 'helm not built (scripts/build-helm.sh) and LVS_HELM_NO_BUILD=1';
  if (spawnSync('sh', ['-c', 'command -v go'], { stdio: 'ignore' }).status !== 0) return 'helm not built and no Go toolchain to build it (scripts/build-helm.sh)';
  const built = spawnSync('bash', [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (built.status !== 0) return `scripts/build-helm.sh exited ${built.status ?? built.signal}`;
  helmBin = built.stdout.trim().split('\n').at(-1);
  return undefined;
}

// Helm keeps config, cache and plugin data under $HOME: a scratch HOME makes runs independent of
// the developer's own repositories and plugins.
const scratch = mkdtempSync(join(tmpdir(), 'lvs-chart-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));
let files = 0;

/** Writes a scratch file (values, manifests) and returns its path. */
export function scratchFile(name: string, contents: string): string {
  const path = join(scratch, `${++files}-${name}`);
  writeFileSync(path, contents);
  return path;
}

export function helm(args: string[], opts: { kubeconfig?: string; timeoutMs?: number } = {}): Promise<HelmResult> {
  if (!helmBin) throw new Error('helm: call helmPrereqs() first');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: scratch,
    HELM_CONFIG_HOME: join(scratch, 'config'), HELM_CACHE_HOME: join(scratch, 'cache'), HELM_DATA_HOME: join(scratch, 'data'),
    ...(opts.kubeconfig ? { KUBECONFIG: opts.kubeconfig } : {}),
  };
  return new Promise((resolve, reject) => {
    const child = spawn(helmBin!, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'], timeout: opts.timeoutMs ?? 120_000 });
    let stdout = '', stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c; });
    child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
  });
}

/** `-f <file>` arguments for a values object (empty object: the chart's defaults). */
export function valuesArgs(values: Obj = {}): string[] {
  return Object.keys(values).length ? ['-f', scratchFile('values.yaml', stringify(values))] : [];
}

/** Every object of a multi-document YAML stream (empty documents dropped). */
export function parseDocs(text: string): Obj[] {
  return parseAllDocuments(text).map((d) => {
    if (d.errors.length) throw new Error(`YAML: ${d.errors[0]!.message}`);
    return d.toJS() as Obj | null;
  }).filter((o): o is Obj => o !== null && typeof o === 'object');
}

/** `helm template` of the chart; throws with Helm's stderr when the render fails. */
export async function render(values: Obj = {}, extra: string[] = []): Promise<Obj[]> {
  const r = await helm(['template', RELEASE, chartDir, '--namespace', NAMESPACE, ...valuesArgs(values), ...extra]);
  if (r.code !== 0) throw new Error(`helm template failed (${r.code}):\n${r.stderr}`);
  return parseDocs(r.stdout);
}

/** The one object of `kind` whose name ends with `suffix`; throws naming what exists otherwise. */
export function one(docs: Obj[], kind: string, suffix = ''): Obj {
  const hits = docs.filter((d) => d.kind === kind && String(d.metadata?.name ?? '').endsWith(suffix));
  if (hits.length !== 1) {
    const have = docs.map((d) => `${d.kind}/${d.metadata?.name}`).join(', ');
    throw new Error(`expected one ${kind} named *${suffix}, found ${hits.length}; rendered: ${have}`);
  }
  return hits[0]!;
}

/** Objects as a kubectl-ready YAML stream. */
export function toStream(docs: Obj[]): string {
  return docs.map((d) => stringify(d)).join('---\n');
}

/**
 * kubectl against a harness control plane as its admin. Like ControlPlane.kubectl, but stdin is
 * only a pipe when there is input, and a program that exits without reading it (auth can-i, get)
 * cannot fail the test process with EPIPE.
 */
export function kubectlAt(cp: { kubeconfig: { path: string }; dir: string }, args: string[], stdin?: string): Promise<HelmResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(binaryPath('kubectl'), [`--kubeconfig=${cp.kubeconfig.path}`, `--cache-dir=${join(cp.dir, 'kubectl-cache')}`, ...args], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: cp.dir, KUBERC: 'off' },
      stdio: [stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], timeout: 60_000,
    });
    let stdout = '', stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => { stdout += c; });
    child.stderr!.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
    if (stdin !== undefined) {
      child.stdin!.on('error', () => { /* exit status and stderr tell what happened */ });
      child.stdin!.end(stdin);
    }
  });
}
