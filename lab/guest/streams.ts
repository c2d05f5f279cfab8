// Host side (inside the guest) of lab/guest/stream.ts: echo servers in the real-server namespaces
// and a stream client in the client namespace, driven with MARK/STOP on its stdin. Used by the ha
// test tier (test/ha/guest/) and the demo's failover (demo/failover.ts).
//
//   await startStreamServer('rs1', [8080, 8081]);
//   const s = await startStreams('client', { host: VIP, port: 8080, conns: 10, intervalMs: 20, finalMs: 5000 });
//   s.mark(); ...switch directors...; const conns = await s.stop();
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { REPO } from '../vm/guest-agent.ts';
import type { StreamClientConfig, StreamConn } from './stream.ts';

const SCRIPT = join(REPO, 'lab/guest/stream.ts');
const children = new Set<ChildProcess>();
process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); });

function spawnStream(ns: string, mode: 'server' | 'client', cfg: object): ChildProcess {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, SCRIPT, mode, JSON.stringify(cfg)], { stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  child.on('close', () => children.delete(child));
  return child;
}

/** Resolves with the first stdout line matching `re`; rejects when the process ends first or after `ms`. */
function waitLine(child: ChildProcess, re: RegExp, ms: number, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`${what}: nothing matching ${re} in ${ms} ms: ${err}`)), ms);
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const hit = out.split('\n').slice(0, -1).find((l) => re.test(l)); // complete lines only
      if (hit !== undefined) { clearTimeout(timer); resolve(hit); }
    });
    child.once('close', (code, signal) => { clearTimeout(timer); reject(new Error(`${what} ended (${code ?? signal}) before ${re}: ${err.trim()}`)); });
  });
}

export async function startStreamServer(ns: string, ports: number[]): Promise<void> {
  await waitLine(spawnStream(ns, 'server', { ports }), /^READY$/, 90_000, `stream server in ${ns}`);
}

export function stopStreamProcesses(): void {
  for (const c of children) c.kill('SIGKILL');
}

export interface StreamRun {
  /** How many connections echoed before the deadline. */
  established: number;
  /** The local (source) port of every connection the client opened. */
  ports: number[];
  mark(): void;
  stop(): Promise<StreamConn[]>;
}

export async function startStreams(ns: string, cfg: StreamClientConfig): Promise<StreamRun> {
  const child = spawnStream(ns, 'client', cfg);
  const line = await waitLine(child, /^ESTABLISHED \d+ [\d,]*$/, 90_000, `stream client in ${ns}`);
  const [, established, ports = ''] = line.split(' ');
  return {
    established: Number(established),
    ports: ports ? ports.split(',').map(Number) : [],
    mark: () => { child.stdin!.write('MARK\n'); },
    stop: async () => {
      const done = waitLine(child, /^\{/, cfg.finalMs + 30_000, `stream client in ${ns}`);
      child.stdin!.write('STOP\n');
      return (JSON.parse(await done) as { conns: StreamConn[] }).conns;
    },
  };
}

export interface StreamSummary { established: number; survived: number; survivedPct: number; maxGapMs: number; errors: string[] }

/** Established connections, how many survived, and the largest gap among the survivors. */
export function summarize(conns: StreamConn[]): StreamSummary {
  const est = conns.filter((c) => c.established);
  const ok = est.filter((c) => c.survived);
  return {
    established: est.length,
    survived: ok.length,
    survivedPct: est.length ? Math.round((100 * ok.length) / est.length) : 0,
    maxGapMs: Math.max(0, ...ok.map((c) => c.maxGapMs)),
    errors: [...new Set(conns.filter((c) => c.error).map((c) => c.error!))],
  };
}
