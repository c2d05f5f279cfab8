// `npm run bench` — runs the benchmarks, keeps each raw record in bench/results/<name>.json and
// rewrites the generated sections of bench/RESULTS.md from them. Not part of `npm test`.
//
//   npm run bench                      controller, agent (one VM boot, provisioned by the harness), then
//                                      convergence (100 and 5,000 services)
//   npm run bench -- controller        only the controller benchmark
//   npm run bench -- agent             only the agent benchmark
//   npm run bench -- convergence       only the convergence benchmark (apiserver + controller here,
//                                      agent in the VM; one cluster and one VM boot per size)
//   npm run bench -- health            health checks: one agent probing 10,000 real servers every 2 s
//                                      (TCP, then HTTP) on loopback, its CPU and spread (host, no VM)
//   npm run bench -- report            only regenerate RESULTS.md from the stored records
// Environment: BENCH_AGENT_SIZES (default 100x10*5,1000x10*5,10000x10*5,40000x2*5: NxM*repetitions),
// BENCH_AGENT_PROFILE (default 100x10; "none" to skip), BENCH_AGENT_R_FULL_MAX, BENCH_AGENT_NOOP_MAX,
// BENCH_AGENT_TIMEOUT_MIN (see bench/agent/host.ts), BENCH_CONTROLLER_SIZES (default 1000,10000),
// BENCH_CONTROLLER_CHANGES (default 2000), BENCH_AGENT_RECORD (label: save the agent record as
// results/agent-<label>.json beside results/agent.json, pooled with it in the report; an agent run
// without a label replaces agent.json and removes the labelled records), BENCH_CONVERGENCE_SIZES
// (default 100,5000), BENCH_CONVERGENCE_CHANGES (default 200 per size), BENCH_CONVERGENCE_BUDGET_MIN,
// BENCH_CONVERGENCE_TIMEOUT_MIN (see bench/convergence/host.ts), BENCH_HEALTH_SIZES (default
// 10000), BENCH_HEALTH_WINDOW_S (default 30), BENCH_REPLAY_SIZES (default 100,1000,10000,40000),
// BENCH_REPLAY_CHANGES (default 300 per size).
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runAgentBench, type AgentRecord } from './agent/host.ts';
import { runConvergenceBench, type ConvergenceRecord } from './convergence/host.ts';
import { runControllerBench, type ControllerRecord } from './controller/run.ts';
import { runHealthBench, type HealthRecord } from './health/run.ts';
import { replaySection, runReplayBench, type ReplayRecord } from './replay/run.ts';
import { agentSection, controllerSection, convergenceSection, healthSection, replaceSection } from './lib/report.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const RESULTS_DIR = join(HERE, 'results');
const RESULTS_MD = join(HERE, 'RESULTS.md');
const BENCHES = ['controller', 'agent', 'convergence', 'health', 'replay', 'report'] as const;
type Bench = (typeof BENCHES)[number];

function command(bench: string): string {
  const prefix = `BENCH_${bench.toUpperCase()}_`;
  const env = Object.entries(process.env).filter(([k]) => k.startsWith(prefix)).map(([k, v]) => `${k}='${v}' `).join('');
  return `${env}npm run bench -- ${bench}`;
}

function save(name: string, record: unknown): void {
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, `${name}.json`), JSON.stringify(record, null, 1) + '\n');
}

function stored<T>(name: string): T | undefined {
  const f = join(RESULTS_DIR, `${name}.json`);
  return existsSync(f) ? (JSON.parse(readFileSync(f, 'utf8')) as T) : undefined;
}

function report(): void {
  let md = existsSync(RESULTS_MD) ? readFileSync(RESULTS_MD, 'utf8') : '# Benchmark results\n';
  const c = stored<ControllerRecord>('controller');
  // agent.json, plus agent-<label>.json records of runs limited to some sizes (BENCH_AGENT_RECORD).
  const agents = existsSync(RESULTS_DIR)
    ? readdirSync(RESULTS_DIR).filter((f) => /^agent(-[\w.-]+)?\.json$/.test(f))
      .sort((a, b) => (a === 'agent.json' ? -1 : b === 'agent.json' ? 1 : a < b ? -1 : 1)).map((f) => stored<AgentRecord>(f.slice(0, -5))!)
    : [];
  if (c) md = replaceSection(md, 'controller', controllerSection(c));
  if (agents.length) md = replaceSection(md, 'agent', agentSection(agents));
  const conv = stored<ConvergenceRecord>('convergence');
  if (conv) md = replaceSection(md, 'convergence', convergenceSection(conv));
  const health = stored<HealthRecord>('health');
  if (health) md = replaceSection(md, 'health', healthSection(health));
  const replay = stored<ReplayRecord>('replay');
  if (replay) md = replaceSection(md, 'replay', replaySection(replay));
  writeFileSync(RESULTS_MD, md);
  console.log(`# wrote ${resolve(RESULTS_MD)}`);
}

function sizesFromEnv(): number[] | undefined {
  const v = process.env.BENCH_CONTROLLER_SIZES;
  if (!v) return undefined;
  const sizes = v.split(',').map(Number);
  if (sizes.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`BENCH_CONTROLLER_SIZES: ${JSON.stringify(v)} is not a list of counts like 1000,10000`);
  return sizes;
}

async function main(): Promise<void> {
  const asked = process.argv.slice(2);
  const unknown = asked.filter((a) => !(BENCHES as readonly string[]).includes(a));
  if (unknown.length) {
    console.error(`unknown benchmark(s): ${unknown.join(', ')}; choose from ${BENCHES.join(' ')}`);
    process.exit(2);
  }
  const benches: Bench[] = asked.length ? (asked as Bench[]) : ['controller', 'agent', 'convergence'];
  for (const b of benches) {
    if (b === 'controller') {
      const changes = process.env.BENCH_CONTROLLER_CHANGES ? Number(process.env.BENCH_CONTROLLER_CHANGES) : undefined;
      save('controller', runControllerBench({ sizes: sizesFromEnv(), ...(changes ? { changes } : {}), command: command('controller') }));
    } else if (b === 'agent') {
      const label = process.env.BENCH_AGENT_RECORD;
      if (label !== undefined && !/^[\w.-]+$/.test(label)) throw new Error(`BENCH_AGENT_RECORD: ${JSON.stringify(label)} must be a plain label like 10k`);
      const record = await runAgentBench({ command: command('agent') });
      // A labelled record complements the main one (sizes run in a boot of their own); a new main
      // record supersedes them all, so stale complements must not be pooled with it.
      if (!label && existsSync(RESULTS_DIR)) for (const f of readdirSync(RESULTS_DIR).filter((f) => /^agent-[\w.-]+\.json$/.test(f))) rmSync(join(RESULTS_DIR, f));
      save(label ? `agent-${label}` : 'agent', record);
    } else if (b === 'convergence') {
      save('convergence', await runConvergenceBench({ command: command('convergence') }));
    } else if (b === 'replay') {
      const sizes = process.env.BENCH_REPLAY_SIZES?.split(',').map(Number);
      const changes = process.env.BENCH_REPLAY_CHANGES ? Number(process.env.BENCH_REPLAY_CHANGES) : undefined;
      save('replay', await runReplayBench({ command: command('replay'), ...(sizes ? { sizes } : {}), ...(changes ? { changes } : {}) }));
    } else if (b === 'health') {
      const sizes = process.env.BENCH_HEALTH_SIZES?.split(',').map(Number);
      const window = process.env.BENCH_HEALTH_WINDOW_S ? Number(process.env.BENCH_HEALTH_WINDOW_S) : undefined;
      save('health', await runHealthBench({ command: command('health'), ...(sizes ? { sizes } : {}), ...(window ? { windowSeconds: window } : {}) }));
    }
    report();
  }
}

await main();
