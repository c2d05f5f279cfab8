// What every recorded figure carries: the machine it ran on and how busy that machine was. This
// machine is shared, so the load average is read right before (and after) each benchmark.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpus, loadavg, release } from 'node:os';

export interface Machine {
  date: string;
  nproc: number;
  cpuModel: string;
  kernel: string;
  node: string;
  memTotalGiB: number;
}

export interface Load {
  at: string;
  /** `uptime` as printed. */
  uptime: string;
  /** 1, 5 and 15 minute load averages. */
  loadavg: [number, number, number];
}

export function machine(): Machine {
  const info = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.+)$/m.exec(info)?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown';
  const mem = /^MemTotal:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1];
  return {
    date: new Date().toISOString(),
    nproc: Number(execFileSync('nproc', { encoding: 'utf8' }).trim()),
    cpuModel: model,
    kernel: release(),
    node: process.version,
    memTotalGiB: mem ? Math.round(Number(mem) / 1024 / 1024) : 0,
  };
}

export function load(): Load {
  const [a = 0, b = 0, c = 0] = loadavg();
  const r = (x: number) => Math.round(x * 100) / 100;
  return { at: new Date().toISOString(), uptime: execFileSync('uptime', { encoding: 'utf8' }).trim(), loadavg: [r(a), r(b), r(c)] };
}

export interface ProcessMemory {
  /** Resident set now (VmRSS), MiB. */
  rssMiB: number;
  /** Peak resident set since the process started (VmHWM), MiB. */
  peakMiB: number;
  /** VmRSS's parts: anonymous memory (heaps, malloc, stacks) and file pages (the binary's text, mapped files), MiB. */
  rssAnonMiB: number;
  rssFileMiB: number;
}

/** A live process's memory from /proc/<pid>/status; undefined when it is gone. */
export function processMemory(pid: number | undefined): ProcessMemory | undefined {
  if (!pid) return undefined;
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1] ?? NaN);
  const mib = (v: number) => Math.round((v / 1024) * 10) / 10;
  return { rssMiB: mib(kb('VmRSS')), peakMiB: mib(kb('VmHWM')), rssAnonMiB: mib(kb('RssAnon')), rssFileMiB: mib(kb('RssFile')) };
}

/** The Node options that let heapReport() ask a process for its V8 heap (a diagnostic report on SIGUSR2). */
export const HEAP_REPORT_OPTIONS = (dir: string) => `--report-on-signal --report-signal=SIGUSR2 --report-directory=${dir} --report-compact`;

const roundMiB = (bytes: unknown) => (typeof bytes === 'number' ? Math.round((bytes / 1048576) * 10) / 10 : undefined);

/**
 * V8's heap of a Node process started with HEAP_REPORT_OPTIONS(dir): SIGUSR2 makes it write a
 * diagnostic report (process.report: a few ms, no garbage collection); returns its javascriptHeap
 * totals (committed, used, malloced, external) and each space's committed / used MiB, or the reason
 * there is none. What RSS holds beyond these is the binary, native allocations and stacks.
 */
export async function heapReport(pid: number | undefined, dir: string, timeoutMs = 20_000): Promise<Record<string, unknown>> {
  if (!pid) return { error: 'no pid' };
  const mine = (f: string) => f.startsWith('report.') && f.includes(`.${pid}.`) && f.endsWith('.json');
  const before = new Set(existsSync(dir) ? readdirSync(dir).filter(mine) : []);
  try { process.kill(pid, 'SIGUSR2'); } catch (e) { return { error: `kill: ${(e as Error).message}` }; }
  for (const end = Date.now() + timeoutMs; Date.now() < end; await new Promise((r) => setTimeout(r, 250))) {
    const file = existsSync(dir) ? readdirSync(dir).filter((f) => mine(f) && !before.has(f)).sort().pop() : undefined;
    if (!file) continue;
    let report: { javascriptHeap?: Record<string, unknown> & { heapSpaces?: Record<string, { committedMemory?: number; used?: number }> } };
    try { report = JSON.parse(readFileSync(join(dir, file), 'utf8')) as typeof report; } catch { continue; } // still being written
    const h = report.javascriptHeap ?? {};
    const spaces = Object.fromEntries(Object.entries(h.heapSpaces ?? {}).filter(([, v]) => (v.committedMemory ?? 0) > 0).map(([k, v]) => [k, { committedMiB: roundMiB(v.committedMemory), usedMiB: roundMiB(v.used) }]));
    return {
      committedMiB: roundMiB(h.totalCommittedMemory), usedMiB: roundMiB(h.usedMemory), limitMiB: roundMiB(h.memoryLimit),
      mallocedMiB: roundMiB(h.mallocedMemory), externalMiB: roundMiB(h.externalMemory), spaces,
    };
  }
  return { error: `no report from ${pid} in ${timeoutMs} ms` };
}

/** CPU time of all CPUs since boot from /proc/stat, in USER_HZ ticks (100 per second). */
export function cpuTicks(): { user: number; sys: number; idle: number; iowait: number; softirq: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  return { user: f[0]!, sys: f[2]!, idle: f[3]!, iowait: f[4] ?? 0, softirq: f[6] ?? 0, total: f.reduce((a, b) => a + b, 0) };
}
