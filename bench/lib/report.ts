// Turns the recorded runs (bench/results/*.json) into the generated sections of bench/RESULTS.md.
// Only text between `<!-- BEGIN GENERATED: name -->` and `<!-- END GENERATED: name -->` is
// replaced; everything else in RESULTS.md (analysis, the convergence TODO) is prose kept as is.
import type { HealthRecord } from '../health/run.ts';
import type { AgentRecord } from '../agent/host.ts';
import type { ConvergenceRecord } from '../convergence/host.ts';
import { percentile } from '../convergence/layout.ts';
import type { ControllerRecord } from '../controller/run.ts';
import type { Machine, Load } from './machine.ts';

type Obj = Record<string, unknown>;
const num = (x: unknown): number => (typeof x === 'number' ? x : NaN);
const get = (o: unknown, ...path: string[]): unknown => path.reduce<unknown>((a, k) => (a && typeof a === 'object' ? (a as Obj)[k] : undefined), o);
const ms = (x: number) => (Number.isFinite(x) ? (x >= 100 ? x.toFixed(0) : x.toFixed(1)) : '–');
const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? (a / b).toFixed(2) : '–');
const median = (xs: number[]) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
/** Median, with the range when there is more than one value (the machine is noisy). */
const spread = (xs: number[]) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length < 2) return ms(median(s));
  return `${ms(median(s))} (${ms(s[0]!)}–${ms(s.at(-1)!)})`;
};

export function machineLine(m: Machine): string {
  return `${m.date.slice(0, 16).replace('T', ' ')} UTC · ${m.nproc} CPUs (${m.cpuModel}) · kernel ${m.kernel} · ${m.memTotalGiB} GiB · node ${m.node}`;
}

const loadText = (l: Load) => l.loadavg.join(' / ');

interface StepRow { side: 'ours' | 'reference'; size: string; rep: number; step: string; ms: number; ops: number; counts?: Obj; lines?: Obj }

/** Every timed step of a record: `step` events, or the per-side objects of the first format. */
export function stepRows(r: AgentRecord): StepRow[] {
  const rows: StepRow[] = [];
  for (const e of r.events) {
    if (e.type === 'step') {
      rows.push({ side: e.side === 'ours' ? 'ours' : 'reference', size: String(e.size), rep: num(e.rep), step: String(e.step), ms: num(e.ms), ops: num(e.ops), counts: e.counts as Obj, lines: e.lines as Obj });
    } else if (e.type === 'ours' || e.type === 'restore') {
      const side = e.type === 'ours' ? 'ours' : 'reference';
      for (const [step, v] of Object.entries((e.type === 'ours' ? e.ours : e.restore) as Obj)) {
        const x = v as Obj;
        rows.push({ side, size: String(e.size), rep: num(e.rep), step, ms: num(x.ms), ops: num(x.ops), counts: x.counts as Obj, lines: e.lines as Obj });
      }
    }
  }
  return rows;
}

function recordHeader(r: AgentRecord): string[] {
  const env = r.events.find((e) => e.type === 'env') ?? {};
  const base = r.events.find((e) => e.type === 'baseline') ?? {};
  const out = [
    `Command: \`${r.command}\` · ${machineLine(r.machine)}`,
    `Guest: kernel ${String(env.kernel)}, ${String(env.ipvsadm)}, node ${String(env.node)}, ${String(env.cpus)} vCPUs under qemu TCG (no KVM) · ${r.vm.totalMs >= 0 ? `VM boot ${r.vm.bootMs} ms, whole run ${(r.vm.totalMs / 60000).toFixed(1)} min` : 'VM times not recorded'} · host load (1/5/15 min) before ${loadText(r.loadBefore)}, after ${loadText(r.loadAfter)}`,
  ];
  if (r.recoveredFrom) out.push(`Record rebuilt from the run's console log (${r.recoveredFrom}) with bench/agent/from-log.ts: the same BENCH-JSON lines the host collects.`);
  if (r.recoveredFrom) out.push('Stopped by hand after the sizes it lists (see the note below the tables); every step it lists finished and was verified.');
  else if (!r.complete) out.push(`**Incomplete run:** the VM stopped (exit ${r.vm.exitCode}${r.vm.timedOut ? ', deadline reached' : ''}) before the guest finished; only the steps listed were measured.`);
  const empty = median((base.restoreEmptyMs as number[] | undefined) ?? []);
  const emptyR = median((base.ipvsadmREmptyMs as number[] | undefined) ?? []);
  if (Number.isFinite(empty)) out.push(`Fixed process cost with an empty rule file (median of 3): ipvsadm-restore ${ms(empty)} ms, ipvsadm -R ${ms(emptyR)} ms.`);
  return out;
}

/** Which write path a record measured: 'batched' (applyBatch), or the one awaited request per op before it. */
function writePath(r: AgentRecord): string {
  const env = r.events.find((e) => e.type === 'env') ?? {};
  return typeof env.writePath === 'string' ? env.writePath : 'one request per op';
}

/**
 * What a record measured, for pooling: the write path, and whether every run had a network
 * namespace of its own (records before 2026-12-06 ran both sides in one namespace, where the one
 * that followed the other's clear-out paid for the kernel's destination trash; see the prose).
 */
function setting(r: AgentRecord): string {
  const env = r.events.find((e) => e.type === 'env') ?? {};
  return env.isolation === 'netns per run' ? `${writePath(r)}, every run in a fresh network namespace` : writePath(r);
}

/** Records of different settings are never pooled: one set of tables per setting. */
export function agentSection(records: AgentRecord[]): string {
  const settings = [...new Set(records.map(setting))];
  if (settings.length === 1) return agentTables(records);
  return settings.map((p) => `### Write path: ${p}\n\n${agentTables(records.filter((r) => setting(r) === p))}`).join('\n\n');
}

function agentTables(records: AgentRecord[]): string {
  const rows = records.flatMap(stepRows);
  const sizes = [...new Set(rows.map((x) => x.size))].sort((a, b) => parseInt(a) - parseInt(b));
  const pick = (size: string, side: StepRow['side'], step: string) => rows.filter((x) => x.size === size && x.side === side && x.step === step);
  const med = (size: string, side: StepRow['side'], step: string, f: (x: StepRow) => unknown) => median(pick(size, side, step).map((x) => num(f(x))));
  const msCell = (size: string, side: StepRow['side'], step: string) => spread(pick(size, side, step).map((x) => x.ms));
  const sent = (x: StepRow) => get(x.counts, 'wire', 'sent');
  const out: string[] = [];
  for (const r of records) out.push(...recordHeader(r), '');
  out.push('Full programming from an empty table (ms of wall time in the guest: median, and min–max over the repetitions; ratios of the medians):');
  out.push('');
  out.push('| N×M | reps (ours/ref) | rules | ours | ipvsadm-restore | ipvsadm -R | **ours / ipvsadm-restore** | ours / ipvsadm -R | our netlink requests (sendmsg writes) | writes per rule | our replies (datagrams) |');
  out.push('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const size of sizes) {
    const ours = med(size, 'ours', 'full', (x) => x.ms);
    const rest = med(size, 'reference', 'full', (x) => x.ms);
    const restR = med(size, 'reference', 'fullR', (x) => x.ms);
    const rules = med(size, 'reference', 'full', (x) => x.ops);
    out.push(`| ${size} | ${pick(size, 'ours', 'full').length}/${pick(size, 'reference', 'full').length} | ${Number.isFinite(rules) ? rules : med(size, 'ours', 'full', (x) => x.ops)} | ${msCell(size, 'ours', 'full')} | ${msCell(size, 'reference', 'full')} | ${msCell(size, 'reference', 'fullR')} | **${ratio(ours, rest)}** | ${ratio(ours, restR)} | ${med(size, 'ours', 'full', sent)} | ${perRule(med(size, 'ours', 'full', sent), Number.isFinite(rules) ? rules : med(size, 'ours', 'full', (x) => x.ops))} | ${med(size, 'ours', 'full', (x) => get(x.counts, 'wire', 'received'))} |`);
  }
  out.push('');
  out.push('Changes on the programmed table: ours = one full sync (desired → dump → diff → apply); the reference = `ipvsadm -R` of the delta lines (it is handed the delta, it computes nothing). "ops" = kernel writes; "requests" = every netlink request our client sent, dump requests included; "received" = bytes our client read back.');
  out.push('');
  out.push('| N×M | change | ops | ours ms | our requests | received KiB | ipvsadm -R ms | ours / ipvsadm -R | ours, no-op sync ms (requests) |');
  out.push('|---|---|---|---|---|---|---|---|---|');
  for (const size of sizes) {
    for (const [label, key] of [['1%', 'pct'], ['single', 'one']] as const) {
      const ours = med(size, 'ours', key, (x) => x.ms);
      const ref = med(size, 'reference', key, (x) => x.ms);
      const kib = med(size, 'ours', key, (x) => num(get(x.counts, 'wire', 'receivedBytes')) / 1024);
      const noop = label === '1%' ? '' : pick(size, 'ours', 'noop').length ? `${msCell(size, 'ours', 'noop')} (${med(size, 'ours', 'noop', sent)})` : 'not run';
      out.push(`| ${size} | ${label} | ${med(size, 'ours', key, (x) => x.ops)} | ${msCell(size, 'ours', key)} | ${med(size, 'ours', key, sent)} | ${Number.isFinite(kib) ? kib.toFixed(0) : '–'} | ${msCell(size, 'reference', key)} | ${ratio(ours, ref)} | ${noop} |`);
    }
  }
  out.push(...processTable(records));
  for (const r of records) {
    const st = r.events.find((e) => e.type === 'strace');
    if (st && st.ipvsadmR) {
      out.push('');
      out.push(`\`strace -f -c\` of one \`ipvsadm -R\` of the ${String(st.size)} rule set (${String(st.rules)} rules, untimed): ${Object.entries(st.ipvsadmR as Obj).map(([k, v]) => `${k} ${String(v)}`).join(', ')}.`);
    }
    const profiles = r.events.filter((e) => e.type === 'profile');
    if (!profiles.length) continue;
    out.push('');
    out.push(`CPU profile of our side at ${String(profiles[0]!.size)}, run \`${r.command}\` (V8 sampling profiler inside the guest, 0.5 ms interval; self time; a separate, profiled run, so its ms are inflated):`);
    out.push('');
    out.push('| phase | ms | ops | self time by area (top 6) | hottest functions (top 5) |');
    out.push('|---|---|---|---|---|');
    for (const p of profiles) {
      const sum = p.summary as { areas: Array<{ area: string; pct: number }>; functions: Array<{ fn: string; pct: number }> };
      const areas = sum.areas.slice(0, 6).map((a) => `${a.area} ${a.pct}%`).join('; ');
      const fns = sum.functions.slice(0, 5).map((f) => `\`${f.fn}\` ${f.pct}%`).join('; ');
      out.push(`| ${String(p.phase)} | ${String(p.ms)} | ${String(p.ops)} | ${areas} | ${fns} |`);
    }
  }
  return out.join('\n');
}

/**
 * The whole processes (bench/agent/process.ts, records from 2026-12-07 on): `lvs-agent apply -f` of
 * the VirtualServers against `ipvsadm-restore` plus `ip -batch` of the VIPs; wall and CPU.
 */
function processTable(records: AgentRecord[]): string[] {
  const all = records.flatMap((r) => r.events.filter((e) => e.type === 'process'));
  if (!all.length) return [];
  const ev = all.filter((e) => e.variant === undefined);
  const warn = (size: string) => all.filter((e) => e.size === size && e.variant === 'log-level warn');
  const sizes = [...new Set(ev.map((e) => String(e.size)))].sort((a, b) => parseInt(a) - parseInt(b));
  const of = (size: string, side: string) => ev.filter((e) => e.size === size && e.side === side);
  const cpu = (e: Obj) => num(e.userMs) + num(e.sysMs);
  const part = (e: Obj, k: string) => num(get(e, 'parts', 'restore', k));
  const out = ['', 'Whole processes from an empty namespace (ms in the guest: median and min–max over the repetitions; CPU = user + system of the process and every child it waited for): `lvs-agent apply -f` of N VirtualServers with static real servers (bundle start, validation, plan, lvs0 with every VIP, sysctls, nft, the sync, the owner record) against `ipvsadm-restore` of the same rules (its part shown apart) plus `ip -batch` adding every VIP to a dummy device.', '',
    '| N×M | reps (ours/ref) | rules | apply wall | apply CPU | restore + VIPs wall | restore + VIPs CPU | ipvsadm-restore alone wall | **apply / (restore + VIPs)**, wall | apply / ipvsadm-restore, wall | CPU ratio | apply --log-level warn wall / CPU (1 run) |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|'];
  for (const size of sizes) {
    const ours = of(size, 'ours');
    const ref = of(size, 'reference');
    const w = (xs: Obj[], f: (e: Obj) => number) => median(xs.map(f));
    out.push(`| ${size} | ${ours.length}/${ref.length} | ${String(ref[0]?.rules ?? ours[0]?.rules ?? '–')} | ${spread(ours.map((e) => num(e.ms)))} | ${spread(ours.map(cpu))} | ${spread(ref.map((e) => num(e.ms)))} | ${spread(ref.map(cpu))} | ${spread(ref.map((e) => part(e, 'ms')))} | **${ratio(w(ours, (e) => num(e.ms)), w(ref, (e) => num(e.ms)))}** | ${ratio(w(ours, (e) => num(e.ms)), w(ref, (e) => part(e, 'ms')))} | ${ratio(w(ours, cpu), w(ref, cpu))} | ${warn(size).map((e) => `${ms(num(e.ms))} / ${ms(cpu(e))}`).join(', ') || '–'} |`);
  }
  return [...out, ...processNotes(records)];
}

/** Node's and the bundle's start (startCosts events) and the profiled apply (processProfile). */
function processNotes(records: AgentRecord[]): string[] {
  const out: string[] = [];
  for (const r of records) {
    const starts = r.events.find((e) => e.type === 'startCosts')?.samples as Array<{ nodeMs: Obj; bundleHelpMs: Obj }> | undefined;
    if (starts?.length) {
      out.push('', `Fixed start cost in the same boot (${starts.length} runs, wall / CPU ms): \`node -e 0\` ${starts.map((x) => `${ms(num(x.nodeMs.ms))} / ${ms(num(x.nodeMs.userMs) + num(x.nodeMs.sysMs))}`).join(', ')}; \`node dist/lvs-agent.mjs show --help\` (the bundle loaded) ${starts.map((x) => `${ms(num(x.bundleHelpMs.ms))} / ${ms(num(x.bundleHelpMs.userMs) + num(x.bundleHelpMs.sysMs))}`).join(', ')}.`);
    }
    for (const p of r.events.filter((e) => e.type === 'processProfile')) {
      const self = p.self as { areas: Array<{ area: string; pct: number }>; functions: Array<{ fn: string; pct: number }> };
      const total = p.total as Array<{ fn: string; ms: number; pct: number }>;
      out.push('', `Profiled \`lvs-agent apply\` at ${String(p.size)} (\`node --cpu-prof\`, a sample per ms; ${ms(num(p.ms))} ms wall in that run). Self time by area: ${self.areas.slice(0, 8).map((a) => `${a.area} ${a.pct}%`).join('; ')}. Total time (with callees) by function: ${total.slice(0, 16).map((f) => `\`${f.fn}\` ${f.pct}%`).join('; ')}.`);
    }
  }
  return out;
}

function perRule(writes: number, rules: number): string {
  return Number.isFinite(writes) && rules > 0 ? (writes / rules).toFixed(writes / rules < 0.1 ? 4 : 2) : '–';
}

export function controllerSection(r: ControllerRecord): string {
  const out: string[] = [];
  out.push(`Command: \`${r.command}\` · ${machineLine(r.machine)}`);
  out.push('');
  out.push('Each row is a fresh node process (`node --expose-gc bench/controller/measure.ts N mode`). CPU = process.cpuUsage (user+system), the figure to trust on a loaded machine; wall is shown beside it.');
  out.push('');
  out.push('| VirtualServers | mode | load before (1/5/15) | full resync cold: CPU ms (wall) | warm median: CPU ms (wall) | index feed CPU ms | one endpoint change: CPU µs (wall µs) | live heap: inputs / +World MiB | peak RSS MiB |');
  out.push('|---|---|---|---|---|---|---|---|---|');
  for (const run of r.runs) {
    const x = run.result;
    const flags = run.nodeFlags.filter((f) => f !== '--expose-gc').join(' ');
    const mode = `${String(x.mode)}${flags ? ` (${flags})` : ''}`;
    const resync = (x.batchResync ?? x.controllerResync) as Obj | undefined;
    const cold = resync ? `${ms(num(get(resync, 'cold', 'cpuMs')))} (${ms(num(get(resync, 'cold', 'wallMs')))})` : '–';
    const warm = resync ? `${ms(num(get(resync, 'warmMedian', 'cpuMs')))} (${ms(num(get(resync, 'warmMedian', 'wallMs')))})` : '–';
    const feed = x.controllerResync ? ms(num(get(x, 'controllerResync', 'indexFeed', 'cpuMs'))) : '–';
    const change = x.oneEndpointChange ? `${String(get(x, 'oneEndpointChange', 'cpuUsPerChange'))} (${String(get(x, 'oneEndpointChange', 'wallUsPerChange'))}) over ${String(get(x, 'oneEndpointChange', 'repetitions'))}` : '–';
    const heap = x.virtualServers === 0 ? `${String(x.liveHeapMiB)} (empty)` : `${String(get(x, 'inputsOnly', 'liveHeapMiB'))}${x.liveHeapWithWorldMiB !== undefined ? ` / ${String(x.liveHeapWithWorldMiB)}` : ''}`;
    out.push(`| ${String(x.virtualServers)} | ${mode} | ${loadText(run.loadBefore)} | ${cold} | ${warm} | ${feed} | ${change} | ${heap} | ${String(x.maxRssMiB)} |`);
  }
  const big = r.runs.filter((run) => run.result.mode === 'batch' && run.nodeFlags.length === 1 && run.result.plan)
    .sort((a, b) => num(b.result.virtualServers) - num(a.result.virtualServers))[0];
  if (big) {
    const p = big.result.plan as Obj;
    out.push('');
    out.push(`Shape at ${String(big.result.virtualServers)} VirtualServers: ${String(big.result.services)} Services, ${String(big.result.endpoints)} endpoints, ${String(big.result.staticVirtualServers)} static VirtualServers → ${String(p.ipvsServices)} IPVS services with ${String(p.realServers)} real-server entries; ${String(p.readyVirtualServers)} VirtualServers Ready.`);
  }
  return out.join('\n');
}

/** Replaces the generated block `name` in `markdown` (appends it when missing). */
export function replaceSection(markdown: string, name: string, body: string): string {
  const begin = `<!-- BEGIN GENERATED: ${name} -->`;
  const end = `<!-- END GENERATED: ${name} -->`;
  const block = `${begin}\n${body}\n${end}`;
  const i = markdown.indexOf(begin);
  const j = markdown.indexOf(end);
  if (i < 0 || j < i) return `${markdown.trimEnd()}\n\n${block}\n`;
  return markdown.slice(0, i) + block + markdown.slice(j + end.length);
}

/** The convergence section: one row per size, latency from the slice write to the kernel. */
export function convergenceSection(r: ConvergenceRecord): string {
  const out = [
    `Command: \`${r.command}\` · ${machineLine(r.machine)}`,
    '',
    'Latency = from sending the EndpointSlice write (guest, through the apiserver) to the first netlink poll (every 5 ms) that shows the spare destination added (weight 1) or removed/draining (weight 0), one clock in the guest. Split, same clock: "plan seen" = when a watch on the PlanSlices, in the guest beside the agent, received the controller\'s slice with the new real servers (runs recorded before PlanSlices: "status seen", the VirtualServer status patch with the new realServers); "agent applied" = the agent\'s own log time of its netlink write for that destination.',
    '',
    'Memory (runs from 2026-12-06 on): the agent\'s resident set (VmRSS) when programmed and after the changes, and its peak (VmHWM) over the run; the controller\'s peak, read on the host after the run.',
    '',
    '| services | load before → after (1/5/15) | programmed from empty | changes seen / made | latency p50 | p90 | p99 | max | plan seen p50 / p99 | agent applied p50 / p99 | slice write p50 | agent RSS programmed / after changes (peak), MiB | controller peak, MiB |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const run of r.runs) {
    const ch = run.events.filter((e) => e.type === 'change' && e.burst === undefined);
    const seen = ch.map((e) => num(e.seenMs)).filter(Number.isFinite).sort((a, b) => a - b);
    const applied = ch.map((e) => num(e.agentAppliedMs)).filter(Number.isFinite).sort((a, b) => a - b);
    const status = ch.map((e) => num(e.planSeenMs ?? e.statusSeenMs)).filter(Number.isFinite).sort((a, b) => a - b);
    const writes = ch.map((e) => num(e.writeMs)).filter(Number.isFinite).sort((a, b) => a - b);
    const prog = num(run.events.find((e) => e.type === 'programmed' && e.who === undefined)?.ms);
    const p = (xs: number[], q: number) => ms(percentile(xs, q));
    const mem = (phase: string) => run.events.find((e) => e.type === 'memory' && e.who === 'agent' && e.phase === phase);
    const last = mem('changes') ?? mem('settled');
    const agentMem = mem('programmed') && last ? `${num(mem('programmed')!.rssMiB)} / ${num(last.rssMiB)} (${num(last.peakMiB)})` : '–';
    const controllerMem = run.controllerMemory ? String(run.controllerMemory.peakMiB) : '–';
    out.push(`| ${run.n}${(run.directors ?? 1) > 1 ? `, ${String(run.directors)} directors` : ''} | ${loadText(run.loadBefore)} → ${loadText(run.loadAfter)} | ${Number.isFinite(prog) ? `${(prog / 1000).toFixed(1)} s` : '–'} | ${seen.length} / ${ch.length}${run.complete ? '' : ' (incomplete)'} | ${p(seen, 50)} ms | ${p(seen, 90)} ms | ${p(seen, 99)} ms | ${ms(seen.at(-1) ?? NaN)} ms | ${status.length ? `${p(status, 50)} / ${p(status, 99)} ms` : '–'} | ${p(applied, 50)} / ${p(applied, 99)} ms | ${p(writes, 50)} ms | ${agentMem} | ${controllerMem} |`);
  }
  out.push(...burstTable(r.runs), ...overlapTable(r.runs));
  return out.join('\n');
}

/** The bursts (runs from 2026-12-07 on), apart from the sequential changes of the table above. */
function burstTable(runs: ConvergenceRecord['runs']): string[] {
  const rows: string[] = [];
  for (const run of runs) {
    const bursts = run.events.filter((e) => e.type === 'burst');
    if (bursts.length === 0) continue;
    const xs = run.events.filter((e) => e.type === 'change' && e.burst !== undefined).map((e) => num(e.seenMs)).filter(Number.isFinite).sort((a, b) => a - b);
    const writes = bursts.map((e) => num(e.writeMs)).sort((a, b) => a - b);
    rows.push(`| ${run.n} | ${bursts.length} × ${num(bursts[0]!.size)} | ${xs.length} | ${ms(percentile(xs, 50))} ms | ${ms(percentile(xs, 90))} ms | ${ms(percentile(xs, 99))} ms | ${ms(xs.at(-1) ?? NaN)} ms | ${ms(percentile(writes, 50))} ms |`);
  }
  if (rows.length === 0) return [];
  return ['', 'Bursts: that many EndpointSlices written at once (in parallel), every service then polled together until it shows its change; latency from the burst\'s first write. Apart from the sequential changes above.', '',
    '| services | bursts × slices | changes seen | latency p50 | p90 | p99 | max | all writes acknowledged p50 |', '|---|---|---|---|---|---|---|---|', ...rows];
}

/**
 * The sequential changes apart by what agent work they overlapped (runs from 2026-12-07 on: the
 * agent's debug log, bench/convergence/overlap.ts): none, a verify slice, a listing sync, a full
 * read-back, a director check, a garbage-collection pause of 20 ms or more (runs from the agent's
 * gc lines on, kube/gc-log.ts). A change may overlap several; empty when no run recorded it.
 */
function overlapTable(runs: ConvergenceRecord['runs']): string[] {
  const rows: string[] = [];
  for (const run of runs) {
    const ch = run.events.filter((e) => e.type === 'change' && e.burst === undefined && Array.isArray(e.overlapped));
    if (ch.length === 0) continue;
    for (const kind of ['none', 'slice', 'listing', 'full', 'director', 'gc']) {
      const of = ch.filter((e) => { const o = e.overlapped as string[]; return kind === 'none' ? o.length === 0 : o.includes(kind); });
      const xs = of.map((e) => num(e.seenMs)).filter(Number.isFinite).sort((a, b) => a - b);
      if (xs.length > 0) rows.push(`| ${run.n} | ${kind} | ${xs.length} | ${ms(percentile(xs, 50))} ms | ${ms(percentile(xs, 90))} ms | ${ms(percentile(xs, 99))} ms | ${ms(xs.at(-1)!)} ms |`);
    }
  }
  if (rows.length === 0) return [];
  return ['', 'The sequential changes by the agent work they overlapped (its debug log: a verify slice, a listing sync, a full read-back, a director check beside the syncs, gc = a garbage-collection pause of the agent of 20 ms or more; a change may overlap several):', '',
    '| services | overlapped | changes | latency p50 | p90 | p99 | max |', '|---|---|---|---|---|---|---|', ...rows];
}

/** The health-check section: one row per (size, probe type). */
export function healthSection(r: HealthRecord): string {
  const out = [
    `Command: \`${r.command}\` · ${machineLine(r.machine)} · load before ${loadText(r.loadBefore)}, after ${loadText(r.loadAfter)}`,
    '',
    'One process (the agent\'s dataplane/health with the real checkers) probing every real server once per interval (start to start, at a random 80–100% of it), at most 256 probes in flight; the real servers are listeners on loopback in another process. CPU = the probing process\'s user+system time over the window divided by wall time (1.0 = one core). Spread = probes per 100 ms bucket, fullest against mean.',
    '',
    '| probe | real servers | interval | window | probes/s | failed | CPU (cores) | spread max/mean per 100 ms | event-loop delay p99 | RSS |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const c of r.cases) out.push(`| ${c.type} | ${c.realServers.toLocaleString('en-US')} | ${c.intervalSeconds} s | ${c.windowSeconds} s | ${c.probesPerSecond} | ${c.failures} | ${c.cpuCores} | ${c.burstMax} / ${c.burstMean} | ${c.eventLoopDelayP99Ms} ms | ${c.rssMiB} MiB |`);
  return out.join('\n');
}
