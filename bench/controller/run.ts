// Host side of the controller benchmark: every (size, mode) in a fresh node process (so each peak
// RSS is its own), one after the other, with the machine's load read before each.
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { load, machine, type Load, type Machine } from '../lib/machine.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface ControllerRun {
  args: string[];
  nodeFlags: string[];
  loadBefore: Load;
  result: Record<string, unknown>;
}

export interface ControllerRecord {
  bench: 'controller';
  command: string;
  machine: Machine;
  runs: ControllerRun[];
}

/** What runs, in order: the baseline, both modes per size, and the batch path under a heap cap. */
export function plannedRuns(sizes: number[], changes: number): Array<{ args: string[]; nodeFlags: string[] }> {
  const out: Array<{ args: string[]; nodeFlags: string[] }> = [{ args: ['0'], nodeFlags: ['--expose-gc'] }];
  for (const n of sizes) {
    out.push({ args: [String(n), 'batch'], nodeFlags: ['--expose-gc'] });
    out.push({ args: [String(n), 'controller', String(changes)], nodeFlags: ['--expose-gc'] });
  }
  const largest = Math.max(...sizes);
  // The batch path's peak is mostly garbage awaiting collection; capped, V8 collects sooner.
  out.push({ args: [String(largest), 'batch'], nodeFlags: ['--expose-gc', '--max-old-space-size=192'] });
  return out;
}

export function runControllerBench(opts: { sizes?: number[]; changes?: number; command: string }): ControllerRecord {
  const sizes = opts.sizes ?? [1000, 10_000];
  const runs: ControllerRun[] = [];
  for (const { args, nodeFlags } of plannedRuns(sizes, opts.changes ?? 2000)) {
    const loadBefore = load();
    console.log(`# controller bench ${[...nodeFlags, ...args].join(' ')}: load before: ${loadBefore.uptime}`);
    const r = spawnSync(process.execPath, [...nodeFlags, join(ROOT, 'bench/controller/measure.ts'), ...args], { cwd: ROOT, encoding: 'utf8', maxBuffer: 16 << 20 });
    if (r.status !== 0) throw new Error(`bench/controller/measure.ts ${args.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr.trim().split('\n').slice(-5).join('\n')}`);
    const line = r.stdout.trim().split('\n').at(-1) ?? '';
    const result = JSON.parse(line) as Record<string, unknown>;
    console.log(line);
    runs.push({ args, nodeFlags, loadBefore, result });
  }
  return { bench: 'controller', command: opts.command, machine: machine(), runs };
}
