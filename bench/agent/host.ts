// Host side of the agent benchmark: one VM boot (test/kernel/harness, provisioned as the kernel
// tests are), bench/agent/guest.ts inside it, its `BENCH-JSON` lines collected into one record.
//
// Used by bench/run.ts (`npm run bench -- agent`). Environment: BENCH_AGENT_SIZES (NxM*reps list,
// default 100x10*5,1000x10*5,10000x10*5,40000x2*5), BENCH_AGENT_PROFILE (size to profile, default 100x10),
// BENCH_AGENT_R_FULL_MAX (largest N for which the full set is also timed with `ipvsadm -R` alone,
// default 1000), BENCH_AGENT_NOOP_MAX (largest N with a timed no-op sync, default 1000),
// BENCH_AGENT_TIMEOUT_MIN (VM deadline, default 180), BENCH_AGENT_FULL_RESYNC_MS (the syncer's
// full read-back interval, default 1 h: the 1% and single changes are partial syncs; 0 = always full),
// BENCH_AGENT_RUNS (default sync,process: 'sync' times ipvsadm-restore against our sync path,
// 'process' the whole `lvs-agent apply` process against ipvsadm-restore plus `ip -batch` of the VIPs),
// BENCH_AGENT_PROCESS_PROFILE (the size whose apply is also run once profiled, default 1000x10).
import { kernelPrereqs, runInVm } from '../../lab/vm/vm.ts';
import { load, machine, type Load, type Machine } from '../lib/machine.ts';

export interface AgentRecord {
  bench: 'agent';
  command: string;
  machine: Machine;
  loadBefore: Load;
  loadAfter: Load;
  vm: { bootMs: number; totalMs: number; exitCode: number; timedOut: boolean };
  sizes: string;
  /** False when the VM stopped (failure or BENCH_AGENT_TIMEOUT_MIN) before the guest finished. */
  complete: boolean;
  /** Set when the record was rebuilt from a run's console log (the run itself was stopped). */
  recoveredFrom?: string;
  /** Every BENCH-JSON object the guest printed, in order. */
  events: Array<Record<string, unknown>>;
}

export async function runAgentBench(opts: { sizes?: string; profile?: string; command: string; echo?: boolean }): Promise<AgentRecord> {
  const missing = kernelPrereqs();
  if (missing) throw new Error(`agent benchmark needs the real-kernel VM: ${missing}`);
  const sizes = opts.sizes ?? process.env.BENCH_AGENT_SIZES ?? '100x10*5,1000x10*5,10000x10*5,40000x2*5';
  const profile = opts.profile ?? process.env.BENCH_AGENT_PROFILE ?? '100x10';
  const timeoutMin = Number(process.env.BENCH_AGENT_TIMEOUT_MIN ?? '180');
  if (!(timeoutMin > 0)) throw new Error(`BENCH_AGENT_TIMEOUT_MIN: ${process.env.BENCH_AGENT_TIMEOUT_MIN} is not a positive number of minutes`);
  const events: Array<Record<string, unknown>> = [];
  const loadBefore = load();
  console.log(`# agent bench: load before: ${loadBefore.uptime}`);
  const result = await runInVm({
    command: 'node_modules/.bin/node bench/agent/guest.ts',
    // 10,000x10 under TCG on a shared machine takes many minutes per side; generous by default.
    timeoutMs: timeoutMin * 60 * 1000,
    memoryMb: 2048,
    env: {
      BENCH_AGENT_SIZES: sizes, BENCH_AGENT_PROFILE: profile,
      BENCH_AGENT_R_FULL_MAX: process.env.BENCH_AGENT_R_FULL_MAX ?? '1000', BENCH_AGENT_NOOP_MAX: process.env.BENCH_AGENT_NOOP_MAX ?? '1000',
      ...(process.env.BENCH_AGENT_RUNS ? { BENCH_AGENT_RUNS: process.env.BENCH_AGENT_RUNS } : {}),
      ...(process.env.BENCH_AGENT_PROCESS_PROFILE ? { BENCH_AGENT_PROCESS_PROFILE: process.env.BENCH_AGENT_PROCESS_PROFILE } : {}),
      ...(process.env.BENCH_AGENT_FULL_RESYNC_MS ? { BENCH_AGENT_FULL_RESYNC_MS: process.env.BENCH_AGENT_FULL_RESYNC_MS } : {}),
    },
    label: 'bench-vm',
    echo: opts.echo ?? true,
    onOutput: (line) => {
      const i = line.indexOf('BENCH-JSON ');
      if (i >= 0) events.push(JSON.parse(line.slice(i + 11)) as Record<string, unknown>);
    },
  });
  const loadAfter = load();
  console.log(`# agent bench: load after: ${loadAfter.uptime}`);
  const complete = result.exitCode === 0 && events.some((e) => e.type === 'done');
  const record: AgentRecord = {
    bench: 'agent', command: opts.command, machine: machine(), loadBefore, loadAfter,
    vm: { bootMs: result.bootMs, totalMs: result.totalMs, exitCode: result.exitCode, timedOut: result.timedOut }, sizes, complete, events,
  };
  if (!complete) {
    const tail = result.output.split('\n').filter((l) => !l.includes('BENCH-JSON')).slice(-15).join('\n');
    // What was measured before the failure is still returned (and recorded as incomplete).
    console.error(`# agent benchmark incomplete: exit ${result.exitCode}${result.timedOut ? ' (timed out)' : ''}; last output:\n${tail}`);
    if (!events.some((e) => e.type === 'step')) throw new Error('agent benchmark VM failed before measuring anything');
  }
  return record;
}
