// Guest side of the whole-process comparison (issue 14: "the whole `lvs-agent apply` process against
// the whole `ipvsadm-restore`"), run by bench/agent/guest.ts in a fresh network namespace per run:
//   apply       — `node dist/lvs-agent.mjs apply -f <N VirtualServers>` from start to exit, the
//                 bundle the images run: Node's start, reading and validating every manifest,
//                 resolving the plan, the director's preparation (lvs0 with every VIP, sysctls,
//                 nft), the sync and the owner record. No compile cache: a fresh start, as a
//                 one-shot apply on a node is.
//   restoreVips — what a director without us runs for the same result: `ipvsadm-restore` of the
//                 rules, then `ip -batch` adding every VIP to a dummy device (IPVS takes a
//                 connection only to a local address, so the VIPs are part of the job).
// Both are timed with bash's `time` (wall, and the user and system CPU of the process and every
// descendant it waited for: ipvsadm under ipvsadm-restore, ip/nft/sysctl under the agent), and both
// are checked afterwards: `ipvsadm -S -n` must hold exactly the rule set, and every VIP must be
// on the device.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AGENT_ENTRY, REPO } from '../../lab/vm/guest-agent.ts';
import { NODE, vipOf, type RuleSet } from './rules.ts';
import { inclusive, summarise, type CpuProfile } from './profile.ts';

export interface ProcessTime {
  ms: number;
  userMs: number;
  sysMs: number;
}

/** Runs argv under bash's `time`, stdin from `input` (or /dev/null); throws on a non-zero exit. */
export function timedProcess(argv: readonly string[], input = '/dev/null'): ProcessTime & { stdout: string } {
  const script = 'TIMEFORMAT="BENCH-TIME %3R %3U %3S"; time "$@" <"$BENCH_IN" 2>"$BENCH_ERR"';
  const err = join(process.env.TMPDIR ?? '/run/tmp', `bench-process-${process.pid}.err`);
  const r = spawnSync('bash', ['-c', script, 'bash', ...argv], { encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, BENCH_IN: input, BENCH_ERR: err } });
  const m = /BENCH-TIME ([\d.]+) ([\d.]+) ([\d.]+)/.exec(r.stderr);
  if (r.status !== 0 || !m) {
    const tail = spawnSync('tail', ['-c', '2000', err], { encoding: 'utf8' }).stdout;
    throw new Error(`${argv.join(' ')} exited ${r.status ?? r.signal}: ${tail.trim() || r.stderr.trim()}`);
  }
  const ms = (s: string) => Math.round(Number(s) * 1000);
  return { ms: ms(m[1]!), userMs: ms(m[2]!), sysMs: ms(m[3]!), stdout: r.stdout };
}

/** VIPs on `device` that are not there, e.g. ['198.18.0.7']; at most 3 named. */
export function missingVips(rs: RuleSet, device: string): { missing: number; examples: string[] } {
  const out = spawnSync('ip', ['-o', '-4', 'addr', 'show', 'dev', device], { encoding: 'utf8', maxBuffer: 256 << 20 }).stdout;
  const have = new Set([...out.matchAll(/inet (\S+?)\/32/g)].map((m) => m[1]!));
  const examples: string[] = [];
  let missing = 0;
  for (let i = 0; i < rs.services; i++) {
    if (have.has(vipOf(i))) continue;
    if (++missing <= 3) examples.push(vipOf(i));
  }
  return { missing, examples };
}

/** The apply's command line: `manifest` (one file of N VirtualServers), its owner record in `dir`. */
function applyArgv(manifest: string, dir: string): string[] {
  return [AGENT_ENTRY, 'apply', '-f', manifest, '--node-name', NODE, '--announce', 'none', '--state-file', join(dir, `state-${process.pid}.json`)];
}

/** The wall and CPU times alone (without the output). */
const timesOf = (t: ProcessTime): ProcessTime => ({ ms: t.ms, userMs: t.userMs, sysMs: t.sysMs });

/**
 * The whole `lvs-agent apply` of `manifest` in this namespace, with its default log level (info:
 * a line per kernel operation up to 1,000 in a sync) unless `logLevel` is given.
 */
export function applyProcess(manifest: string, dir: string, logLevel?: string): ProcessTime & { summary: string } {
  const t = timedProcess([process.execPath, ...applyArgv(manifest, dir), ...(logLevel ? ['--log-level', logLevel] : [])]);
  return { ...timesOf(t), summary: t.stdout.trim().slice(0, 300) };
}

/**
 * The same apply under V8's sampling profiler (a sample per ms; `node --cpu-prof`, which covers
 * the whole process from its first module on): self time by area and function, and total time by
 * function, which names the phases (module evaluation, validation, the sync).
 */
export function profiledApply(manifest: string, dir: string): ProcessTime & { self: ReturnType<typeof summarise>; total: ReturnType<typeof inclusive> } {
  const profDir = join(dir, `prof-${process.pid}`);
  mkdirSync(profDir, { recursive: true });
  const t = timedProcess([process.execPath, '--cpu-prof', `--cpu-prof-dir=${profDir}`, '--cpu-prof-interval=1000', ...applyArgv(manifest, dir)]);
  const files = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length !== 1) throw new Error(`profiled apply: ${files.length} profiles in ${profDir}`);
  const profile = JSON.parse(readFileSync(join(profDir, files[0]!), 'utf8')) as CpuProfile;
  rmSync(profDir, { recursive: true, force: true });
  return { ...timesOf(t), self: summarise(profile, REPO, 15), total: inclusive(profile, REPO, 30) };
}

/** Node's own start (`node -e 0`) and the bundle's (`lvs-agent show --help`): the fixed cost under apply. */
export function startCosts(): { nodeMs: ProcessTime; bundleHelpMs: ProcessTime } {
  return { nodeMs: timesOf(timedProcess([process.execPath, '-e', '0'])), bundleHelpMs: timesOf(timedProcess([process.execPath, AGENT_ENTRY, 'show', '--help'])) };
}

/** `ipvsadm-restore < rules`, then `ip -batch` of the VIPs; each part timed. */
export function restoreWithVips(rules: string, vips: string): { restore: ProcessTime; vips: ProcessTime } {
  return { restore: timesOf(timedProcess(['ipvsadm-restore'], rules)), vips: timesOf(timedProcess(['ip', '-batch', vips])) };
}

/** Writes the inputs of both sides for a rule set into `dir`; returns their paths. */
export function processInputs(dir: string, texts: { manifest: string; vips: string }): { manifest: string; vips: string } {
  const files = { manifest: join(dir, 'virtualservers.yaml'), vips: join(dir, 'vips.batch') };
  writeFileSync(files.manifest, texts.manifest);
  writeFileSync(files.vips, texts.vips);
  return files;
}
