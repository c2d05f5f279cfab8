// Rebuilds an agent record from the console log of a run that was stopped before it could save
// one (the host keeps its events in memory until the VM exits):
//   node bench/agent/from-log.ts <log> <results/agent-label.json> "<command>" "<uptime before>" "<uptime after>"
// The log holds the same `BENCH-JSON` lines the host collects; the record is marked incomplete and
// names the log it came from. Boot time is not in the log, so it is recorded as -1.
import { readFileSync, writeFileSync } from 'node:fs';
import { machine, type Load } from '../lib/machine.ts';
import type { AgentRecord } from './host.ts';

function parseUptime(text: string): Load {
  const m = /load average:\s*([\d.]+),\s*([\d.]+),\s*([\d.]+)/.exec(text);
  if (!m) throw new Error(`not an uptime line: ${JSON.stringify(text)}`);
  const at = /^\s*(\d\d:\d\d:\d\d)/.exec(text)?.[1] ?? '';
  return { at, uptime: text.trim(), loadavg: [Number(m[1]), Number(m[2]), Number(m[3])] };
}

const [log, out, command, before, after] = process.argv.slice(2);
if (!log || !out || !command || !before || !after) throw new Error('usage: from-log.ts <log> <out.json> <command> <uptime before> <uptime after>');
const events = readFileSync(log, 'utf8').split('\n').flatMap((line) => {
  const i = line.indexOf('BENCH-JSON ');
  return i >= 0 ? [JSON.parse(line.slice(i + 11)) as Record<string, unknown>] : [];
});
const record: AgentRecord = {
  bench: 'agent', command, machine: machine(), loadBefore: parseUptime(before), loadAfter: parseUptime(after),
  vm: { bootMs: -1, totalMs: -1, exitCode: -1, timedOut: false },
  sizes: String(/BENCH_AGENT_SIZES='?([^' ]+)/.exec(command)?.[1] ?? ''),
  complete: events.some((e) => e.type === 'done'),
  recoveredFrom: log,
  events,
};
writeFileSync(out, JSON.stringify(record, null, 1) + '\n');
console.log(`# ${events.length} events → ${out}`);
