// Guest side of the agent benchmark (runs only inside the harness VM; bench/agent/host.ts boots
// it). For each size N×M, in one kernel, the reference side first, then ours:
//   restore  — `ipvsadm-restore < file` of the same rules from empty (and `ipvsadm -R`, the one
//              process doing the work inside that wrapper script), then the same two changes as
//              delta files through `ipvsadm -R` (delete the old destination, add the new one).
//   ours     — the agent's syncer (plan → desired → dump → diff → apply) over our netlink client:
//              from empty, then the one-percent change, then the single change, then a no-op sync;
// After every step the table is read back with `ipvsadm -S -n` (untimed) and must equal the rule
// set exactly, so both sides are proven to have done the same work. Results go to the console as
// `BENCH-JSON {...}` lines, which the host collects.
//
// Every run (one side of one repetition, the `ipvsadm -R` full run, the profile) is a child
// process in a network namespace of its own, created empty for it and deleted after it. IPVS
// state is per namespace, and a fresh one matters: the kernel keeps every deleted destination on
// a "trash" list for 2-3 minutes (ip_vs_ctl.c: __ip_vs_del_dest moves it there,
// ip_vs_dest_trash_expire frees it once idle for IP_VS_DEST_TRASH_PERIOD, checked every 60 s),
// and every NEW_DEST first walks that whole list (ip_vs_trash_get_dest) looking for a destination
// to revive. A side that followed the other's clear-out in the same namespace paid one list walk
// per added destination: 110,000 walks of up to 110,000 entries at 10,000x10 (measured in
// lab/ipvs-trash). After deleting a namespace the parent waits until the VM is quiet again (the
// kernel frees the namespace's tables in a worker), so no run pays for the one before it.
import { execFileSync, spawnSync } from 'node:child_process';
import { openSync, closeSync, writeFileSync, mkdirSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import type { PlanService } from '../../api/plan.ts';
import { IpvsNetlink } from '../../dataplane/ipvs/netlink.ts';
import { createSyncer, type SyncResult } from '../../dataplane/sync/sync.ts';
import { countingKernel, newCounters, since, snapshot, wireTap, type Counters } from './counting.ts';
import { summarise, type CpuProfile } from './profile.ts';
import { cpuTicks } from '../lib/machine.ts';
import { manifests, NODE, onePercent, plan, replace, restoreDelta, restoreFile, ROUTE_DESTINATIONS, ruleSet, single, vipBatch, type RuleSet } from './rules.ts';
import { applyProcess, missingVips, processInputs, profiledApply, restoreWithVips, startCosts } from './process.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const TMP = join(process.env.TMPDIR ?? '/run/tmp', 'bench-agent');

if (process.env.LVS_IN_VM !== '1') throw new Error('bench/agent/guest.ts runs only inside the harness VM (LVS_IN_VM=1); use `npm run bench -- agent`');

function sh(argv: string[], input?: string): string {
  const [cmd, ...args] = argv;
  return execFileSync(cmd!, args, { encoding: 'utf8', input, maxBuffer: 256 << 20, stdio: ['pipe', 'pipe', 'pipe'] });
}

function emit(obj: Record<string, unknown>): void {
  console.log(`BENCH-JSON ${JSON.stringify(obj)}`);
}

export interface Step {
  ms: number;
  /** Operations the diff produced (ours) or lines in the restore file (ipvsadm-restore). */
  ops: number;
  counts?: Counters;
  /** Services read back by our sync: 'full' (the whole table) or how many (a partial sync). */
  read?: 'full' | number;
}

/** The kernel's table must hold exactly this rule set (both tools print rules in this format). */
function verify(rs: RuleSet, what: string): void {
  const have = sh(['ipvsadm', '-S', '-n']).split('\n').filter((l) => l.trim()).sort();
  const want = restoreFile(rs).split('\n').filter((l) => l.trim()).sort();
  if (have.length !== want.length || have.some((l, i) => l !== want[i])) {
    const got = new Set(have);
    const missing = want.filter((l) => !got.has(l)).slice(0, 3);
    throw new Error(`${what}: kernel holds ${have.length} rules, expected ${want.length}; e.g. missing ${JSON.stringify(missing)}`);
  }
}

function clear(): void {
  sh(['ipvsadm', '-C']);
}

/**
 * Times one process reading `file` on stdin, start to exit. `ipvsadm-restore` is Debian's wrapper
 * script (bash: grep the input, `ipvsadm -C`, then `ipvsadm -R`), so it always starts from empty;
 * `ipvsadm -R` is the one process that parses the lines and sends the requests.
 */
function restore(file: string, tool: 'ipvsadm-restore' | 'ipvsadm -R'): number {
  const fd = openSync(file, 'r');
  try {
    const [cmd, ...args] = tool.split(' ');
    const t0 = performance.now();
    const r = spawnSync(cmd!, args, { stdio: [fd, 'ignore', 'pipe'], encoding: 'utf8' });
    const ms = performance.now() - t0;
    if (r.status !== 0 || r.stderr.trim()) throw new Error(`${tool} < ${file} exited ${r.status}: ${r.stderr.trim().slice(0, 500)}`);
    return ms;
  } finally {
    closeSync(fd);
  }
}

interface Agent {
  kernel: IpvsNetlink;
  counters: Counters;
  sync(p: PlanService[]): Promise<Step>;
}

async function openAgent(): Promise<{ open(): Agent; close(): Promise<void> }> {
  const counters = newCounters();
  const raw = await IpvsNetlink.open({ timeoutMs: 120_000, tap: wireTap(counters) });
  const kernel = countingKernel(raw, counters);
  const log = pino({ level: 'silent' });
  return {
    // A new syncer per run, as a freshly started agent would have; the netlink client is shared.
    open(): Agent {
      let current: PlanService[] = [];
      // Between full resyncs the agent reads back only what changed (dataplane/sync/partial.ts); the
      // interval is long here so that the 1% and single changes are measured as such, whatever the load.
      const fullResyncIntervalMs = Number(process.env.BENCH_AGENT_FULL_RESYNC_MS ?? '3600000');
      const syncer = createSyncer({ kernel, node: NODE, plan: () => current, log, fullResyncIntervalMs });
      return {
        kernel: raw,
        counters,
        async sync(p) {
          current = p;
          const before = snapshot(counters);
          const t0 = performance.now();
          const r: SyncResult = await syncer.sync();
          const ms = performance.now() - t0;
          if (r.kind !== 'ok') throw new Error(`sync ended ${r.kind}: ${JSON.stringify('errors' in r ? r.errors.slice(0, 3).map((e) => `${e.op} ${e.key ?? ''} ${e.error.message}`) : r)}`);
          return { ms, ops: r.ops, counts: since(counters, before), ...(r.read === undefined ? {} : { read: r.read }) };
        },
      };
    },
    close: () => raw.close(),
  };
}

interface Sets {
  base: RuleSet;
  pct: RuleSet;
  one: RuleSet;
  files: { full: string; pct: string; one: string; manifest: string; vips: string };
  lines: { full: number; pct: number; one: number };
}

function ruleSets(n: number, m: number): Sets {
  const base = ruleSet(n, m);
  const p = replace(base, onePercent(base));
  const o = replace(p.next, single(p.next));
  const dir = join(TMP, `${n}x${m}`);
  mkdirSync(dir, { recursive: true });
  const texts = { full: restoreFile(base), pct: restoreDelta(base, p.changes), one: restoreDelta(p.next, o.changes) };
  const files = { full: join(dir, 'full.rules'), pct: join(dir, 'pct.rules'), one: join(dir, 'one.rules') };
  for (const k of ['full', 'pct', 'one'] as const) writeFileSync(files[k], texts[k]);
  const inputs = processInputs(dir, { manifest: manifests(base), vips: vipBatch(base, REF_VIP_DEVICE) });
  const count = (t: string) => t.split('\n').filter(Boolean).length;
  return { base, pct: p.next, one: o.next, files: { ...files, ...inputs }, lines: { full: count(texts.full), pct: count(texts.pct), one: count(texts.one) } };
}

type Emit = (step: string, result: Step) => void;

async function oursOnce(agent: Agent, s: Sets, out: Emit, withNoop: boolean): Promise<void> {
  clear();
  out('full', await agent.sync(plan(s.base)));
  verify(s.base, 'ours full');
  out('pct', await agent.sync(plan(s.pct)));
  verify(s.pct, 'ours 1%');
  out('one', await agent.sync(plan(s.one)));
  verify(s.one, 'ours single');
  if (withNoop) out('noop', await agent.sync(plan(s.one)));
}

/**
 * The reference side: the full set with ipvsadm-restore from empty, then the changes with
 * `ipvsadm -R` (ipvsadm-restore would clear the table first). Steps: full (ipvsadm-restore), pct
 * and one (ipvsadm -R).
 */
function restoreOnce(s: Sets, out: Emit): void {
  clear();
  out('full', { ms: restore(s.files.full, 'ipvsadm-restore'), ops: s.lines.full });
  verify(s.base, 'ipvsadm-restore full');
  out('pct', { ms: restore(s.files.pct, 'ipvsadm -R'), ops: s.lines.pct });
  verify(s.pct, 'ipvsadm -R 1%');
  out('one', { ms: restore(s.files.one, 'ipvsadm -R'), ops: s.lines.one });
  verify(s.one, 'ipvsadm -R single');
}

/** The full set with `ipvsadm -R` alone (the process inside the wrapper script), from empty: step fullR. */
function restoreFullR(s: Sets, out: Emit): void {
  clear();
  out('fullR', { ms: restore(s.files.full, 'ipvsadm -R'), ops: s.lines.full });
  verify(s.base, 'ipvsadm -R full');
}

/** The device the reference side puts the VIPs on (ours: lvs0, the agent's). */
const REF_VIP_DEVICE = 'benchvip0';

type ProcessRole = 'restoreVips' | 'apply' | 'applyWarn' | 'applyProfile';

/**
 * The whole-process comparison (./process.ts), one side per run: `restoreVips`, `apply` (default
 * log level), `applyWarn` (--log-level warn: no line per kernel operation) or `applyProfile`.
 */
function processOnce(role: ProcessRole, s: Sets, size: string, rep: number): void {
  const dir = join(TMP, size);
  if (role === 'restoreVips') {
    const r = restoreWithVips(s.files.full, s.files.vips);
    verify(s.base, 'ipvsadm-restore + ip -batch');
    const vips = missingVips(s.base, REF_VIP_DEVICE);
    if (vips.missing) throw new Error(`ip -batch: ${vips.missing} VIPs missing on ${REF_VIP_DEVICE}, e.g. ${vips.examples.join(', ')}`);
    const sum = (k: 'ms' | 'userMs' | 'sysMs') => r.restore[k] + r.vips[k];
    emit({ type: 'process', side: 'reference', size, rep, ms: sum('ms'), userMs: sum('userMs'), sysMs: sum('sysMs'), parts: r, rules: s.lines.full });
    return;
  }
  const r = role === 'applyProfile' ? profiledApply(s.files.manifest, dir) : applyProcess(s.files.manifest, dir, role === 'applyWarn' ? 'warn' : undefined);
  verify(s.base, 'lvs-agent apply');
  const vips = missingVips(s.base, 'lvs0');
  if (vips.missing) throw new Error(`lvs-agent apply: ${vips.missing} VIPs missing on lvs0, e.g. ${vips.examples.join(', ')}`);
  const variant = role === 'apply' ? {} : { variant: role === 'applyWarn' ? 'log-level warn' : 'profiled' };
  emit({ type: role === 'applyProfile' ? 'processProfile' : 'process', side: 'ours', size, rep, ...variant, rules: s.lines.full, ...r });
}

/** Syscalls of one `ipvsadm -R` run of `file` (strace -f -c), when strace is installed. */
function straceCounts(file: string): Record<string, number> | undefined {
  if (spawnSync('strace', ['-V']).status !== 0) return undefined;
  const out = join(TMP, 'strace.txt');
  const fd = openSync(file, 'r');
  try {
    const r = spawnSync('strace', ['-f', '-c', '-o', out, '-e', 'trace=socket,sendto,sendmsg,recvmsg,recvfrom', 'ipvsadm', '-R'], { stdio: [fd, 'ignore', 'pipe'] });
    if (r.status !== 0) return undefined;
  } finally {
    closeSync(fd);
  }
  const counts: Record<string, number> = {};
  for (const line of sh(['cat', out]).split('\n')) {
    const t = line.trim().split(/\s+/);
    const name = t.at(-1);
    if (t.length >= 5 && name && /^[a-z]+$/.test(name) && name !== 'total' && name !== 'syscall') counts[name] = Number(t[3]);
  }
  return counts;
}

async function profiled<T>(session: Session, run: () => Promise<T>): Promise<{ value: T; profile: CpuProfile }> {
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 500 });
  await session.post('Profiler.start');
  const value = await run();
  const { profile } = await session.post('Profiler.stop');
  return { value, profile: profile as unknown as CpuProfile };
}

function parseSizes(spec: string): Array<{ n: number; m: number; reps: number }> {
  return spec.split(',').map((part) => {
    const m = /^(\d+)x(\d+)(?:\*(\d+))?$/.exec(part.trim());
    if (!m) throw new Error(`BENCH_AGENT_SIZES: ${JSON.stringify(part)} is not NxM or NxM*reps`);
    return { n: Number(m[1]), m: Number(m[2]), reps: Number(m[3] ?? 1) };
  });
}

/** The same four syncs again under the V8 sampling profiler (a separate run: profiling slows it). */
async function profile(agent: Agent, s: Sets, size: string): Promise<void> {
  const session = new Session();
  session.connect();
  clear();
  for (const [phase, rs] of [['full', s.base], ['pct', s.pct], ['one', s.one], ['noop', s.one]] as const) {
    const { value, profile: prof } = await profiled(session, () => agent.sync(plan(rs)));
    emit({ type: 'profile', size, phase, ms: Math.round(value.ms), ops: value.ops, summary: summarise(prof, ROOT, 12) });
  }
  session.disconnect();
  clear();
}

/** One run, chosen by the parent through the environment (see `isolated`). */
async function child(role: string): Promise<void> {
  const size = process.env.BENCH_AGENT_SIZE ?? '';
  const rep = Number(process.env.BENCH_AGENT_REP ?? '0');
  const [n, m] = size.split('x').map(Number) as [number, number];
  const s = ruleSets(n, m);
  const step = (side: string): Emit => (name, r) => emit({ type: 'step', side, size, rep, step: name, lines: s.lines, ...r });
  if (role === 'reference') return restoreOnce(s, step('reference'));
  if (role === 'fullR') return restoreFullR(s, step('reference'));
  if (role === 'restoreVips' || role === 'apply' || role === 'applyWarn' || role === 'applyProfile') return processOnce(role, s, size, rep);
  const agents = await openAgent();
  try {
    if (role === 'ours') await oursOnce(agents.open(), s, step('ours'), process.env.BENCH_AGENT_NOOP === '1');
    else if (role === 'profile') await profile(agents.open(), s, size);
    else throw new Error(`BENCH_AGENT_ROLE: unknown role ${JSON.stringify(role)}`);
  } finally {
    await agents.close();
  }
}

let namespaces = 0;

/**
 * Runs this file again as `role` inside a new, empty network namespace (its 10.0.0.0/8 dummy link
 * set up as in the root namespace), deletes the namespace, and waits for the VM to be quiet.
 */
function isolated(role: string, size: string, rep: number, extra: Record<string, string> = {}): void {
  const ns = `bench-${++namespaces}`;
  sh(['ip', 'netns', 'add', ns]);
  try {
    sh(['ip', 'netns', 'exec', ns, 'bash', '-ec', ROUTE_DESTINATIONS]);
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, ...process.execArgv, fileURLToPath(import.meta.url)], {
      stdio: 'inherit',
      env: { ...process.env, BENCH_AGENT_ROLE: role, BENCH_AGENT_SIZE: size, BENCH_AGENT_REP: String(rep), ...extra },
    });
    if (r.status !== 0) throw new Error(`${role} run of ${size} (rep ${rep}) exited ${r.status ?? r.signal}`);
  } finally {
    sh(['ip', 'netns', 'del', ns]);
  }
  const waited = waitQuiet();
  emit({ type: 'settle', role, size, rep, ms: waited.ms, busy: waited.busy });
}

/** Waits (at most 120 s) for a second in which the CPUs were less than 10% busy; returns the wait and that share. */
function waitQuiet(): { ms: number; busy: number } {
  const t0 = performance.now();
  let busy = 1;
  while (performance.now() - t0 < 120_000) {
    const a = cpuTicks();
    execFileSync('sleep', ['1']);
    const b = cpuTicks();
    const spent = Math.max(1, b.total - a.total);
    busy = (spent - (b.idle - a.idle) - (b.iowait - a.iowait)) / spent;
    if (busy < 0.1) break;
  }
  return { ms: Math.round(performance.now() - t0), busy: Math.round(busy * 1000) / 1000 };
}

async function main(): Promise<void> {
  const sizes = parseSizes(process.env.BENCH_AGENT_SIZES ?? '100x10*5,1000x10*5,10000x10*5,40000x2*5');
  const profileSize = process.env.BENCH_AGENT_PROFILE ?? '100x10';
  mkdirSync(TMP, { recursive: true });
  sh(['bash', '-ec', ROUTE_DESTINATIONS]);
  const version = sh(['ipvsadm', '--version']).trim();
  // The agent's write path: apply.ts sends the ops of a sync through IpvsKernel.applyBatch when the
  // client has it (few sendmsg buffers); records without this field are of the one-request-per-op path.
  const writePath = typeof (IpvsNetlink.prototype as { applyBatch?: unknown }).applyBatch === 'function' ? 'batched' : 'one request per op';
  emit({ type: 'env', kernel: sh(['uname', '-r']).trim(), ipvsadm: version, node: process.version, cpus: sh(['nproc']).trim(), writePath, isolation: 'netns per run' });

  // Fixed cost of one ipvsadm-restore process (fork/exec, libnl, family lookup) with no rules.
  const empty = join(TMP, 'empty.rules');
  writeFileSync(empty, '');
  emit({
    type: 'baseline',
    restoreEmptyMs: [0, 1, 2].map(() => restore(empty, 'ipvsadm-restore')),
    ipvsadmREmptyMs: [0, 1, 2].map(() => restore(empty, 'ipvsadm -R')),
  });

  // Each step's result is printed as soon as it exists, so an interrupted run still records what
  // it measured. The reference side runs first: it is the shorter one at the large sizes.
  const rFullMax = Number(process.env.BENCH_AGENT_R_FULL_MAX ?? '1000');
  // A no-op sync costs what the single change costs minus two requests (both are one full dump):
  // measured where it is cheap, skipped at the large sizes to keep the run within a session.
  const noopMax = Number(process.env.BENCH_AGENT_NOOP_MAX ?? '1000');
  // Which runs: 'sync' (ipvsadm-restore and our sync path, above), 'process' (the whole processes,
  // ./process.ts). Both by default.
  const runs = new Set((process.env.BENCH_AGENT_RUNS ?? 'sync,process').split(','));
  const processProfile = process.env.BENCH_AGENT_PROCESS_PROFILE ?? '1000x10';
  if (runs.has('process')) emit({ type: 'startCosts', samples: [0, 1, 2].map(() => startCosts()) });
  for (const { n, m, reps } of sizes) {
    const size = `${n}x${m}`;
    const s = ruleSets(n, m);
    for (let rep = 0; rep < reps; rep++) {
      if (runs.has('sync')) {
        isolated('reference', size, rep);
        if (n <= rFullMax) isolated('fullR', size, rep);
        isolated('ours', size, rep, { BENCH_AGENT_NOOP: n <= noopMax ? '1' : '0' });
      }
      if (runs.has('process')) {
        isolated('restoreVips', size, rep);
        isolated('apply', size, rep);
      }
    }
    // Once per size: the apply without a log line per kernel operation, and (at one size) profiled.
    if (runs.has('process')) isolated('applyWarn', size, 0);
    if (runs.has('process') && size === processProfile) isolated('applyProfile', size, 0);
    if (n === sizes[0]!.n) emit({ type: 'strace', size, rules: s.lines.full, ipvsadmR: straceCounts(s.files.full) ?? null });
    if (size === profileSize) isolated('profile', size, 0);
  }
  emit({ type: 'done' });
}

const role = process.env.BENCH_AGENT_ROLE;
await (role ? child(role) : main());
