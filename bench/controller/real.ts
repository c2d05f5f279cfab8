// The controller process (operator/main.ts) against a real kube-apiserver + etcd on loopback, at N
// VirtualServers of the convergence layout (bench/convergence/layout.ts), one director Node and
// its AgentReport. One control plane, the objects created once, then one controller run per
// configuration, each from a published-nothing state (its PlanSlices and the AgentReport deleted):
//   node bench/controller/real.ts N ROOT[:MiB] [ROOT[:MiB] ...]
// ROOT is the checkout whose operator/main.ts runs; MiB, when given, is --max-old-space-size, with
// --max-semi-space-size=1: at 230 that is the heap limit the chart's 60% of 384 Mi gives (233 MiB).
// Per run: the controller's VmRSS and VmHWM (/proc) once every VirtualServer is Programmed, then
// a heap snapshot (--heapsnapshot-signal; taken after a full GC) written to /tmp/ctrl-real-<i>/.
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { startControlPlane } from '../../lab/apiserver/harness.ts';
import { registerNode, NODE_NAME } from '../../lab/apiserver/host-cluster.ts';
import { REPO_ROOT } from '../../lab/vm/vm.ts';
import { restConfigFromKubeConfig, RestKubeApi } from '../../kube/rest.ts';
import { buildAgentReport } from '../../api/agent-report.ts';
import { AGENT_REPORTS, ENDPOINT_SLICES, NAMESPACES, PLAN_SLICES, SERVICES, VIP_POOLS, VIRTUAL_SERVERS, type KubeObject, type VirtualServerObject } from '../../kube/types.ts';
import { processMemory } from '../lib/machine.ts';
import { NS, serviceManifest, sliceManifest, virtualServerManifest } from '../convergence/layout.ts';

const log = (m: string) => console.log(`# ${new Date().toISOString().slice(11, 19)} ${m}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function pool(n: number, width: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => { while (next < n) await fn(next++); }));
}

async function listAll<T extends KubeObject>(api: RestKubeApi, rt: typeof VIRTUAL_SERVERS): Promise<T[]> {
  const out: T[] = [];
  let cont: string | undefined;
  do {
    const page = await api.list(rt, { limit: 1000, ...(cont ? { continue: cont } : {}) });
    out.push(...(page.items as T[]));
    cont = page.continue;
  } while (cont);
  return out;
}

const programmed = (v: VirtualServerObject) => v.status?.conditions?.find((c) => c.type === 'Programmed')?.status;

async function waitUntil(what: string, probe: () => Promise<boolean>, child: { exitCode: number | null }): Promise<void> {
  const end = Date.now() + 30 * 60_000;
  while (!(await probe())) {
    if (child.exitCode !== null) throw new Error(`the controller exited ${child.exitCode} waiting for ${what}`);
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5000);
  }
}

async function runController(i: number, spec: string, n: number, api: RestKubeApi, kubeconfig: string): Promise<Record<string, unknown>> {
  const [root, cap] = spec.split(':') as [string, string | undefined];
  const dir = `/tmp/ctrl-real-${i}`;
  mkdirSync(dir, { recursive: true });
  const args = [...(cap ? [`--max-old-space-size=${cap}`, '--max-semi-space-size=1'] : []), '--heapsnapshot-signal=SIGUSR2', join(root, 'operator/main.ts'), '--metrics-port=0', '--leader-elect=false'];
  const child = spawn(join(REPO_ROOT, 'node_modules/.bin/node'), args, { cwd: dir, env: { ...process.env, KUBECONFIG: kubeconfig, POD_NAME: `bench-${i}`, LOG_LEVEL: 'info' }, stdio: ['ignore', 'ignore', 'inherit'] });
  const t0 = Date.now();
  log(`run ${i}: ${spec}: pid ${child.pid}`);
  let slicesAt = 0;
  await waitUntil('every plan published', async () => {
    const slices = (await api.list(PLAN_SLICES, { limit: 1 })).items.length ? (await listAll(api, PLAN_SLICES)).length : 0;
    const vss = await listAll<VirtualServerObject>(api, VIRTUAL_SERVERS);
    const waiting = vss.filter((v) => programmed(v) === 'Unknown').length;
    log(`run ${i}: ${slices} slices, ${waiting} VirtualServers Programmed=Unknown; controller ${JSON.stringify(processMemory(child.pid))}`);
    return slices === n && waiting === n;
  }, child);
  slicesAt = Date.now() - t0;
  const slices = await listAll(api, PLAN_SLICES);
  const synced = slices.reduce((m, s) => Math.max(m, Number(s.metadata.resourceVersion)), 0);
  await api.create(AGENT_REPORTS, undefined, buildAgentReport(NODE_NAME, { syncedResourceVersion: String(synced), nodeErrors: [], failing: [], frozen: [], prepared: [] }) as unknown as KubeObject);
  await waitUntil('every VirtualServer Programmed', async () => {
    const done = (await listAll<VirtualServerObject>(api, VIRTUAL_SERVERS)).filter((v) => programmed(v) === 'True').length;
    log(`run ${i}: ${done} Programmed=True; controller ${JSON.stringify(processMemory(child.pid))}`);
    return done === n;
  }, child);
  const convergedMs = Date.now() - t0;
  await sleep(10_000);
  const mem = processMemory(child.pid);
  child.kill('SIGUSR2');
  let size = -1;
  for (;;) {
    await sleep(5000);
    const f = readdirSync(dir).find((x) => x.endsWith('.heapsnapshot'));
    const s = f ? statSync(join(dir, f)).size : -1;
    if (s > 0 && s === size) break;
    size = s;
  }
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  return { run: i, spec, publishedMs: slicesAt, convergedMs, memory: mem, snapshotDir: dir };
}

async function reset(api: RestKubeApi, cp: Awaited<ReturnType<typeof startControlPlane>>): Promise<void> {
  await cp.kubectl(['delete', 'planslices', '--all', '--wait=true'], { timeoutMs: 600_000 });
  await api.delete(AGENT_REPORTS, undefined, NODE_NAME).catch(() => {});
}

async function main(): Promise<void> {
  const [nArg, ...specs] = process.argv.slice(2);
  const n = Number(nArg);
  const cp = await startControlPlane({ log });
  try {
    await cp.installCrds('crds');
    const ok = async (a: string[]) => { const r = await cp.kubectl(a); if (r.code !== 0) throw new Error(`kubectl ${a.join(' ')}: ${r.stderr}`); };
    await ok(['apply', '-f', join(REPO_ROOT, 'operator/rbac/clusterrole.yaml'), '-f', join(REPO_ROOT, 'operator/rbac/owned-policy.yaml')]);
    await ok(['create', 'clusterrolebinding', 'lvs-operator', '--clusterrole=lvs-operator', '--user=lvs-operator']);
    await registerNode(cp);
    const operatorKc = await cp.userKubeconfig('lvs-operator');
    const kc = new KubeConfig();
    kc.loadFromFile(cp.kubeconfig.path);
    const api = new RestKubeApi(await restConfigFromKubeConfig(kc));
    const t0 = Date.now();
    await api.create(NAMESPACES, undefined, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    await api.create(VIP_POOLS, undefined, {
      apiVersion: 'lvs.dev/v1alpha1', kind: 'VIPPool', metadata: { name: 'bench' },
      spec: { addresses: ['198.51.100.0/24', '203.0.113.0/24'], allocation: { namespaces: [NS] }, forwarding: ['NAT'], staticRealServers: ['10.244.0.0/16'] },
    } as KubeObject);
    await pool(n, 16, (i) => api.create(SERVICES, NS, serviceManifest(i) as unknown as KubeObject));
    await pool(n, 16, (i) => api.create(ENDPOINT_SLICES, NS, sliceManifest(i, NODE_NAME) as unknown as KubeObject));
    await pool(n, 16, (i) => api.create(VIRTUAL_SERVERS, NS, virtualServerManifest(i) as unknown as KubeObject));
    log(`created ${n} Services, EndpointSlices, VirtualServers in ${Date.now() - t0} ms`);
    for (const [i, spec] of specs.entries()) {
      if (i > 0) await reset(api, cp);
      console.log(`RESULT ${JSON.stringify(await runController(i, spec, n, api, operatorKc.path))}`);
    }
  } finally {
    await cp.stop();
  }
}

await main();
