// The lvs-agent in cluster mode as a child process of the guest suite, in the VM's root network
// namespace (the node): `node dist/lvs-agent.mjs run` (the compiled bundle, lab/vm/guest-agent.ts) with NODE_NAME and KUBECONFIG, as the
// DaemonSet runs it. Its output (pino JSON lines and anything else) is kept in memory and in a
// log file under /run/tmp, so assertions can read it and a failure can show it.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { AGENT_ENTRY } from '../vm/guest-agent.ts';
import { withNodeOptions } from '../node-options.ts';

const REPO = join(import.meta.dirname, '../..');

export interface AgentLine { at: number; text: string; json?: Record<string, unknown> }

export interface AgentProc {
  child: ChildProcess;
  /** run number of this agent (1 = first start) */
  run: number;
  lines: AgentLine[];
  /** ms from spawn to its first line of output, -1 before it */
  firstOutputMs(): number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): Promise<void>;
  tail(n?: number): string;
}


/** Throws when the agent has exited: waiting for it to do something is then pointless. */
export function assertRunning(agent: AgentProc): void {
  if (agent.child.exitCode !== null || agent.child.signalCode !== null) {
    throw new Error(`agent run ${agent.run} exited (${agent.child.exitCode ?? agent.child.signalCode}); its last lines:\n${agent.tail(15)}`);
  }
}

let runs = 0;
const live = new Set<ChildProcess>();
process.on('exit', () => { for (const c of live) c.kill('SIGKILL'); });

/**
 * `nodeOptions`: added to the agent's NODE_OPTIONS (the benchmarks' heap cap). `netns`: run it in
 * that network namespace (`ip netns exec`, which execs the agent: the child's pid is the agent's).
 */
export function startAgent(o: { node: string; kubeconfig: string; logLevel?: string; logFile?: string; args?: string[]; nodeOptions?: string; netns?: string }): AgentProc {
  runs += 1;
  const run = runs;
  const logFile = o.logFile ?? join(process.env.TMPDIR ?? '/tmp', 'lvs-agent.log');
  const argv = [process.execPath, AGENT_ENTRY, 'run', ...(o.args ?? [])];
  if (o.netns) argv.unshift('ip', 'netns', 'exec', o.netns);
  const child = spawn(argv[0]!, argv.slice(1), { // V8 flags and CPU: lab/vm/vm.ts, the one VM definition
    cwd: REPO,
    env: withNodeOptions({ ...process.env, NODE_NAME: o.node, KUBECONFIG: o.kubeconfig, LOG_LEVEL: o.logLevel ?? 'debug' }, o.nodeOptions),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  const lines: AgentLine[] = [];
  const spawnedAt = Date.now();
  const onLine = (text: string) => {
    const line: AgentLine = { at: Date.now(), text };
    try { const j = JSON.parse(text) as unknown; if (j && typeof j === 'object') line.json = j as Record<string, unknown>; } catch { /* plain text */ }
    lines.push(line);
    appendFileSync(logFile, `[run ${run}] ${text}\n`);
    if (process.env.LVS_SYSTEM_ECHO_AGENT === '1') console.log(`[agent ${run}] ${text}`);
  };
  createInterface(child.stdout!).on('line', onLine);
  createInterface(child.stderr!).on('line', onLine);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => { live.delete(child); r({ code, signal }); }));
  return {
    child, run, lines, exited,
    firstOutputMs: () => (lines[0] ? lines[0].at - spawnedAt : -1),
    async kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
    tail: (n = 30) => lines.slice(-n).map((l) => l.text).join('\n'),
  };
}
