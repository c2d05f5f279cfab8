// Health-check benchmark: one agent's HealthMonitor (dataplane/health, real checkers) checking
// N real servers every interval — loopback addresses 127.1.x.y × PORTS listener ports served by
// a separate process (./servers.ts) — measuring the agent process's CPU (process.cpuUsage over
// the window, user + system), probes per second, how evenly they are spread (probes per 100 ms
// bucket: max against mean) and the event-loop delay. Run on the host (no VM): the probes are
// the same syscalls a director makes; only the network path is loopback.
import { spawn } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import type { PlanService } from '../../api/plan.ts';
import { realClock } from '../../kube/clock.ts';
import { createAgentHealth } from '../../dataplane/health/agent-health.ts';
import { realChecker, type Probe } from '../../dataplane/health/check.ts';
import { load, machine, type Load, type Machine } from '../lib/machine.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const PORTS = 100;
const TCP_BASE = 21000;
const HTTP_BASE = 22000;

export interface HealthCase {
  type: 'tcp' | 'http';
  realServers: number;
  intervalSeconds: number;
  windowSeconds: number;
  probesPerSecond: number;
  failures: number;
  /** CPU of the agent process over the window, in cores (1 = one core busy). */
  cpuCores: number;
  /** Probes per 100 ms bucket: the fullest bucket against the mean. */
  burstMax: number;
  burstMean: number;
  eventLoopDelayP99Ms: number;
  rssMiB: number;
}

export interface HealthRecord {
  command: string;
  machine: Machine;
  loadBefore: Load;
  loadAfter: Load;
  cases: HealthCase[];
}

function plan(n: number, type: 'tcp' | 'http', intervalSeconds: number): PlanService[] {
  const perService = 1000;
  const out: PlanService[] = [];
  for (let s = 0; s * perService < n; s++) {
    const realServers = [];
    for (let i = s * perService; i < Math.min(n, (s + 1) * perService); i++) {
      const host = Math.floor(i / PORTS);
      realServers.push({ address: `127.1.${Math.floor(host / 250)}.${(host % 250) + 1}`, port: (type === 'tcp' ? TCP_BASE : HTTP_BASE) + (i % PORTS), weight: 1, state: 'Ready' as const });
    }
    out.push({
      key: `TCP/192.0.2.${s + 1}:80`, owner: { namespace: 'bench', name: `vs-${s}`, generation: 1 }, portName: 'p', vip: `192.0.2.${s + 1}`, family: 4, protocol: 'TCP', port: 80,
      forwarding: 'NAT', scheduler: { name: 'wlc', flags: [] }, prepareRealServers: false, directors: ['bench'], realServers,
      healthCheck: { type, ...(type === 'http' ? { path: '/healthz' } : {}), intervalSeconds, timeoutSeconds: 1, failureThreshold: 3, successThreshold: 1, onFailure: 'Quiesce' },
    });
  }
  return out;
}

async function measure(type: 'tcp' | 'http', n: number, intervalSeconds: number, windowSeconds: number): Promise<HealthCase> {
  const log = pino({ level: 'silent' });
  // Probes per 100 ms bucket, by the time each probe started (the real checker, wrapped).
  const buckets = new Map<number, number>();
  let t0 = Infinity;
  const checker = (p: Probe) => {
    const b = Math.floor((performance.now() - t0) / 100);
    if (b >= 0) buckets.set(b, (buckets.get(b) ?? 0) + 1);
    return realChecker(p);
  };
  const health = createAgentHealth({ node: 'bench', clock: realClock, log, onChange: () => {}, checker });
  health.apply(plan(n, type, intervalSeconds));
  // Warm-up: every target's first check and JIT.
  await new Promise((r) => setTimeout(r, 2 * intervalSeconds * 1000));
  const before = { ...health.monitor.counts };
  t0 = performance.now();
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const cpu0 = process.cpuUsage();
  await new Promise((r) => setTimeout(r, windowSeconds * 1000));
  const cpu = process.cpuUsage(cpu0);
  const wall = (performance.now() - t0) / 1000;
  delay.disable();
  const after = { ...health.monitor.counts };
  health.close();
  const counts = Array.from({ length: Math.floor(wall * 10) }, (_, i) => buckets.get(i) ?? 0);
  const mean = counts.reduce((a, b) => a + b, 0) / Math.max(1, counts.length);
  return {
    type, realServers: n, intervalSeconds, windowSeconds,
    probesPerSecond: Math.round((after.checks - before.checks) / wall),
    failures: after.failures - before.failures,
    cpuCores: Math.round(((cpu.user + cpu.system) / 1e6 / wall) * 1000) / 1000,
    burstMax: Math.max(...counts), burstMean: Math.round(mean * 10) / 10,
    eventLoopDelayP99Ms: Math.round(delay.percentile(99) / 1e5) / 10,
    rssMiB: Math.round(process.memoryUsage().rss / 1048576),
  };
}

export async function runHealthBench(o: { command: string; sizes?: number[]; windowSeconds?: number }): Promise<HealthRecord> {
  const servers = spawn(process.execPath, [join(HERE, 'servers.ts'), String(TCP_BASE), String(HTTP_BASE), String(PORTS)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    servers.stdout.on('data', (d: Buffer) => { if (d.toString().includes('ready')) resolve(); });
    servers.once('exit', (code) => reject(new Error(`servers exited ${code}`)));
  });
  const loadBefore = load();
  const cases: HealthCase[] = [];
  try {
    for (const n of o.sizes ?? [10_000]) {
      for (const type of ['tcp', 'http'] as const) {
        const c = await measure(type, n, 2, o.windowSeconds ?? 30);
        console.log(JSON.stringify(c));
        cases.push(c);
      }
    }
  } finally {
    servers.kill();
  }
  return { command: o.command, machine: machine(), loadBefore, loadAfter: load(), cases };
}
