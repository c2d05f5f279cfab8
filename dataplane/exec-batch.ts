// Commands started together go through one shell. Starting a process from the agent forks the
// agent: the kernel copies its page tables, and libuv's spawn blocks the event loop until the
// child has exec'd. For a 300 MiB process under emulation that is ~0.2 s each; the director check
// alone reads lvs0, its sysctls, the proxy-NDP entries and three nft tables in one Promise.all,
// six forks every 30 s (bench/RESULTS.md, 2026-12-07: spawn was the agent's largest self time,
// 25 s of 296 s while programming 10,000 services). A small `sh` forks the same programs cheaply.
// The group's wall time (several programs under emulation) is not the event loop's: with the
// director check run inside a sync a change waited for it (runs 13 and 14), which is why the check
// now runs beside the syncs (sync/director-check.ts); without this file, that check still blocked
// the event loop in spawn for 3.9 s over a 150 s change phase (run 16).
//
// coalescing(run) collects the calls made before the current microtasks end. One call goes to
// `run` unchanged. Several without stdin input go to one `sh -c` that starts them side by side,
// each with stdin from /dev/null and its stdout, stderr and exit status written to files in a
// fresh temporary directory, which this process reads and removes afterwards. Each call still
// resolves or fails on its own, with the same CommandError (argv of that command, its exit code,
// stdout, stderr) as when run alone. Calls with input (nft -f -, ip -batch -) are never combined.
// The shell leads its own process group; when the time is up (the longest of the calls' limits)
// the whole group is killed, so no command outlives it, and the commands without an exit status
// fail. Differences from running alone: a program that cannot be started fails with exit 127 and
// the shell's message instead of "could not start"; one time limit for the group.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandError, type ExecOptions, type ExecResult, type Runner } from './exec.ts';

interface Pending {
  argv: readonly string[];
  opts: ExecOptions;
  resolve: (r: ExecResult) => void;
  reject: (e: unknown) => void;
}

const DEFAULT_TIMEOUT_MS = 30_000;

const quote = (a: string): string => `'${a.replace(/'/g, `'\\''`)}'`;

/** The script ($1: the directory): command i side by side with the others, into i.out, i.err, i.rc. */
export function groupScript(argvs: ReadonlyArray<readonly string[]>): string {
  const lines = argvs.map((argv, i) => `(${argv.map(quote).join(' ')} </dev/null >"$1/${i}.out" 2>"$1/${i}.err"; echo $? >"$1/${i}.rc") &`);
  return [...lines, 'wait'].join('\n');
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
      runGroup(run, group).catch((err: unknown) => { for (const p of group) p.reject(err); });
    }
  };
  return (cmd, args, opts = {}) => new Promise<ExecResult>((resolve, reject) => {
    if (opts.input !== undefined) {
      run(cmd, args, opts).then(resolve, reject);
      return;
    }
    pending.push({ argv: [cmd, ...args], opts, resolve, reject });
    if (pending.length === 1) queueMicrotask(flush);
  });
}

async function runGroup(run: Runner, group: readonly Pending[]): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'lvs-exec-'));
  try {
    const timeoutMs = Math.max(...group.map((p) => p.opts.timeoutMs ?? DEFAULT_TIMEOUT_MS));
    let failure: CommandError | undefined;
    try {
      await run('sh', ['-c', groupScript(group.map((p) => p.argv)), 'sh', dir], { timeoutMs, processGroup: true });
    } catch (err) {
      if (!(err instanceof CommandError)) throw err;
      failure = err;
    }
    await Promise.all(group.map(async (p, i) => {
      const [rc, stdout, stderr] = await Promise.all(['rc', 'out', 'err'].map((f) => readFile(join(dir, `${i}.${f}`), 'utf8').catch(() => undefined)));
      const code = rc === undefined ? NaN : Number.parseInt(rc, 10);
      if (Number.isNaN(code)) p.reject(new CommandError(p.argv, null, failure?.signal ?? null, stdout ?? '', stderr ?? '', `did not finish: ${failure?.message ?? 'no exit status'}`));
      else if (code === 0) p.resolve({ stdout: stdout ?? '', stderr: stderr ?? '' });
      else p.reject(new CommandError(p.argv, code, null, stdout ?? '', stderr ?? ''));
    }));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
