// Every command through one long-lived shell, started while this process is small. Node starts a
// process with fork() (libuv's uv_spawn on Linux): the kernel copies the parent's page tables and
// the event loop waits until the child has exec'd, and afterwards every page the parent writes
// takes a copy-on-write fault. For the agent at 10,000 services (300 MiB) under emulation that
// held the event loop ~0.3-0.4 s per start (bench/RESULTS.md: spawn was the agent's largest self
// time while programming, and the director check's one start per 30 s stood next to the slowest
// changes). A shell of a few MiB forks cheaply and its forks never stop this process.
//
// The protocol: for call n, this process writes to the shell's stdin (bash, with job control on)
//   { argv… <IN >OUT 2>ERR; echo "E n $?"; } &
//   echo "S n $!"
//   jobs >/dev/null
// and reads "S n pid" and "E n status" lines from the shell's stdout, then the command's output
// from the files (a fresh temporary directory per spawner, made at its first call; /tmp is an
// emptyDir in the chart), which it removes. The directory goes at close() or when this process
// exits; one left by a process that was killed is removed by the next spawner (sweepStale). Where
// no directory can be made (a read-only root file system without a /tmp mount) the calls fork
// this process as before (`fallback`). Each argument is single-quoted, so nothing in it is shell
// syntax. With job control (`set -m`) bash makes each background job the leader of its own
// process group ($! is that group), so a call whose time is up has its whole group killed and no
// command outlives it; `jobs` lets bash forget the jobs that ended (its job table grew by one
// entry per call otherwise). Per call that is one fork for the job and one fork and exec for the
// command. Without bash, `sh` runs `setsid sh -c '…' sh IN OUT ERR n argv… &` (the background
// job of a shell without job control is not a group leader, so setsid execs without forking),
// two execs more a call: under emulation a call cost ~137 ms of CPU that way against ~65 for the
// bare command (lab/results/director-check-2026-12-07.txt). A call resolves or fails with the
// same CommandError (argv, exit code, stdout, stderr) as createRunner's; a program that cannot be
// started exits 127 with the shell's message. If the shell dies, its calls fail and the next
// call starts a new one. The shell and its pipes do not keep this process alive; a call's timer
// does while it runs.
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { CommandError, createRunner, type ExecResult, type Runner } from './exec.ts';

export interface SpawnerOptions {
  /** Kill a command (its process group) after this long unless the call says otherwise; default 30 s. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** Where the calls' files go; default a fresh directory under `tmp`, made at the first call. */
  dir?: string;
  /** Where that directory is made; default os.tmpdir(). */
  tmp?: string;
  /**
   * Runs the calls when no directory can be made (a read-only root file system without a /tmp
   * mount, as `docker run --read-only`): by default createRunner's, which forks this process.
   */
  fallback?: Runner;
  /** Default shellOf(env): bash where there is one. */
  shell?: ShellKind;
}

export interface Spawner {
  run: Runner;
  /** The shell's pid (undefined until started, or after it died). */
  readonly shellPid: number | undefined;
  /** Let the shell exit; calls still running are left to finish. */
  close(): void;
}

interface Call {
  argv: readonly string[];
  resolve: (r: ExecResult) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout;
  files: { in?: string; out: string; err: string };
  /** The shell it was given to. */
  shell?: Shell;
  pid?: number;
}

type Shell = ChildProcessByStdio<Writable, Readable, Readable>;

const INNER = 'i=$1 o=$2 e=$3 n=$4; shift 4; "$@" <"$i" >"$o" 2>"$e"; echo "E $n $?"';
const quote = (a: string): string => `'${a.replace(/'/g, `'\\''`)}'`;

/** Which shell runs the calls: bash with job control, or any `sh` through setsid. */
export type ShellKind = 'bash' | 'sh';

/** The lines that start call `n` (the shell's stdin). */
export function callScript(n: number, argv: readonly string[], files: { in?: string; out: string; err: string }, kind: ShellKind = 'sh'): string {
  if (kind === 'bash') {
    return `{ ${argv.map(quote).join(' ')} <${quote(files.in ?? '/dev/null')} >${quote(files.out)} 2>${quote(files.err)}; echo "E ${n} $?"; } &\necho "S ${n} $!"\njobs >/dev/null\n`;
  }
  const words = ['setsid', 'sh', '-c', INNER, 'sh', files.in ?? '/dev/null', files.out, files.err, String(n), ...argv];
  return `${words.map(quote).join(' ') } &\necho "S ${n} $!"\n`;
}

/** bash when it is on `env`'s PATH, else sh. */
export function shellOf(env: NodeJS.ProcessEnv = process.env): ShellKind {
  for (const d of (env.PATH ?? '').split(':')) {
    if (!d) continue;
    try {
      accessSync(join(d, 'bash'), constants.X_OK);
      return 'bash';
    } catch { /* not here */ }
  }
  return 'sh';
}

export function createSpawner(defaults: SpawnerOptions = {}): Spawner {
  /** The calls' directory; null once it could not be made (the fallback runs the calls). */
  let dir: string | null | undefined = defaults.dir;
  const fallback = defaults.fallback ?? createRunner({ ...(defaults.timeoutMs !== undefined ? { timeoutMs: defaults.timeoutMs } : {}), ...(defaults.env ? { env: defaults.env } : {}) });
  const dirOf = (): string | null => {
    if (dir === undefined) {
      const tmp = defaults.tmp ?? tmpdir();
      sweepStale(tmp);
      try { dir = mkdtempSync(join(tmp, `lvs-exec-${process.pid}-`)); } catch { dir = null; }
      if (dir) removeAtExit(dir);
    }
    return dir;
  };
  const kind = defaults.shell ?? shellOf(defaults.env);
  const calls = new Map<number, Call>();
  let next = 0;
  let shell: Shell | undefined;
  let closed = false;
  let reading = 0;
  /** Calls whose time was up before the shell said which group their job is. */
  const killWhenStarted = new Set<number>();

  function start(): Shell {
    const sh = spawn(kind, ['-s'], { stdio: ['pipe', 'pipe', 'pipe'], env: defaults.env ?? process.env });
    if (kind === 'bash') sh.stdin.write('set -m\n');
    let stderr = '';
    let buffered = '';
    sh.stdout.setEncoding('utf8').on('data', (s: string) => {
      buffered += s;
      let i;
      while ((i = buffered.indexOf('\n')) >= 0) {
        line(buffered.slice(0, i));
        buffered = buffered.slice(i + 1);
      }
    });
    sh.stderr.setEncoding('utf8').on('data', (s: string) => { stderr = (stderr + s).slice(-2000); });
    sh.stdin.on('error', () => {}); // EPIPE once it died: 'close' fails its calls
    // Once the shell is gone the next call starts another; its jobs may still finish and report
    // (they hold its stdout), and 'close' comes when they all did: what is left never will.
    const gone = () => { if (shell === sh) shell = undefined; };
    sh.on('exit', gone);
    const died = (why: string) => {
      gone();
      for (const [n, c] of calls) if (c.shell === sh) fail(n, c, new CommandError(c.argv, null, null, '', '', `the command shell ${why}${stderr.trim() ? `: ${stderr.trim()}` : ''}`));
      tidy();
    };
    sh.on('error', (err) => died(`could not start: ${err.message}`));
    sh.on('close', (code, signal) => died(signal ? `was killed by ${signal}` : `exited ${code}`));
    // Neither the shell nor its pipes keep this process alive (a call's timer does).
    sh.unref();
    for (const s of [sh.stdin, sh.stdout, sh.stderr]) (s as unknown as { unref?: () => void }).unref?.();
    return sh;
  }

  function line(l: string): void {
    const [kind, n, value] = l.split(' ');
    // A call whose time was up before its job started: the job is killed as soon as it has one.
    if (kind === 'S' && killWhenStarted.delete(Number(n))) { killGroup(Number(value)); return; }
    const c = calls.get(Number(n));
    if (!c) return; // its time was up
    if (kind === 'S') c.pid = Number(value);
    else if (kind === 'E') void finish(Number(n), c, Number(value));
  }

  async function outputs(c: Call): Promise<[string, string]> {
    reading++;
    try {
      const [out, err] = await Promise.all([c.files.out, c.files.err].map((f) => readFile(f, 'utf8').catch(() => '')));
      await Promise.all([c.files.in, c.files.out, c.files.err].map((f) => (f ? rm(f, { force: true }) : undefined)));
      return [out!, err!];
    } finally {
      reading--;
      tidy();
    }
  }

  /** Once closed and nothing runs or is being read: the directory goes. */
  function tidy(): void {
    if (closed && !shell && calls.size === 0 && reading === 0 && dir) {
      rmSync(dir, { recursive: true, force: true });
      atExit.delete(dir);
    }
  }

  async function finish(n: number, c: Call, code: number): Promise<void> {
    calls.delete(n);
    clearTimeout(c.timer);
    const [stdout, stderr] = await outputs(c);
    if (code === 0) c.resolve({ stdout, stderr });
    else c.reject(new CommandError(c.argv, code, null, stdout, stderr));
  }

  function fail(n: number, c: Call, err: CommandError | ((out: string, err: string) => CommandError)): void {
    calls.delete(n);
    clearTimeout(c.timer);
    void outputs(c).then(([out, e]) => c.reject(typeof err === 'function' ? err(out, e) : err));
  }

  const run: Runner = (cmd, args, opts = {}) => new Promise<ExecResult>((resolve, reject) => {
    const argv = [cmd, ...args];
    if (argv.some((a) => a.includes('\0'))) {
      reject(new CommandError(argv, null, null, '', '', 'could not start: an argument holds a NUL byte'));
      return;
    }
    const at = dirOf();
    if (at === null) {
      fallback(cmd, args, opts).then(resolve, reject);
      return;
    }
    const n = next++;
    const files = { out: join(at, `${n}.out`), err: join(at, `${n}.err`), ...(opts.input !== undefined ? { in: join(at, `${n}.in`) } : {}) };
    const timeoutMs = opts.timeoutMs ?? defaults.timeoutMs ?? 30_000;
    const c: Call = {
      argv, resolve, reject, files,
      timer: setTimeout(() => {
        if (c.pid !== undefined) killGroup(c.pid); else killWhenStarted.add(n);
        fail(n, c, (out, err) => new CommandError(argv, null, 'SIGKILL', out, err, `killed after ${timeoutMs} ms`));
      }, timeoutMs),
    };
    calls.set(n, c);
    const send = () => {
      if (!calls.has(n)) return;
      if (closed) { fail(n, c, new CommandError(argv, null, null, '', '', 'could not start: the spawner is closed')); return; }
      c.shell = shell ??= start();
      shell.stdin.write(callScript(n, argv, files, kind));
    };
    if (files.in === undefined) send();
    else writeFile(files.in, opts.input!).then(send, (err: unknown) => fail(n, c, new CommandError(argv, null, null, '', '', `could not start: ${(err as Error).message}`)));
  });

  shell = start();
  return {
    run,
    get shellPid() { return shell?.pid; },
    close() {
      closed = true;
      shell?.stdin.end();
      tidy();
    },
  };
}

/**
 * The job's group, and the job itself: right after it was started the job may not have called
 * setsid() yet (no such group), but then it has not started the command either.
 */
function killGroup(pid: number): void {
  for (const target of [-pid, pid]) {
    try { process.kill(target, 'SIGKILL'); } catch { /* not (yet, or any more) there */ }
  }
}

/** The directories of this process's spawners, removed when it exits (close() removes one sooner). */
const atExit = new Set<string>();
let exitHooked = false;
function removeAtExit(dir: string): void {
  if (!exitHooked) {
    process.once('exit', () => {
      for (const d of atExit) {
        try { rmSync(d, { recursive: true, force: true }); } catch { /* the next spawner sweeps it */ }
      }
    });
  }
  exitHooked = true;
  atExit.add(dir);
}

/**
 * Removes the call directories in `tmp` that no running process owns: those of a pid that is gone,
 * and those of this pid that no spawner of this process made (a container restarted in its pod keeps the
 * chart's /tmp emptyDir and is pid 1 again). A process killed with SIGKILL (an OOM kill, a
 * timeout) cannot remove its own, and the emptyDir is small (16Mi). Another live process's
 * directory is kept; a pid we may not signal (EPERM) is alive.
 */
export function sweepStale(tmp: string): void {
  let names: string[];
  try { names = readdirSync(tmp); } catch { return; }
  for (const name of names) {
    const m = /^lvs-exec-(\d+)-/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    const path = join(tmp, name);
    if (atExit.has(path) || (pid !== process.pid && alive(pid))) continue;
    try { rmSync(path, { recursive: true, force: true }); } catch { /* another sweeper, or not ours to remove */ }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
