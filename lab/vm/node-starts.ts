// Measures how reliably Node starts inside the TCG guest: boots one VM per qemu configuration and,
// inside it, starts Node with the agent's imports N times per process configuration (interleaved,
// so every process configuration sees the same guest and the same host load). Records every exit
// that is a crash — a signal, or V8's "Fatal error"/"Check failed" — and the wall time per start.
//
//   node lab/vm/node-starts.ts [--runs N] [--minutes M] [--stop-after K] [--boots a,b,...] [--procs x,y,...] [--out FILE]
//
// Boot and process configurations are named below; the results (JSON lines per start, a summary
// per configuration) go to --out (default lab/vm/results/node-starts-<date>.json) and stdout.
// This is an experiment, not a test: lab/vm/NODE-UNDER-TCG.md holds the table it produced.
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { cpus, loadavg } from 'node:os';
import { spawnSync } from 'node:child_process';
import { REPO_ROOT, runInVm, type QemuCpu } from './vm.ts';

/** qemu configurations: CPU model and TCG threading (everything else is the VM definition's). */
export const BOOTS: Record<string, QemuCpu> = {
  'max-smp2': { cpu: 'max', smp: 2, tcgThread: 'multi' },
  'max-pkuoff-smp2': { cpu: 'max,pku=off', smp: 2, tcgThread: 'multi' },
  'max-smp2-single': { cpu: 'max', smp: 2, tcgThread: 'single' },
  'max-smp1': { cpu: 'max', smp: 1, tcgThread: 'multi' },
  'nehalem-smp2': { cpu: 'Nehalem', smp: 2, tcgThread: 'multi' },
  'qemu64-smp2': { cpu: 'qemu64', smp: 2, tcgThread: 'multi' },
  'max-noavx-pkuoff-smp2': { cpu: 'max,pku=off,avx=off,avx2=off', smp: 2, tcgThread: 'multi' },
};

/** Process configurations: the V8 flags and the entry point (TypeScript stripped at load, or the bundle). */
export const PROCS: Record<string, string> = {
  ts: 'dataplane/cli/main.ts show --help',
  'ts-nopku': '--no-memory-protection-keys dataplane/cli/main.ts show --help',
  'ts-single': '--single-threaded dataplane/cli/main.ts show --help',
  'ts-nowasmtierup': '--no-wasm-tier-up dataplane/cli/main.ts show --help',
  // The repository's .ts served precompiled by lab/vm/precompiled-hook.mjs: no type stripping in the guest.
  'ts-hook': '--no-experimental-strip-types --import=./lab/vm/precompiled-hook.mjs dataplane/cli/main.ts show --help',
  js: 'dist/lvs-agent.mjs show --help',
  'js-nopku': '--no-memory-protection-keys dist/lvs-agent.mjs show --help',
  'js-single': '--single-threaded dist/lvs-agent.mjs show --help',
  // Node's wasm type stripper run hot in one process (lab/vm/strip-stress.mjs), bare and with flags.
  strip: 'lab/vm/strip-stress.mjs 3',
  'strip-nopku': '--no-memory-protection-keys lab/vm/strip-stress.mjs 3',
  'strip-nowasmtierup': '--no-wasm-tier-up lab/vm/strip-stress.mjs 3',
  'strip-single': '--single-threaded lab/vm/strip-stress.mjs 3',
  'strip-nodyntier': '--no-wasm-dynamic-tiering lab/vm/strip-stress.mjs 3',
  'strip-liftoffonly': '--liftoff-only lab/vm/strip-stress.mjs 3',
  // Under --vm-node-options these run with GUEST_NODE_OPTIONS (the .ts through the precompiled hook).
  'agent': 'dist/lvs-agent.mjs show --help',
  'guest-ts': 'dataplane/cli/main.ts show --help',
  // The bundle's cluster-agent entry (REST client with undici, informers, sync); not
  // @kubernetes/client-node, which `run` loads by itself for the kubeconfig.
  'js-cluster': '--input-type=module -e "await import(\'./dist/lvs-agent-cluster.mjs\')"',
};

interface Start { boot: string; proc: string; i: number; code: number; ms: number; crash: boolean; tail?: string }

function guestCommand(procs: string[], runs: number, stopAfter: number, minutes: number): string {
  // One bash loop: per round, each process configuration once; a configuration that has crashed
  // stopAfter times is retired (its rate is known well enough). A crash keeps the output's head.
  const cases = procs.map((p) => `'${p}') args=${JSON.stringify(PROCS[p])} ;;`).join('\n    ');
  return `
declare -A crashes
for i in $(seq ${runs}); do
  [ $SECONDS -ge ${Math.round(minutes * 60)} ] && { echo "NS-BUDGET rounds $((i - 1)) in $SECONDS s"; break; }
  for p in ${procs.join(' ')}; do
    [ "\${crashes[$p]:-0}" -ge ${stopAfter} ] && continue
    case "$p" in
    ${cases}
    esac
    t0=$(date +%s%N)
    out=$(eval "node_modules/.bin/node $args" 2>&1 </dev/null); code=$?
    t1=$(date +%s%N)
    crash=0
    if [ $code -ge 128 ] || printf '%s' "$out" | grep -q -e 'Fatal error' -e 'Check failed' -e 'Segmentation'; then crash=1; fi
    echo "NS-START $p $i $code $(( (t1 - t0) / 1000000 )) $crash"
    [ $crash = 1 ] && crashes[$p]=$(( \${crashes[$p]:-0} + 1 ))
    if [ $crash = 1 ] || [ $code != 0 ]; then
      printf '%s\\n' "$out" | grep -v -e '^ *$' -e '^#$' | head -n 24 | sed "s/^/NS-TAIL $p $i /"
    fi
  done
done
echo NS-DONE`;
}

function parse(boot: string, output: string): Start[] {
  const starts: Start[] = [];
  const tails = new Map<string, string[]>();
  for (const line of output.split('\n')) {
    const t = /^NS-TAIL (\S+) (\d+) (.*)$/.exec(line);
    if (t) { const k = `${t[1]} ${t[2]}`; tails.set(k, [...(tails.get(k) ?? []), t[3]!]); continue; }
    const m = /^NS-START (\S+) (\d+) (\d+) (\d+) (\d)$/.exec(line);
    if (m) starts.push({ boot, proc: m[1]!, i: Number(m[2]), code: Number(m[3]), ms: Number(m[4]), crash: m[5] === '1' });
  }
  for (const s of starts) if (s.crash || s.code !== 0) s.tail = (tails.get(`${s.proc} ${s.i}`) ?? []).join('\n');
  return starts;
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))]! : NaN;
};

export function summarize(starts: Start[]) {
  const groups = new Map<string, Start[]>();
  for (const s of starts) groups.set(`${s.boot} ${s.proc}`, [...(groups.get(`${s.boot} ${s.proc}`) ?? []), s]);
  return [...groups].map(([key, ss]) => {
    const [boot, proc] = key.split(' ');
    const ok = ss.filter((s) => !s.crash).map((s) => s.ms);
    return { boot, proc, starts: ss.length, crashes: ss.filter((s) => s.crash).length, failures: ss.filter((s) => !s.crash && s.code !== 0).length, p50ms: pct(ok, 0.5), p90ms: pct(ok, 0.9) };
  });
}

/** Names V8's stack frames (" 3: 0xd6bbe2  [node]") from the Node binary's symbol table (nm). */
function symbolizer(): (tail: string) => string {
  const nm = spawnSync('nm', ['-C', '--defined-only', process.execPath], { encoding: 'utf8', maxBuffer: 256 << 20 });
  const syms = (nm.stdout ?? '').split('\n').map((l) => /^([0-9a-f]+) [TtWw] (.*)$/.exec(l)).filter((m) => m !== null)
    .map((m) => ({ at: parseInt(m[1]!, 16), name: m[2]!.replace(/\(.*$/, '').replace(/^.*::(?=[^:]+::[^:]+$)/, '') })).sort((a, b) => a.at - b.at);
  const find = (a: number) => {
    let lo = 0, hi = syms.length - 1;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (syms[mid]!.at <= a) lo = mid; else hi = mid - 1; }
    return syms[lo]?.name ?? '?';
  };
  return (tail) => {
    const frames = [...tail.matchAll(/^\s*\d+: 0x([0-9a-f]+)/gm)].map((m) => find(parseInt(m[1]!, 16)))
      .filter((n) => !/V8_Fatal|DumpNativeBacktrace|PrintCurrentStackTrace|GetStackTracePrinter|node::/.test(n));
    return frames.slice(0, 8).join(' ← ');
  };
}

/**
 * `node lab/vm/node-starts.ts --report FILE.lines ...`: the markdown table of NODE-UNDER-TCG.md
 * from the raw lines of one or more runs (each line: boot, then the guest's NS-START/NS-TAIL line).
 */
function report(files: string[]): string {
  const starts: Start[] = [];
  for (const f of files) {
    const lines = readFileSync(f, 'utf8').split('\n').filter(Boolean);
    const byBoot = new Map<string, string[]>();
    for (const l of lines) { const i = l.indexOf(' '); byBoot.set(l.slice(0, i), [...(byBoot.get(l.slice(0, i)) ?? []), l.slice(i + 1)]); }
    for (const [boot, ls] of byBoot) starts.push(...parse(boot, ls.join('\n')));
  }
  const rows = summarize(starts).sort((a, b) => `${a.boot} ${a.proc}`.localeCompare(`${b.boot} ${b.proc}`));
  const symbolize = symbolizer();
  const sig = (boot: string, proc: string) => [...new Set(starts.filter((s) => s.crash && s.boot === boot && s.proc === proc)
    .map((s) => `${/Check failed: [^\n]*|Segmentation[^\n]*/.exec(s.tail ?? '')?.[0] ?? `exit ${s.code}`} ${symbolize(s.tail ?? '')}`.trim()))].join('; ');
  const out = ['| qemu (-cpu, -smp, TCG threads) | Node process | starts | crashes | crash rate | other non-zero exits | start p50 / p90 (s) | what crashed |', '|---|---|---:|---:|---:|---:|---|---|'];
  for (const r of rows) {
    const b = BOOTS[r.boot!.replace(/\+vm$/, '')];
    out.push(`| ${b ? `${b.cpu}, ${b.smp}, ${b.tcgThread}` : r.boot}${r.boot!.endsWith('+vm') ? ' + GUEST_NODE_OPTIONS' : ''} | \`${r.proc}\` | ${r.starts} | ${r.crashes} | ${(100 * r.crashes / r.starts).toFixed(1)}% | ${r.failures} | ${(r.p50ms / 1000).toFixed(1)} / ${(r.p90ms / 1000).toFixed(1)} | ${sig(r.boot!, r.proc!)} |`);
  }
  return out.join('\n');
}

async function main() {
  const reportAt = process.argv.indexOf('--report');
  if (reportAt >= 0) { console.log(report(process.argv.slice(reportAt + 1))); return; }
  const { values } = parseArgs({ options: { 'vm-node-options': { type: 'boolean' }, minutes: { type: 'string' }, 'stop-after': { type: 'string' }, runs: { type: 'string' }, boots: { type: 'string' }, procs: { type: 'string' }, out: { type: 'string' } } });
  const runs = Number(values.runs ?? 300);
  const stopAfter = Number(values['stop-after'] ?? 5);
  const minutes = Number(values.minutes ?? 600); // per boot: the round under way when it runs out is the last
  const boots = (values.boots ?? Object.keys(BOOTS).join(',')).split(',');
  const procs = (values.procs ?? 'ts,ts-nopku,js').split(',');
  for (const b of boots) if (!BOOTS[b]) throw new Error(`unknown boot configuration ${b}; known: ${Object.keys(BOOTS).join(' ')}`);
  for (const p of procs) if (!PROCS[p]) throw new Error(`unknown process configuration ${p}; known: ${Object.keys(PROCS).join(' ')}`);
  const out = values.out ?? join(REPO_ROOT, 'lab/vm/results', `node-starts-${new Date().toISOString().slice(0, 16).replace(/:/g, '')}.json`);
  mkdirSync(dirname(out), { recursive: true });
  const all: Start[] = [];
  const meta = { command: `node lab/vm/node-starts.ts ${process.argv.slice(2).join(' ')}`.trim(), date: new Date().toISOString(), hostCpus: cpus().length, hostCpu: cpus()[0]?.model, runs, stopAfter, minutes, boots, procs, loadBefore: loadavg() };
  for (const boot of boots) {
    const started = Date.now();
    const label = values['vm-node-options'] ? `${boot}+vm` : boot;
    const r = await runInVm({ command: guestCommand(procs, runs, stopAfter, minutes), timeoutMs: 4 * 3600_000, qemuCpu: BOOTS[boot]!, label: boot, echo: false,
      // Without --vm-node-options each process runs with only its own flags; with it, under the VM
      // definition's GUEST_NODE_OPTIONS (the configuration every boot uses), recorded as boot+vm.
      ...(values['vm-node-options'] ? {} : { guestNodeOptions: '' }),
      onOutput: (l) => {
        if (l.startsWith('NS-')) appendFileSync(`${out}.lines`, `${label} ${l}\n`); // kept even if this process dies
        // Crashes as they happen, and a progress line every 25 rounds.
        if (/^NS-TAIL /.test(l) || (/^NS-START /.test(l) && l.endsWith(' 1'))) console.log(`[${boot}] ${l}`);
        else if (new RegExp(`^NS-START ${procs.at(-1)} (\\d+) `).exec(l)?.[1]?.match(/^\d*(25|50|75|00)$/)) console.log(`[${boot}] ${l}`);
      } });
    const starts = parse(label, r.output);
    if (!r.output.includes('NS-DONE')) console.log(`# ${boot}: VM ended early (exit ${r.exitCode}, timedOut ${r.timedOut}); ${starts.length} starts recorded`);
    all.push(...starts);
    console.log(`# ${boot}: ${starts.length} starts in ${Math.round((Date.now() - started) / 1000)} s`);
    for (const row of summarize(starts)) console.log(JSON.stringify(row));
    writeFileSync(out, JSON.stringify({ ...meta, loadAfter: loadavg(), summary: summarize(all), crashes: all.filter((s) => s.crash), starts: all.map(({ tail: _t, ...s }) => s) }, null, 1) + '\n');
  }
  console.log(`# written ${out}`);
}

if (import.meta.main) await main();
