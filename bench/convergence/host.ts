// Host side of the convergence benchmark, one fresh cluster and one VM boot per size: the system
// tier's control plane (real kube-apiserver + etcd, CRDs, RBAC, the real controller as a child
// process, the Node of the VM), N Services + EndpointSlices + VirtualServers created here in bulk,
// then bench/convergence/guest.ts in the VM with the real agent reaching the apiserver through
// qemu's guestfwd. Its `BENCH-JSON` lines are collected into one record per size.
//
// Environment: BENCH_CONVERGENCE_SIZES (default 100,5000), BENCH_CONVERGENCE_CHANGES (per size,
// default 200), BENCH_CONVERGENCE_BUDGET_MIN (most minutes of changes per size, default 60),
// BENCH_CONVERGENCE_TIMEOUT_MIN (VM deadline per size, default 150), BENCH_CONVERGENCE_HEAP_MIB (the
// controller and the agent run with --max-old-space-size of this many MiB; the chart's
// --max-old-space-size-percentage=60 under its 384Mi limit gives 230; default: no cap, V8's own),
// BENCH_CONVERGENCE_AGENT_CPU_PROF (a path prefix: the agent runs with --cpu-prof, a sample per
// 10 ms, and its profile of each size is written to PREFIX-N.cpuprofile),
// BENCH_CONVERGENCE_AGENT_NODE_OPTIONS (more options for the agent's Node, e.g.
// --max-semi-space-size=4; recorded in the run's events), BENCH_CONVERGENCE_CONTROLLER_NODE_OPTIONS
// (the same for the controller; recorded as a controllerNodeOptions event),
// BENCH_CONVERGENCE_WAIT_CONTROLLER (default 1: the changes start once the controller's work queue
// has been empty for 10 s, read from its metrics through a second guestfwd; 0: as soon as the
// plans are quiet, during the controller's catch-up after its start), BENCH_CONVERGENCE_BURSTS
// (default 0) bursts of BENCH_CONVERGENCE_BURST_SIZE (default 100) slices written at once, spread
// among the changes and counted in BENCH_CONVERGENCE_CHANGES; reported apart;
// BENCH_CONVERGENCE_DIRECTORS (1 or 2, default 1: 2 registers a second director node whose agent
// runs in a network namespace of the VM, ./second.ts; changes are timed on the first).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { apiserverPrereqs } from '../../lab/apiserver/harness.ts';
import { kernelPrereqs, runInVm } from '../../lab/vm/vm.ts';
import { addAgentNode, GUEST_API_PORT, NODE_NAME, startHostCluster } from '../../lab/apiserver/host-cluster.ts';
import { Kube } from '../../lab/guest/kube.ts';
import { SERVICES, SLICES, VIP_POOLS, VIRTUAL_SERVERS } from '../../lab/guest/objects.ts';
import { HEAP_REPORT_OPTIONS, heapReport, load, machine, processMemory, type Load, type Machine, type ProcessMemory } from '../lib/machine.ts';
import { MAX_SERVICES, NS, serviceManifest, sliceManifest, virtualServerManifest } from './layout.ts';

export interface ConvergenceRun {
  n: number;
  /** Director nodes (runs from 2026-12-08 on; absent = 1). */
  directors?: number;
  loadBefore: Load;
  loadAfter: Load;
  /** host cluster start, object creation (ms) */
  setup: Record<string, number>;
  vm: { bootMs: number; totalMs: number; exitCode: number; timedOut: boolean };
  complete: boolean;
  /** The controller process (on the host) after the run: its resident set then and its peak. */
  controllerMemory?: ProcessMemory & { heap?: Record<string, unknown> };
  /**
   * The controller's reconciles that took a second or more, queue wait included (its 'slow
   * reconcile' log, operator/trace.ts): how many, and the slowest (at most 300) with their steps.
   */
  controllerSlow?: { count: number; slowest: Array<Record<string, unknown>> };
  /**
   * The controller's garbage-collection pauses of 20 ms or more over the whole run, start-up
   * included (its `op: gc` lines, kube/gc-log.ts; the host cluster runs it at debug): how many,
   * their sum (ms) and the 20 longest (startedAt: wall ms, the host's clock).
   */
  controllerGc?: { count: number; totalMs: number; longest: Array<{ startedAt: number; ms: number; kind: string }> };
  events: Array<Record<string, unknown>>;
}

export interface ConvergenceRecord {
  bench: 'convergence';
  command: string;
  machine: Machine;
  changes: number;
  runs: ConvergenceRun[];
}

export function sizesFromEnv(): number[] {
  const v = process.env.BENCH_CONVERGENCE_SIZES ?? '100,5000';
  const sizes = v.split(',').map(Number);
  if (sizes.some((n) => !Number.isInteger(n) || n < 1 || n > MAX_SERVICES)) {
    throw new Error(`BENCH_CONVERGENCE_SIZES: ${JSON.stringify(v)} is not a list of service counts (1..${MAX_SERVICES}) like 100,5000`);
  }
  return sizes;
}

function positive(name: string, dflt: number): number {
  const raw = process.env[name];
  const v = raw === undefined ? dflt : Number(raw);
  if (!(v > 0)) throw new Error(`${name}: ${JSON.stringify(raw)} is not a positive number`);
  return v;
}

const profileChunks: string[] = [];
/** Takes the guest's `BENCH-PROF` lines; at the end writes PREFIX-N.cpuprofile. True for a profile line. */
function collectProfile(line: string, prefix: string, n: number, log: (m: string) => void): boolean {
  const i = line.indexOf('BENCH-PROF');
  if (i < 0) return false;
  if (line.startsWith('BENCH-PROF-END', i)) {
    const file = `${prefix}-${n}.cpuprofile`;
    writeFileSync(file, gunzipSync(Buffer.from(profileChunks.join(''), 'base64')));
    profileChunks.length = 0;
    log(`convergence ${n}: the agent's CPU profile is in ${file}`);
  } else profileChunks.push(line.slice(i + 'BENCH-PROF '.length).trim());
  return true;
}

/** The second director's Node (BENCH_CONVERGENCE_DIRECTORS=2). */
const SECOND_NODE = { name: 'lvs-node-2', ip: '10.0.2.16' };

function directorsFromEnv(): 1 | 2 {
  const v = process.env.BENCH_CONVERGENCE_DIRECTORS ?? '1';
  if (v !== '1' && v !== '2') throw new Error(`BENCH_CONVERGENCE_DIRECTORS: ${JSON.stringify(v)} must be 1 or 2`);
  return v === '2' ? 2 : 1;
}

/** Where the guest reaches the controller's metrics (guestfwd). */
const GUEST_METRICS_PORT = 8081;

/** The controller's metrics port, from its start line (it listens on a free port). */
async function controllerMetricsPort(logs: ReadonlyArray<Record<string, unknown>>): Promise<number> {
  for (let i = 0; i < 300; i++) {
    const port = logs.find((l) => l.op === 'start' && typeof l.metricsPort === 'number')?.metricsPort;
    if (typeof port === 'number') return port;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the controller logged no metrics port within 30 s');
}

/** BENCH_CONVERGENCE_HEAP_MIB, when set: both processes' old-space cap in MiB. */
export function heapCap(): number | undefined {
  return process.env.BENCH_CONVERGENCE_HEAP_MIB === undefined ? undefined : positive('BENCH_CONVERGENCE_HEAP_MIB', 0);
}

/** Runs `fn` over 0..n-1 with `width` in flight. */
async function pool(n: number, width: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(width, n) }, async () => {
    while (next < n) await fn(next++);
  }));
}

async function createObjects(kube: Kube, n: number, log: (m: string) => void): Promise<Record<string, number>> {
  const t0 = Date.now();
  await kube.create({ group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false }, undefined, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
  // What the cluster admin grants the benchmark's namespace (VIPs are deny-by-default): its VIP
  // blocks for NAT, and its pod range as real servers (the endpoints name Pods that do not exist).
  await kube.create(VIP_POOLS, undefined, {
    apiVersion: 'lvs.dev/v1alpha1', kind: 'VIPPool', metadata: { name: 'bench' },
    spec: { addresses: ['198.51.100.0/24', '203.0.113.0/24'], allocation: { namespaces: [NS] }, forwarding: ['NAT'], staticRealServers: ['10.244.0.0/16'] },
  });
  await pool(n, 16, (i) => kube.create(SERVICES, NS, serviceManifest(i)));
  await pool(n, 16, (i) => kube.create(SLICES, NS, sliceManifest(i, NODE_NAME)));
  const t1 = Date.now();
  await pool(n, 16, (i) => kube.create(VIRTUAL_SERVERS, NS, virtualServerManifest(i)));
  const t2 = Date.now();
  log(`created ${n} Services + EndpointSlices in ${t1 - t0} ms, ${n} VirtualServers in ${t2 - t1} ms`);
  return { servicesAndSlicesMs: t1 - t0, virtualServersMs: t2 - t1 };
}

async function runSize(n: number, changes: number, log: (m: string) => void): Promise<ConvergenceRun> {
  const loadBefore = load();
  log(`convergence ${n}: load before: ${loadBefore.uptime}`);
  const heapMib = heapCap();
  const profile = process.env.BENCH_CONVERGENCE_AGENT_CPU_PROF;
  // The controller's V8 heap at the end (heapReport), beside its peak RSS.
  const reports = mkdtempSync(join(tmpdir(), 'bench-controller-heap-'));
  const controllerNodeOptions = [heapMib ? `--max-old-space-size=${heapMib}` : '', process.env.BENCH_CONVERGENCE_CONTROLLER_NODE_OPTIONS ?? '', HEAP_REPORT_OPTIONS(reports)].filter(Boolean).join(' ');
  const allocator = allocatorEnv();
  const hc = await startHostCluster(log, { controllerNodeOptions });
  const events: Array<Record<string, unknown>> = [{ type: 'controllerNodeOptions', nodeOptions: controllerNodeOptions }];
  if (Object.keys(allocator).length) events.push({ type: 'allocatorEnv', env: allocator });
  try {
    // Registered before the objects exist: the controller directs every plan to both from the start.
    const directors = directorsFromEnv();
    const agent2 = directors === 2 ? await addAgentNode(hc.cp, SECOND_NODE.name, SECOND_NODE.ip) : undefined;
    const kube = new Kube(hc.cp.kubeconfig.path);
    const created = await createObjects(kube, n, log).finally(() => kube.close());
    const api = Number(new URL(hc.cp.url).port);
    const metricsPort = process.env.BENCH_CONVERGENCE_WAIT_CONTROLLER === '0' ? undefined : await controllerMetricsPort(hc.controller.logs);
    const result = await runInVm({
      command: 'node_modules/.bin/node bench/convergence/guest.ts',
      timeoutMs: positive('BENCH_CONVERGENCE_TIMEOUT_MIN', 150) * 60_000,
      memoryMb: 2048,
      guestfwd: [{ guestPort: GUEST_API_PORT, hostPort: api }, ...(metricsPort ? [{ guestPort: GUEST_METRICS_PORT, hostPort: metricsPort }] : [])],
      env: {
        BENCH_CONVERGENCE_N: String(n), BENCH_CONVERGENCE_CHANGES: String(changes), BENCH_CONVERGENCE_NODE: NODE_NAME,
        BENCH_CONVERGENCE_ADMIN_KUBECONFIG: hc.guest.admin, BENCH_CONVERGENCE_AGENT_KUBECONFIG: hc.guest.agent,
        BENCH_CONVERGENCE_BUDGET_MIN: String(positive('BENCH_CONVERGENCE_BUDGET_MIN', 60)),
        BENCH_CONVERGENCE_PROGRAM_MIN: String(positive('BENCH_CONVERGENCE_PROGRAM_MIN', 20)),
        ...(heapMib ? { BENCH_CONVERGENCE_HEAP_MIB: String(heapMib) } : {}),
        ...(agent2 ? { BENCH_CONVERGENCE_AGENT2_KUBECONFIG: agent2, BENCH_CONVERGENCE_NODE2: SECOND_NODE.name } : {}),
        ...(metricsPort ? { BENCH_CONVERGENCE_CONTROLLER_METRICS: `http://10.0.2.100:${GUEST_METRICS_PORT}/metrics` } : {}),
        ...(profile ? { BENCH_CONVERGENCE_AGENT_CPU_PROF: '1' } : {}),
        ...(process.env.BENCH_CONVERGENCE_BURSTS ? { BENCH_CONVERGENCE_BURSTS: String(positive('BENCH_CONVERGENCE_BURSTS', 0)) } : {}),
        ...(process.env.BENCH_CONVERGENCE_BURST_SIZE ? { BENCH_CONVERGENCE_BURST_SIZE: String(positive('BENCH_CONVERGENCE_BURST_SIZE', 100)) } : {}),
        ...(process.env.BENCH_CONVERGENCE_AGENT_NODE_OPTIONS ? { BENCH_CONVERGENCE_AGENT_NODE_OPTIONS: process.env.BENCH_CONVERGENCE_AGENT_NODE_OPTIONS } : {}),
        // glibc's allocator settings (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_, GLIBC_TUNABLES, ...)
        // reach the agent too (the controller here inherits them): a memory experiment.
        ...allocator,
        // LVS_SYSTEM_ECHO_AGENT=1: the agent's own output on this console (lab/guest/agent.ts).
        ...(process.env.LVS_SYSTEM_ECHO_AGENT ? { LVS_SYSTEM_ECHO_AGENT: process.env.LVS_SYSTEM_ECHO_AGENT } : {}),
      },
      label: `conv-${n}`,
      echo: (line) => !line.includes('BENCH-PROF'),
      onOutput: (line) => {
        if (profile && collectProfile(line, profile, n, log)) return;
        const i = line.indexOf('BENCH-JSON ');
        if (i >= 0) events.push(JSON.parse(line.slice(i + 11)) as Record<string, unknown>);
      },
    });
    const loadAfter = load();
    const controllerMemory = processMemory(hc.controller.child.pid);
    const controllerHeap = await heapReport(hc.controller.child.pid, reports);
    log(`convergence ${n}: load after: ${loadAfter.uptime}; VM exit ${result.exitCode}${result.timedOut ? ' (timed out)' : ''}`);
    const complete = result.exitCode === 0 && events.some((e) => e.type === 'done');
    const controllerSlow = slowReconciles(hc.controller.logs);
    log(`convergence ${n}: ${controllerSlow.count} slow controller reconciles (>= 1 s with queue wait)`);
    for (const line of slowChanges(events, controllerSlow.all)) log(line);
    const controllerGc = gcPauses(hc.controller.logs);
    log(`convergence ${n}: ${controllerGc.count} controller gc pauses >= 20 ms, ${controllerGc.totalMs} ms in all, longest ${controllerGc.longest[0]?.ms ?? 0} ms`);
    if (hc.controller.child.exitCode !== null) log(`the controller exited ${hc.controller.child.exitCode}: ${hc.controller.stderr().slice(-2000)}`);
    return {
      n, directors, loadBefore, loadAfter, setup: { hostClusterMs: hc.timings.totalMs ?? NaN, ...created },
      vm: { bootMs: result.bootMs, totalMs: result.totalMs, exitCode: result.exitCode, timedOut: result.timedOut }, complete,
      ...(controllerMemory ? { controllerMemory: { ...controllerMemory, heap: controllerHeap } } : {}), controllerSlow: { count: controllerSlow.count, slowest: controllerSlow.slowest }, controllerGc, events,
    };
  } finally {
    await hc.stop();
    rmSync(reports, { recursive: true, force: true });
  }
}

/** This process's glibc allocator settings, recorded with the run and passed to the guest. */
function allocatorEnv(): Record<string, string> {
  return Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => /^(MALLOC_|GLIBC_TUNABLES$)/.test(e[0]) && e[1] !== undefined));
}

type Slow = { time: number; vs: string; ms: number; queuedMs: number; steps: unknown };

function slowReconciles(logs: ReadonlyArray<Record<string, unknown>>): { count: number; all: Slow[]; slowest: Slow[] } {
  const all = logs.filter((l) => l.msg === 'slow reconcile')
    .map((l) => ({ time: Number(l.time), vs: String(l.vs), ms: Number(l.ms), queuedMs: Number(l.queuedMs), steps: l.steps }));
  const slowest = [...all].sort((a, b) => (b.ms + b.queuedMs) - (a.ms + a.queuedMs)).slice(0, 300);
  return { count: all.length, all, slowest };
}

/** The controller's `op: gc` lines (kube/gc-log.ts): count, sum and the 20 longest. */
function gcPauses(logs: ReadonlyArray<Record<string, unknown>>): NonNullable<ConvergenceRun['controllerGc']> {
  const all = logs.filter((l) => l.op === 'gc' && typeof l.ms === 'number')
    .map((l) => ({ startedAt: Number(l.startedAt), ms: Number(l.ms), kind: String(l.kind) }));
  const totalMs = Math.round(all.reduce((sum, p) => sum + p.ms, 0) * 10) / 10;
  return { count: all.length, totalMs, longest: [...all].sort((a, b) => b.ms - a.ms).slice(0, 20) };
}

/**
 * The 10 changes the controller published slowest (plan seen after the write), each with its
 * VirtualServer's slow reconciles between the write and 10 s after the plan was seen (host and
 * guest wall clocks; the guest's is set from the host's at boot).
 */
function slowChanges(events: ReadonlyArray<Record<string, unknown>>, slow: readonly Slow[]): string[] {
  const changes = events.filter((e) => e.type === 'change' && typeof e.planSeenMs === 'number' && typeof e.at === 'number')
    .sort((a, b) => Number(b.planSeenMs) - Number(a.planSeenMs)).slice(0, 10);
  return changes.map((e) => {
    const at = Number(e.at), vs = `${NS}/svc-${String(e.svc)}`;
    const mine = slow.filter((r) => r.vs === vs && r.time >= at - 1000 && r.time <= at + Number(e.planSeenMs) + 10_000);
    const text = mine.map((r) => `+${((r.time - at) / 1000).toFixed(1)} s ${r.ms} ms (queued ${r.queuedMs} ms) ${JSON.stringify(r.steps)}`).join('; ');
    return `plan seen ${Number(e.planSeenMs).toFixed(0)} ms after the write of ${vs}: ${text || 'no slow reconcile of it logged'}`;
  });
}

export async function runConvergenceBench(opts: { command: string }): Promise<ConvergenceRecord> {
  const missing = kernelPrereqs() ?? apiserverPrereqs();
  if (missing) throw new Error(`convergence benchmark needs the VM and the control plane: ${missing}`);
  const sizes = sizesFromEnv();
  const changes = positive('BENCH_CONVERGENCE_CHANGES', 200);
  const log = (m: string) => console.log(`# ${m}`);
  const record: ConvergenceRecord = { bench: 'convergence', command: opts.command, machine: machine(), changes, runs: [] };
  for (const n of sizes) {
    const run = await runSize(n, changes, log);
    record.runs.push(run);
    // Kept (and shown as incomplete) rather than thrown: the other sizes' figures stay recorded.
    if (!run.events.some((e) => e.type === 'change')) console.error(`# convergence ${n}: the VM measured no change (exit ${run.vm.exitCode}${run.vm.timedOut ? ', timed out' : ''})`);
  }
  return record;
}
