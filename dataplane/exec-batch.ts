// Commands started together go through one shell. Starting a process from the agent forks the
// agent: the kernel copies its page tables, and libuv's spawn blocks the event loop until the
// child has exec'd. For a 300 MiB process under emulation that is ~0.2 s each; the director check
// alone reads lvs0, its sysctls, the proxy-NDP entries and three nft tables in one Promise.all,
// six forks every 30 s (bench/RESULTS.md, 2026-12-07: spawn was the agent's largest self time,
// 25 s of 296 s while programming 10,000 services). A small `sh` forks the same programs cheaply.
//
// coalescing(run) collects the calls made before the current microtasks end. One call goes to
// `run` unchanged. Several without stdin input go to one `sh -c` that runs them in order, each
// with stdin from /dev/null and its own stdout, stderr and exit status framed by a random
// boundary; each call still resolves or fails on its own, with the same CommandError (argv of
// that command, its exit code, stdout, stderr) as when run alone. Calls with input (nft -f -,
// ip -batch -) are never combined. Each command runs under coreutils' `timeout` with its own
// limit, so a hung one cannot hold the group (killing the shell would leave it running, holding
// the pipes). Differences from running alone: the combined commands run one after another, not
// side by side (all are quick reads); a program that cannot be started fails with exit 127 and
// the shell's message instead of "could not start"; one that overruns fails with exit 124
// (`timeout`'s) instead of a signal.
import { randomBytes } from 'node:crypto';
import { CommandError, type ExecOptions, type ExecResult, type Runner } from './exec.ts';

interface Pending {
  argv: readonly string[];
  opts: ExecOptions;
  resolve: (r: ExecResult) => void;
  reject: (e: unknown) => void;
}

const DEFAULT_TIMEOUT_MS = 30_000;

const quote = (a: string): string => `'${a.replace(/'/g, `'\\''`)}'`;

/** The script: each command under its time limit, then its status line on stdout and a boundary line on stderr. */
export function groupScript(commands: ReadonlyArray<{ argv: readonly string[]; timeoutMs: number }>): string {
  return commands.map(({ argv, timeoutMs }) => {
    const limit = ['timeout', '-k', '1', String(timeoutMs / 1000), ...argv].map(quote).join(' ');
    return `${limit} </dev/null; printf '\\n%s %d\\n' "$1" "$?"; printf '\\n%s\\n' "$1" >&2`;
  }).join('\n');
}

/**
 * Splits the group's output into one result per command, in order; a command with no status
 * line (the shell was killed, or stopped early) is undefined.
 */
export function splitGroup(boundary: string, count: number, stdout: string, stderr: string): Array<{ code: number; stdout: string; stderr: string } | undefined> {
  const outs = stdout.split(`\n${boundary} `);
  const errs = stderr.split(`\n${boundary}\n`);
  const results: Array<{ code: number; stdout: string; stderr: string } | undefined> = [];
  for (let i = 0; i < count; i++) {
    // Part i holds command i's output, after command i-1's status ("<code>\n") for i > 0.
    const part = outs[i];
    const status = outs[i + 1] === undefined ? undefined : /^(\d+)\n/.exec(outs[i + 1]!);
    if (part === undefined || !status) { results.push(undefined); continue; }
    const out = i === 0 ? part : part.slice(part.indexOf('\n') + 1);
    results.push({ code: Number(status[1]), stdout: out, stderr: errs[i] ?? '' });
  }
  return results;
}

/** A runner that sends the calls started together through one shell (see the file comment). */
export function coalescing(run: Runner): Runner {
  let pending: Pending[] = [];
  const flush = () => {
    const group = pending;
    pending = [];
    if (group.length === 1) {
      const [p] = group;
      run(p!.argv[0]!, p!.argv.slice(1), p!.opts).then(p!.resolve, p!.reject);
    } else {
      void runGroup(run, group);
    }
  };
  return (cmd, args, opts = {}) => new Promise<ExecResult>((resolve, reject) => {
    const p: Pending = { argv: [cmd, ...args], opts, resolve, reject };
    if (opts.input !== undefined) {
      run(cmd, args, opts).then(resolve, reject);
      return;
    }
    pending.push(p);
    if (pending.length === 1) queueMicrotask(flush);
  });
}

async function runGroup(run: Runner, group: readonly Pending[]): Promise<void> {
  const boundary = `@@lvs-${randomBytes(12).toString('hex')}`;
  const commands = group.map((p) => ({ argv: p.argv, timeoutMs: p.opts.timeoutMs ?? DEFAULT_TIMEOUT_MS }));
  // A safety net only: each command is limited inside the script (plus 1 s to kill it).
  const timeoutMs = commands.reduce((t, c) => t + c.timeoutMs + 2_000, 0);
  let stdout: string;
  let stderr: string;
  let failure: CommandError | undefined;
  try {
    ({ stdout, stderr } = await run('sh', ['-c', groupScript(commands), 'sh', boundary], { timeoutMs }));
  } catch (err) {
    if (!(err instanceof CommandError)) { for (const p of group) p.reject(err); return; }
    ({ stdout, stderr } = err);
    failure = err;
  }
  const results = splitGroup(boundary, group.length, stdout, stderr);
  group.forEach((p, i) => {
    const r = results[i];
    if (!r) p.reject(new CommandError(p.argv, null, failure?.signal ?? null, '', '', `did not finish: ${failure?.message ?? 'the shell stopped early'}`));
    else if (r.code === 0) p.resolve({ stdout: r.stdout, stderr: r.stderr });
    else p.reject(new CommandError(p.argv, r.code, null, r.stdout, r.stderr));
  });
}
