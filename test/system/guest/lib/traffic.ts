// Guest-side processes that carry real traffic: pod workloads (pod-server.ts, one per pod
// namespace) and one long-lived client (client-agent.ts) in the client namespace, driven over
// stdin/stdout. Every process started here is SIGKILLed when the suite exits.
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
/** A Node start under TCG takes 1-3 s on a quiet machine; far longer when the host is loaded. */
const READY_MS = 180_000;
const live = new Set<ChildProcess>();
process.on('exit', () => { for (const c of live) c.kill('SIGKILL'); });

/** Kills every pod workload and client started here (their pipes would keep the suite alive). */
export function stopAllTraffic(): void {
  for (const c of live) c.kill('SIGKILL');
}

function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.on('exit', () => live.delete(child));
  return child;
}

export interface PodServer { ns: string; id: string; stop(): void }

/** Starts the workload of a pod in its namespace; resolves once it listens. */
export function startPodServer(ns: string, id: string, tcp: number[]): Promise<PodServer> {
  const child = track(spawn('ip', ['netns', 'exec', ns, process.execPath, join(here, 'pod-server.ts'), JSON.stringify({ id, tcp })],
    { stdio: ['ignore', 'pipe', 'pipe'] }));
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`pod server ${id}: not ready after ${READY_MS / 1000} s: ${err}`)); }, READY_MS);
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('READY')) { clearTimeout(timer); resolve({ ns, id, stop: () => child.kill('SIGKILL') }); }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`pod server ${id} exited ${code}: ${err.trim()}`)); });
  });
}

export interface BurstResult { byId: Record<string, number>; errors: number; firstError?: string }
export interface Identity { id: string; peer: string; local: string }

export interface Client {
  /** `count` short TCP connections to host:port, `concurrency` at a time; tally by pod */
  burst(host: string, port: number, count: number, opts?: { concurrency?: number; timeoutMs?: number }): Promise<BurstResult>;
  /** opens a connection named `conn` and keeps it; resolves with the pod's identity line */
  open(conn: string, host: string, port: number): Promise<Identity>;
  /** one round trip on an open connection */
  send(conn: string, data: string): Promise<{ id: string; echo: string }>;
  close(conn: string): Promise<void>;
  stop(): void;
}

export async function startClient(ns: string): Promise<Client> {
  const child = track(spawn('ip', ['netns', 'exec', ns, process.execPath, join(here, 'client-agent.ts')], { stdio: ['pipe', 'pipe', 'pipe'] }));
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const pending = new Map<number, (r: Record<string, unknown>) => void>();
  let ready!: () => void;
  const isReady = new Promise<void>((r) => { ready = r; });
  createInterface(child.stdout!).on('line', (line) => {
    const r = JSON.parse(line) as Record<string, unknown>;
    if (r.ready) return ready();
    const cb = pending.get(r.seq as number);
    pending.delete(r.seq as number);
    cb?.(r);
  });
  child.once('exit', (code) => {
    for (const cb of pending.values()) cb({ error: `client exited ${code}: ${err.trim()}` });
    pending.clear();
  });
  let seq = 0;
  const call = (cmd: Record<string, unknown>): Promise<Record<string, unknown>> => new Promise((resolve, reject) => {
    seq += 1;
    pending.set(seq, ({ seq: _, ...r }) => (typeof r.error === 'string' ? reject(new Error(`client ${cmd.op}: ${r.error}`)) : resolve(r)));
    child.stdin!.write(JSON.stringify({ seq, ...cmd }) + '\n');
  });
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([isReady, new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`client not ready after ${READY_MS / 1000} s: ${err}`)), READY_MS); })]);
  clearTimeout(timer);
  return {
    burst: async (host, port, count, o = {}) => (await call({ op: 'burst', host, port, count, concurrency: o.concurrency ?? 4, timeoutMs: o.timeoutMs ?? 3000 })) as unknown as BurstResult,
    open: async (conn, host, port) => (await call({ op: 'open', conn, host, port, timeoutMs: 5000 })) as unknown as Identity,
    send: async (conn, data) => (await call({ op: 'send', conn, data, timeoutMs: 5000 })) as unknown as { id: string; echo: string },
    close: async (conn) => { await call({ op: 'close', conn }); },
    stop: () => { child.stdin!.end(); },
  };
}
