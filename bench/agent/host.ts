// Host side of the agent benchmark: one VM boot (test/kernel/harness, provisioned as the kernel
// tests are), bench/agent/guest.ts inside it, its `BENCH-JSON` lines collected into one record.
//
//   node bench/agent/host.ts              sizes 100x10*3,1000x10*3,10000x10 (NxM*repetitions)
//   BENCH_AGENT_SIZES=100x10 node bench/agent/host.ts
import { kernelPrereqs, runInVm } from '../../test/kernel/harness/vm.ts';
import { load, machine, type Load, type Machine } from '../lib/machine.ts';

export interface AgentRecord {
  bench: 'agent';
  command: string;
  machine: Machine;
  loadBefore: Load;
  loadAfter: Load;
  vm: { bootMs: number; totalMs: number; exitCode: number };
  sizes: string;
  /** Every BENCH-JSON object the guest printed, in order. */
  events: Array<Record<string, unknown>>;
}

export async function runAgentBench(opts: { sizes?: string; profile?: string; command: string; echo?: boolean }): Promise<AgentRecord> {
  const missing = kernelPrereqs();
  if (missing) throw new Error(`agent benchmark needs the real-kernel VM: ${missing}`);
  const sizes = opts.sizes ?? process.env.BENCH_AGENT_SIZES ?? '100x10*3,1000x10*3,10000x10';
  const profile = opts.profile ?? process.env.BENCH_AGENT_PROFILE ?? '1000x10';
  const events: Array<Record<string, unknown>> = [];
  const loadBefore = load();
  console.log(`# agent bench: load before: ${loadBefore.uptime}`);
  const result = await runInVm({
    command: 'node_modules/.bin/node bench/agent/guest.ts',
    // 10,000x10 under TCG on a shared machine takes many minutes per side; generous on purpose.
    timeoutMs: 3 * 60 * 60 * 1000,
    memoryMb: 2048,
    env: { BENCH_AGENT_SIZES: sizes, BENCH_AGENT_PROFILE: profile },
    label: 'bench-vm',
    echo: opts.echo ?? true,
    onOutput: (line) => {
      const i = line.indexOf('BENCH-JSON ');
      if (i >= 0) events.push(JSON.parse(line.slice(i + 11)) as Record<string, unknown>);
    },
  });
  const loadAfter = load();
  console.log(`# agent bench: load after: ${loadAfter.uptime}`);
  if (result.exitCode !== 0 || !events.some((e) => e.type === 'done')) {
    throw new Error(`agent benchmark VM failed: exit ${result.exitCode}${result.timedOut ? ' (timed out)' : ''}; last output:\n${result.output.split('\n').slice(-15).join('\n')}`);
  }
  return {
    bench: 'agent', command: opts.command, machine: machine(), loadBefore, loadAfter,
    vm: { bootMs: result.bootMs, totalMs: result.totalMs, exitCode: result.exitCode }, sizes, events,
  };
}
