// Runs the real `lvs-agent` CLI (dataplane/cli/main.ts, compiled ahead of time into the bundle
// dist/lvs-agent.mjs) inside the test VM, in a network namespace, as an operator would: `ip netns exec <ns> node dist/lvs-agent.mjs <args>`.
//
//   const r = await agent('director', ['apply', '-f', dir, '--state-file', state]);  // {code, stdout, stderr, ms}
//   opLines(r.stderr)      // the kernel operations it logged, e.g. ['add service TCP/203.0.113.5:80 (wrr)', ...]
//   const w = startAgent('director', ['apply', '--watch', ...]); await w.waitForStdout(/kernel operation/); await w.kill('SIGKILL');
//
// Every agent process is a fresh Node start (seconds under TCG), so suites call it sparingly and
// set NODE_COMPILE_CACHE (test/kernel/agent.test.ts) to reuse compiled code between invocations.
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'uvu';
import { assertInVm } from '../../../../lab/guest/netns.ts';
import { AGENT_ENTRY } from '../../../../lab/vm/guest-agent.ts';

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '../../../..');
export const AGENT = AGENT_ENTRY; // the compiled bundle (lab/vm/guest-agent.ts)
export const NODE = process.execPath;

export interface AgentRun { code: number; stdout: string; stderr: string; ms: number }

/** argv that runs the agent in `ns` (the guest's root namespace when ns is undefined). */
export function agentArgv(ns: string | undefined, args: readonly string[]): string[] {
  return ns ? ['ip', 'netns', 'exec', ns, NODE, AGENT, ...args] : [NODE, AGENT, ...args];
}

const children = new Set<ChildProcess>();
process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); });

/** Runs one agent command to completion; never rejects on a non-zero exit (the code is the result). */
export function agent(ns: string | undefined, args: readonly string[], timeoutMs = 600_000): Promise<AgentRun> {
  assertInVm();
  const [cmd, ...rest] = agentArgv(ns, args);
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd!, rest, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s; });
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`lvs-agent ${args.join(' ')}: no exit after ${timeoutMs} ms\n${stderr}`)); }, timeoutMs);
    child.on('error', (err) => { clearTimeout(timer); children.delete(child); reject(err); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      const ms = Date.now() - started;
      console.log(`\n#   lvs-agent ${args[0]}${ns ? ` in ${ns}` : ''}: exit ${code ?? signal} after ${(ms / 1000).toFixed(1)} s`);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr, ms });
    });
  });
}

/**
 * `test` with each test's wall time printed after it ("# <name>: 12.3 s"): under TCG the cost of
 * every step is worth seeing, and uvu prints only the suite's total.
 */
export function timed(test: Test): (name: string, fn: () => void | Promise<void>) => void {
  return (name, fn) => test(name, async () => {
    const started = Date.now();
    try {
      await fn();
    } finally {
      console.log(`\n# ${name}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
  });
}

/**
 * Marks a promise the test awaits later as handled now, so that a rejection arriving while the
 * test is still busy elsewhere is not an unhandled rejection (which kills the process); awaiting
 * it later still throws.
 */
export function later<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

/** Like agent(), but a non-zero exit is an error carrying the agent's stderr. */
export async function agentOk(ns: string | undefined, args: readonly string[]): Promise<AgentRun> {
  const r = await agent(ns, args);
  if (r.code !== 0) throw new Error(`lvs-agent ${args.join(' ')} exited ${r.code}:\n${r.stderr}${r.stdout}`);
  return r;
}

interface LogLine { op?: string; msg?: string; level?: number }

/** The `msg` of every pino line on stderr that names a kernel operation (add/edit/drain/delete). */
export function opLines(stderr: string): string[] {
  const KERNEL_OPS = new Set(['addService', 'updateService', 'deleteService', 'addDestination', 'updateDestination', 'drainDestination', 'deleteDestination']);
  const out: string[] = [];
  for (const line of stderr.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const l = JSON.parse(line) as LogLine;
      if (l.op && KERNEL_OPS.has(l.op)) out.push(l.msg ?? l.op);
    } catch { /* not a log line */ }
  }
  return out;
}

/** A long-running agent (`apply --watch`) whose output is collected as it arrives. */
export interface AgentProcess {
  readonly pid: number;
  readonly stdout: () => string;
  readonly stderr: () => string;
  /** Resolves with the `count`-th stdout line (default the first) matching `re`; rejects if the agent exits first. */
  waitForStdout(re: RegExp, opts?: { count?: number; timeoutMs?: number }): Promise<string>;
  /**
   * Resolves once `check(stderr)` holds. Stdout and stderr are separate pipes, so a summary line
   * on stdout can arrive before the log lines the agent wrote to stderr just before it.
   */
  waitForStderr(check: (stderr: string) => boolean, timeoutMs?: number): Promise<void>;
  /** Sends `signal` and resolves with how the process ended. */
  kill(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly exited: boolean;
}

export function startAgent(ns: string, args: readonly string[], env?: Record<string, string>): AgentProcess {
  assertInVm();
  const [cmd, ...rest] = agentArgv(ns, args);
  // `ip netns exec` execs the program, so this pid is the agent's own Node process.
  const child = spawn(cmd!, rest, { stdio: ['ignore', 'pipe', 'pipe'], ...(env ? { env: { ...process.env, ...env } } : {}) });
  children.add(child);
  let out = '';
  let err = '';
  let ended: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const waiters = new Set<() => void>();
  const poke = () => { for (const w of [...waiters]) w(); };
  child.stdout!.setEncoding('utf8').on('data', (s: string) => { out += s; poke(); });
  child.stderr!.setEncoding('utf8').on('data', (s: string) => { err += s; poke(); });
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => { ended = { code, signal }; children.delete(child); poke(); resolve(ended); });
  });
  return {
    pid: child.pid!,
    stdout: () => out,
    stderr: () => err,
    get exited() { return ended !== undefined; },
    waitForStdout(re, { count = 1, timeoutMs = 600_000 } = {}) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = out.split('\n').filter((l) => re.test(l))[count - 1];
          if (hit !== undefined) { done(); resolve(hit); } else if (ended) { done(); reject(new Error(`agent exited (${JSON.stringify(ended)}) before printing ${re}:\n${err}${out}`)); }
        };
        const timer = setTimeout(() => { done(); reject(new Error(`agent printed no line matching ${re} in ${timeoutMs} ms:\n${err}${out}`)); }, timeoutMs);
        const done = () => { clearTimeout(timer); waiters.delete(check); };
        waiters.add(check);
        check();
      });
    },
    waitForStderr(check, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const test = () => {
          if (check(err)) { done(); resolve(); } else if (ended) { done(); reject(new Error(`agent exited (${JSON.stringify(ended)}); stderr never satisfied the check:\n${err}`)); }
        };
        const timer = setTimeout(() => { done(); reject(new Error(`agent stderr did not satisfy the check in ${timeoutMs} ms:\n${err}`)); }, timeoutMs);
        const done = () => { clearTimeout(timer); waiters.delete(test); };
        waiters.add(test);
        test();
      });
    },
    kill(signal) {
      if (!ended) child.kill(signal);
      return closed;
    },
  };
}
