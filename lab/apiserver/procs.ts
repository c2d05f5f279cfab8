// Child processes of the harness and the guarantee that none outlives the test process.
// Three layers: stop() in the test's own teardown; a process-wide 'exit'/SIGINT/SIGTERM/SIGHUP
// hook that kills every child still running and removes registered temp dirs; and, for a test
// process that is SIGKILLed (no hook runs), setpriv --pdeathsig, which makes the kernel send
// SIGKILL to the child when the thread that spawned it (Node's main thread) dies.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

export interface Proc {
  name: string;
  child: ChildProcess;
  logPath: string;
  /** set once the process has exited */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after graceMs; resolves when the process is gone */
  stop(graceMs?: number): Promise<void>;
  /** the last lines of its output, for error messages */
  tail(lines?: number): Promise<string>;
}

const live = new Set<ChildProcess>();
const dirs = new Set<string>();
let hooked = false;

function killAllSync(): void {
  for (const c of live) { try { c.kill('SIGKILL'); } catch { /* already gone */ } }
  live.clear();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
}

function installHooks(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', killAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      console.error(`[apiserver harness] ${sig}: killing ${live.size} control-plane process(es), removing temp dirs`);
      killAllSync();
      process.exit(128 + ({ SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const)[sig]);
    });
  }
}

/** Removed on exit and on SIGINT/SIGTERM unless released first. */
export function registerTempDir(dir: string): void { installHooks(); dirs.add(dir); }
export function releaseTempDir(dir: string): void {
  dirs.delete(dir);
  rmSync(dir, { recursive: true, force: true });
}

/** A child spawned elsewhere (e.g. the controller process) gets the same exit and signal hooks. */
export function trackChild(child: ChildProcess): void {
  installHooks();
  live.add(child);
  child.once('close', () => live.delete(child));
}

export function startProc(name: string, bin: string, args: string[], logPath: string): Proc {
  installHooks();
  const [cmd, argv] = SETPRIV ? [SETPRIV, ['--pdeathsig', 'KILL', '--', bin, ...args]] : [bin, args];
  const log = createWriteStream(logPath);
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  live.add(child);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('error', (err) => { log.write(`spawn error: ${err.message}\n`); });
    child.on('close', (code, signal) => { live.delete(child); log.end(); resolve({ code, signal }); });
  });
  const stop = async (graceMs = 10_000) => {
    if (child.exitCode !== null || child.signalCode !== null) { await exited; return; }
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };
  const tail = async (lines = 30) => {
    const text = await readFile(logPath, 'utf8').catch(() => '');
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  };
  return { name, child, logPath, exited, stop, tail };
}

/** Resolves when `ready()` is true; rejects with the process's last output if it exits or time runs out. */
export async function waitReady(p: Proc, ready: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let gone = false;
  void p.exited.then(() => { gone = true; });
  while (Date.now() < deadline) {
    if (gone) break;
    if (await ready().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  const why = gone ? `exited (${JSON.stringify(await p.exited)})` : `not ready after ${timeoutMs} ms`;
  throw new Error(`${p.name} ${why}; log ${p.logPath}:\n${await p.tail()}`);
}
