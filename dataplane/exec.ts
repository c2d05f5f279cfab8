// A small command runner injected into the parts of the agent that drive iproute2, sysctl and
// nft: a program and its arguments (never a shell), stdout/stderr captured, and a typed error
// carrying the command line and stderr. Tests replace it with a fake that models the kernel.
import { spawn } from 'node:child_process';

export interface ExecOptions {
  /** Written to the program's stdin (e.g. an `nft -f -` ruleset). */
  input?: string;
  /** Kill the program after this long; default 30 s. */
  timeoutMs?: number;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
}

export type Runner = (cmd: string, args: readonly string[], opts?: ExecOptions) => Promise<ExecResult>;

/** Render argv for humans: arguments with spaces or quotes are single-quoted. */
export function commandLine(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

export class CommandError extends Error {
  readonly argv: readonly string[];
  /** Exit code; null when the program was killed by a signal or could not be started. */
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;

  constructor(argv: readonly string[], exitCode: number | null, signal: string | null, stdout: string, stderr: string, why?: string) {
    const how = why ?? (signal ? `killed by ${signal}` : `exited ${exitCode}`);
    const detail = stderr.trim() ? `: ${stderr.trim()}` : '';
    super(`${commandLine(argv)} ${how}${detail}`);
    this.name = 'CommandError';
    this.argv = argv;
    this.exitCode = exitCode;
    this.signal = signal;
    this.stdout = stdout;
    this.stderr = stderr;
  }
}

/** The real runner: spawn without a shell, fail with CommandError on a non-zero exit. */
export function createRunner(defaults: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Runner {
  return (cmd, args, opts = {}) =>
    new Promise((resolve, reject) => {
      const argv = [cmd, ...args];
      const timeout = opts.timeoutMs ?? defaults.timeoutMs ?? 30_000;
      const child = spawn(cmd, args, {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: defaults.env ?? process.env,
        timeout,
      });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s; });
      child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
      child.on('error', (err) => {
        reject(new CommandError(argv, null, null, stdout, stderr, `could not start: ${err.message}`));
      });
      child.on('close', (code, signal) => {
        if (code === 0) resolve({ stdout, stderr });
        else reject(new CommandError(argv, code, signal, stdout, stderr));
      });
      // EPIPE when the program exits without reading stdin is reported by 'close' already.
      child.stdin.on('error', () => {});
      child.stdin.end(opts.input ?? '');
    });
}

/**
 * Where a command runs. The agent never switches its own namespace: commands for another
 * namespace run under `nsenter --net=<path>`, which affects only that child process. Sysctls
 * under /proc/sys/net are per network namespace and resolve against the reading process's
 * namespace, so `sysctl` under nsenter reads and writes the target's values.
 */
export type NetnsTarget =
  | { kind: 'host' }
  | { kind: 'pid'; pid: number }
  | { kind: 'named'; name: string }
  | { kind: 'path'; path: string };

export function netnsPath(target: NetnsTarget): string | undefined {
  switch (target.kind) {
    case 'host': return undefined;
    case 'pid':
      if (!Number.isInteger(target.pid) || target.pid <= 0) throw new Error(`netns target: pid must be a positive integer, got ${target.pid}`);
      return `/proc/${target.pid}/ns/net`;
    case 'named':
      if (!/^[A-Za-z0-9_.-]+$/.test(target.name) || target.name === '.' || target.name === '..') {
        throw new Error(`netns target: name ${JSON.stringify(target.name)} is not a valid namespace name`);
      }
      return `/run/netns/${target.name}`;
    case 'path':
      if (!target.path.startsWith('/')) throw new Error(`netns target: path must be absolute, got ${JSON.stringify(target.path)}`);
      return target.path;
  }
}

export function describeTarget(target: NetnsTarget): string {
  return target.kind === 'host' ? 'host' : target.kind === 'pid' ? `pid:${target.pid}` : target.kind === 'named' ? `netns:${target.name}` : target.path;
}

/** A runner whose every command runs in `target`'s network namespace. */
export function inNetns(run: Runner, target: NetnsTarget): Runner {
  const path = netnsPath(target);
  if (!path) return run;
  return (cmd, args, opts) => run('nsenter', [`--net=${path}`, '--', cmd, ...args], opts);
}
