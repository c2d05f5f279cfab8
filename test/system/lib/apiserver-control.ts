// Host side of the "apiserver unavailable" scenario: stops kube-apiserver (etcd keeps running, so
// every object survives) and starts it again with the very same command line, on the same port
// and certificates. The guest asks for it over a small HTTP server it reaches through guestfwd:
//
//   POST /apiserver/outage?seconds=N   kills kube-apiserver, answers once it is gone
//                                      ({stoppedAt}), starts it again N seconds later
//   GET  /apiserver                    {state: up|down|starting, outages, lastDownMs, error?}
//
// The harness (lab/apiserver/harness.ts) has no restart of its own; the command line is read
// back from /proc/<pid>/cmdline of the running kube-apiserver (setpriv execs into it, so the
// harness's pid is the apiserver's), and the replacement is started through the harness's own
// process helper, so it too dies with the test process.
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { request } from 'node:https';
import { join } from 'node:path';
import type { ControlPlane } from '../../../lab/apiserver/harness.ts';
import { startProc, waitReady, type Proc } from '../../../lab/apiserver/procs.ts';

export interface ApiserverControl {
  port: number;
  state(): { state: 'up' | 'down' | 'starting'; outages: number; lastDownMs?: number; error?: string };
  /** Stops kube-apiserver now; resolves when it is gone. The restart follows after `seconds`. */
  outage(seconds: number): Promise<{ stoppedAt: number; restarted: Promise<void> }>;
  /** Stops the replacement apiserver (if any) and the HTTP server. */
  close(): Promise<void>;
}

export interface ApiserverControlOptions {
  log?: (msg: string) => void;
}

function cmdline(pid: number): string[] {
  const parts = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  if (parts.at(-1) === '') parts.pop();
  return parts;
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

function readyz(url: string, cp: ControlPlane, tls: { cert: string; key: string }): Promise<boolean> {
  return new Promise((res) => {
    const req = request(`${url}/readyz`, { ca: readFileSync(cp.caCert), cert: tls.cert, key: tls.key, agent: false, timeout: 2000 }, (r) => {
      r.resume();
      r.on('end', () => res(r.statusCode === 200));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => res(false));
    req.end();
  });
}

/** The admin client cert and key, inline in the harness's admin kubeconfig. */
function adminTls(cp: ControlPlane): { cert: string; key: string } {
  const field = (k: string) => {
    const m = new RegExp(`${k}: (\\S+)`).exec(cp.kubeconfig.contents);
    if (!m) throw new Error(`admin kubeconfig has no ${k}`);
    return Buffer.from(m[1]!, 'base64').toString('utf8');
  };
  return { cert: field('client-certificate-data'), key: field('client-key-data') };
}

export async function startApiserverControl(cp: ControlPlane, opts: ApiserverControlOptions = {}): Promise<ApiserverControl> {
  const log = opts.log ?? ((m: string) => console.log(`# apiserver-control: ${m}`));
  const argv = cmdline(cp.pids.apiserver);
  if (!/kube-apiserver$/.test(argv[0] ?? '')) throw new Error(`pid ${cp.pids.apiserver} is not kube-apiserver: ${argv.join(' ')}`);
  const tls = adminTls(cp);
  let pid = cp.pids.apiserver;
  let replacement: Proc | undefined;
  let state: 'up' | 'down' | 'starting' = 'up';
  let outages = 0;
  let lastDownMs: number | undefined;
  let error: string | undefined;

  // SIGKILL: the outage starts at once (a graceful stop drains for up to a minute first), as a
  // crashed or fenced apiserver would; etcd holds all state, so nothing is lost.
  async function stopCurrent(): Promise<void> {
    if (replacement) {
      replacement.child.kill('SIGKILL');
      await replacement.exited;
      return;
    }
    process.kill(pid, 'SIGKILL');
    const deadline = Date.now() + 30_000;
    while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (alive(pid)) throw new Error(`kube-apiserver pid ${pid} still alive 30 s after SIGKILL`);
  }

  async function start(): Promise<void> {
    state = 'starting';
    replacement = startProc('kube-apiserver', argv[0]!, argv.slice(1), join(cp.dir, `kube-apiserver-${outages + 1}.log`));
    pid = replacement.child.pid ?? 0;
    await waitReady(replacement, () => readyz(cp.url, cp, tls), 90_000);
    state = 'up';
  }

  async function outage(seconds: number): Promise<{ stoppedAt: number; restarted: Promise<void> }> {
    if (state !== 'up') throw new Error(`apiserver is ${state}, not up`);
    const t0 = Date.now();
    await stopCurrent();
    state = 'down';
    outages += 1;
    const stoppedAt = Date.now();
    log(`kube-apiserver stopped in ${stoppedAt - t0} ms; restarting in ${seconds} s`);
    const restarted = new Promise<void>((res) => setTimeout(res, seconds * 1000))
      .then(start)
      .then(() => { lastDownMs = Date.now() - stoppedAt; log(`kube-apiserver ready again after ${lastDownMs} ms down`); },
        (err: unknown) => { error = String(err); log(`restart failed: ${error}`); });
    return { stoppedAt, restarted };
  }

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const reply = (code: number, body: unknown) => { res.writeHead(code, { 'content-type': 'application/json' }); res.end(JSON.stringify(body)); };
    if (req.method === 'GET' && url.pathname === '/apiserver') return reply(200, { state, outages, lastDownMs, error });
    if (req.method === 'POST' && url.pathname === '/apiserver/outage') {
      const seconds = Number(url.searchParams.get('seconds'));
      if (!(seconds > 0 && seconds <= 300)) return reply(400, { error: 'seconds: must be a number in (0, 300]' });
      outage(seconds).then(({ stoppedAt }) => reply(200, { stoppedAt }), (err: unknown) => reply(409, { error: String(err) }));
      return;
    }
    reply(404, { error: `no route ${req.method} ${url.pathname}` });
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    state: () => ({ state, outages, ...(lastDownMs !== undefined ? { lastDownMs } : {}), ...(error ? { error } : {}) }),
    outage,
    async close() {
      await new Promise((r) => server.close(r));
      server.closeAllConnections();
      await replacement?.stop();
    },
  };
}
