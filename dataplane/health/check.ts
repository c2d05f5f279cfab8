// The checkers: one probe of one real server, from this process's network namespace (the
// director's: the agent runs there). A checker only reports pass or fail with a reason; what a
// failure means for the real server's weight is the policy's (policy.ts), as in keepalived.
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';

export interface Probe {
  type: 'tcp' | 'http' | 'https';
  address: string;
  port: number;
  /** http/https */
  path?: string;
  host?: string;
  /** Passing statuses; absent: 200..399. */
  statuses?: readonly number[];
  timeoutMs: number;
}

export interface CheckResult {
  ok: boolean;
  /** Why it failed ("connection refused", "status 500", "timed out after 1000 ms"); "ok" when it passed. */
  message: string;
}

export type Checker = (p: Probe) => Promise<CheckResult>;

const pass: CheckResult = { ok: true, message: 'ok' };

function failure(err: unknown): CheckResult {
  const code = (err as { code?: string } | null)?.code;
  const text: Record<string, string> = { ECONNREFUSED: 'connection refused', EHOSTUNREACH: 'host unreachable', ENETUNREACH: 'network unreachable', ECONNRESET: 'connection reset' };
  return { ok: false, message: (code && text[code]) ?? (err instanceof Error ? err.message : String(err)) };
}

/**
 * TCP_CHECK: the handshake completes. The connection is closed at once, unread: a server that
 * sent a greeting gets a reset (as HAProxy's checks do), which leaves no TIME_WAIT behind on the
 * director at thousands of checks a second. A server must survive a peer's reset (the system
 * tier's own test workload did not, until it handled ECONNRESET).
 */
export function tcpCheck(p: Probe): Promise<CheckResult> {
  return new Promise((resolve) => {
    const sock = connect({ host: p.address, port: p.port });
    const timer = setTimeout(() => { sock.destroy(); resolve({ ok: false, message: `timed out after ${p.timeoutMs} ms` }); }, p.timeoutMs);
    sock.once('connect', () => { clearTimeout(timer); sock.destroy(); resolve(pass); });
    sock.once('error', (err) => { clearTimeout(timer); sock.destroy(); resolve(failure(err)); });
  });
}

/** HTTP_GET / SSL_GET: GET path answers with an expected status within the timeout (certificate not verified). */
export function httpCheck(p: Probe): Promise<CheckResult> {
  return new Promise((resolve) => {
    const host = p.address.includes(':') ? `[${p.address}]` : p.address;
    const send = p.type === 'https' ? httpsRequest : httpRequest;
    let done = false;
    const finish = (r: CheckResult) => { if (!done) { done = true; clearTimeout(timer); req.destroy(); resolve(r); } };
    const req = send({
      host: p.address, port: p.port, path: p.path ?? '/', method: 'GET', agent: false,
      headers: { host: p.host ?? `${host}:${p.port}`, 'user-agent': 'lvs-agent-healthcheck', connection: 'close' },
      ...(p.type === 'https' ? { rejectUnauthorized: false, servername: p.host && !/^[\d.:[\]]+$/.test(p.host) ? p.host : '' } : {}),
    }, (res) => {
      const status = res.statusCode ?? 0;
      res.resume();
      const ok = p.statuses ? p.statuses.includes(status) : status >= 200 && status <= 399;
      finish(ok ? pass : { ok: false, message: `status ${status}` });
    });
    const timer = setTimeout(() => finish({ ok: false, message: `timed out after ${p.timeoutMs} ms` }), p.timeoutMs);
    req.once('error', (err) => finish(failure(err)));
    req.end();
  });
}

export const realChecker: Checker = (p) => (p.type === 'tcp' ? tcpCheck(p) : httpCheck(p));
