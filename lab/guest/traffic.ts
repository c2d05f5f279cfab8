// Guest-side traffic helpers: identity servers in real-server namespaces and a counting client in
// the client namespace. Both are small Node processes started with `ip netns exec <ns> node ...`.
//
//   const rs1 = await startServer('rs1', { id: 'rs1', tcp: [80] });
//   const res = await runClient('client', { host: vip, port: 80, count: 60 });  // res.byId = { rs1: 20, rs2: 40 }
//   await stopServers();                                                          // kills every server started
//
// Every server is also SIGKILLed when the process exits, so none outlives the guest suite.
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { assertInVm } from './netns.ts';

const here = dirname(fileURLToPath(import.meta.url));
const NODE = process.execPath;

export interface ServerOptions {
  id: string; // the identity every reply carries, e.g. 'rs1'
  tcp?: number[];
  udp?: number[];
  bind?: string[]; // addresses to listen on (default 0.0.0.0); see echo-server.ts for UDP under DR/TUN
}

export interface ServerHandle { ns: string; id: string; process: ChildProcess; stop(): Promise<void> }

export interface Reply { id: string; proto: 'tcp' | 'udp'; peer: string; local: string }

export interface ClientOptions {
  host: string;
  port: number;
  proto?: 'tcp' | 'udp'; // default tcp
  count?: number; // default 1
  concurrency?: number; // default 1 (sequential)
  timeoutMs?: number; // per connection/datagram, default 5000
  bind?: string; // source address
}

export interface ClientResult { byId: Record<string, number>; errors: number; firstError?: string; replies: Reply[] }

const servers = new Set<ServerHandle>();
process.on('exit', () => { for (const s of servers) s.process.kill('SIGKILL'); });

/** Starts an identity server in `ns`; resolves once it listens on every port. */
export function startServer(ns: string, opts: ServerOptions): Promise<ServerHandle> {
  assertInVm();
  const child = spawn('ip', ['netns', 'exec', ns, NODE, join(here, 'echo-server.ts'), JSON.stringify(opts)],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  const handle: ServerHandle = {
    ns, id: opts.id, process: child,
    stop: () => new Promise((resolve) => {
      servers.delete(handle);
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('close', () => resolve());
      child.kill('SIGKILL');
    }),
  };
  servers.add(handle);
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => { void handle.stop(); reject(new Error(`server ${opts.id} in ${ns}: not ready after 30 s: ${err}`)); }, 30_000);
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('READY')) { clearTimeout(timer); resolve(handle); }
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      servers.delete(handle);
      const how = signal ? `was KILLED by ${signal} (Node crashed in the guest)` : code !== null && code >= 128 ? `exited ${code} (a signal: Node crashed in the guest)` : `exited ${code}`;
      reject(new Error(`server ${opts.id} in ${ns} ${how} before READY: ${err.trim()}`));
    });
  });
}

export async function stopServers(): Promise<void> {
  await Promise.all([...servers].map((s) => s.stop()));
}

/** Runs the counting client in `ns` and returns the tally of answers by server identity. */
export function runClient(ns: string, opts: ClientOptions): Promise<ClientResult> {
  assertInVm();
  const cfg = { proto: 'tcp', count: 1, concurrency: 1, timeoutMs: 5000, ...opts };
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, NODE, join(here, 'client.ts'), JSON.stringify(cfg)],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`client in ${ns} exited ${code}: ${err.trim()}`));
      try { resolve(JSON.parse(out) as ClientResult); } catch { reject(new Error(`client in ${ns}: bad output ${JSON.stringify(out)}`)); }
    });
  });
}
