// Guest-side helpers of the health-check suite: a sampler that reads the director's IPVS table in
// a loop (one bash process) and keeps every read with its time, so a test can wait for a weight to
// change and say when it did, or check that something never happened over a span of time (a
// restart); and the HTTP test server's launcher.
//
// Two readers of the same kernel table: /proc/net/ip_vs, read with a bash builtin (no fork: a
// read every ~50 ms even under TCG, which times changes to within a read), and `ipvsadm -Ln`, the
// independent tool, every fourth round (a fork and exec, 0.1-0.3 s under TCG). Both become the
// same IpvsService list; each sample says which tool read it.
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseIpvsList, type IpvsDest, type IpvsService } from '../../../../lab/guest/ipvsadm.ts';
import { assertInVm } from '../../../../lab/guest/netns.ts';

export interface Sample {
  source: 'ipvsadm' | 'proc';
  /** Wall-clock ms just before the read. */
  before: number;
  /** Wall-clock ms just after it: the table below held at some moment up to this. */
  at: number;
  services: IpvsService[];
}

/** The destination `rs` ("addr:port") of service `svc` ("vip:port") in a sample, if present. */
export function destOf(s: Sample, svc: string, rs: string): IpvsDest | undefined {
  return s.services.find((x) => x.address === svc)?.dests.find((d) => d.address === rs);
}

/** "addr:port weight" of every destination of `svc` in a sample ('' entries when absent). */
export function weightsOf(s: Pick<Sample, 'services'>, svc: string): string[] {
  return (s.services.find((x) => x.address === svc)?.dests ?? []).map((d) => `${d.address} ${d.weight}`);
}

/**
 * Pure: /proc/net/ip_vs in `ipvsadm -Ln`'s notation (IPv4 only: "CB007150:0050" becomes
 * "203.0.113.80:80"), so parseIpvsList reads both. The column layout is the same.
 */
export function procToIpvsadm(text: string): string {
  return text.replace(/\b([0-9A-F]{8}):([0-9A-F]{4})\b/g, (_m, a: string, p: string) =>
    `${[0, 2, 4, 6].map((i) => parseInt(a.slice(i, i + 2), 16)).join('.')}:${parseInt(p, 16)}`);
}

export interface Sampler {
  readonly samples: readonly Sample[];
  /** The first sample taken after `after` (ms; default now) for which `pred` holds. */
  waitFor(pred: (s: Sample) => boolean, opts?: { after?: number; timeoutMs?: number; what?: string }): Promise<Sample>;
  /** Samples whose reading started at or after `from` and ended at or before `to`. */
  between(from: number, to: number): Sample[];
  stop(): void;
}

const epochMs = (s: string) => Math.round(Number(s) * 1000);

export function startSampler(ns: string, periodS = 0.05): Sampler {
  assertInVm();
  // $EPOCHREALTIME is a bash variable and mapfile a builtin (no fork). The pause is `read -t` on a
  // FIFO nobody writes (a builtin: `sleep` would be a fork per round).
  const script = [
    'export LC_ALL=C',
    'f=$(mktemp -u "${TMPDIR:-/tmp}/sampler.XXXXXX"); mkfifo "$f"; exec 3<>"$f"; rm -f "$f"',
    'i=0',
    'while :; do',
    '  b=$EPOCHREALTIME; mapfile -t L < /proc/net/ip_vs; echo "@ proc $b $EPOCHREALTIME"; printf \'%s\\n\' "${L[@]}"; echo .',
    '  if (( i++ % 4 == 0 )); then b=$EPOCHREALTIME; out=$(ipvsadm -Ln 2>&1); echo "@ ipvsadm $b $EPOCHREALTIME"; printf \'%s\\n\' "$out"; echo .; fi',
    `  read -t ${periodS} -u 3`,
    'done',
  ].join('\n') + '\n';
  const child: ChildProcess = spawn('ip', ['netns', 'exec', ns, 'bash', '-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  process.on('exit', () => child.kill('SIGKILL'));
  const samples: Sample[] = [];
  const waiters = new Set<() => void>();
  let buf = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    for (;;) {
      const end = buf.indexOf('\n.\n');
      if (end < 0) break;
      const block = buf.slice(0, end);
      buf = buf.slice(end + 3);
      const m = /^@ (proc|ipvsadm) (\S+) (\S+)\n([\s\S]*)$/.exec(block);
      if (!m) continue;
      const source = m[1] as Sample['source'];
      samples.push({ source, before: epochMs(m[2]!), at: epochMs(m[3]!), services: parseIpvsList(source === 'proc' ? procToIpvsadm(m[4]!) : m[4]!) });
    }
    for (const w of [...waiters]) w();
  });
  return {
    samples,
    waitFor(pred, { after = Date.now(), timeoutMs = 60_000, what = 'a sample matching the condition' } = {}) {
      return new Promise((resolve, reject) => {
        let seen = 0;
        const check = () => {
          for (; seen < samples.length; seen++) {
            const s = samples[seen]!;
            if (s.before >= after && pred(s)) { done(); resolve(s); return; }
          }
        };
        const timer = setTimeout(() => {
          done();
          const last = samples.at(-1);
          reject(new Error(`no ${what} within ${timeoutMs} ms; last sample:\n${last ? last.services.map((x) => `${x.address}: ${x.dests.map((d) => `${d.address} w${d.weight} a${d.activeConn} i${d.inactConn}`).join(', ')}`).join('\n') : '(none)'}`));
        }, timeoutMs);
        const done = () => { clearTimeout(timer); waiters.delete(check); };
        waiters.add(check);
        check();
      });
    },
    between: (from, to) => samples.filter((s) => s.before >= from && s.at <= to),
    stop: () => { child.kill('SIGKILL'); },
  };
}

const here = dirname(fileURLToPath(import.meta.url));

export interface HttpServerConfig { id: string; port: number; paths?: Record<string, number>; hang?: boolean }
export interface NodeServer { pid: number; stop(): Promise<void> }

const started = new Set<ChildProcess>();
process.on('exit', () => { for (const c of started) c.kill('SIGKILL'); });

/** ./http-server.ts in `ns`; resolves once it listens (retried once: a Node start under TCG can be slow). */
export async function startHttpServer(ns: string, cfg: HttpServerConfig, attempts = 2): Promise<NodeServer> {
  assertInVm();
  for (let i = 1; ; i++) {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, join(here, 'http-server.ts'), JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
    started.add(child);
    const stop = () => new Promise<void>((resolve) => {
      started.delete(child);
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('close', () => resolve());
      child.kill('SIGKILL');
    });
    try {
      await new Promise<void>((resolve, reject) => {
        let out = '';
        let err = '';
        const timer = setTimeout(() => reject(new Error(`http server ${cfg.id} in ${ns}: not ready after 45 s: ${err}`)), 45_000);
        child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
        child.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('READY')) { clearTimeout(timer); resolve(); } });
        child.once('close', (code, signal) => { clearTimeout(timer); reject(new Error(`http server ${cfg.id} in ${ns} ended (${code ?? signal}) before READY: ${err.trim()}`)); });
      });
      return { pid: child.pid!, stop };
    } catch (err) {
      await stop();
      if (i >= attempts) throw err;
      console.log(`\n# ${(err as Error).message}; starting it again`);
    }
  }
}
