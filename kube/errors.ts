// Errors from the Kubernetes API as data the controller can decide on: the HTTP status, the
// Status reason, and the server's Retry-After. Everything the adapter throws is a KubeApiError.

export class KubeApiError extends Error {
  /** HTTP status; 0 when the request never got a response (connection refused, reset, timeout). */
  readonly status: number;
  /** metav1.Status reason (Conflict, NotFound, Expired, Gone, TooManyRequests, ...). */
  readonly reason: string | undefined;
  /** Seconds from a Retry-After header or Status details.retryAfterSeconds. */
  readonly retryAfterSeconds: number | undefined;
  /** What we were doing: "list virtualservers", "patch status default/web", ... */
  readonly op: string;

  constructor(op: string, status: number, message: string, opts: { reason?: string; retryAfterSeconds?: number; cause?: unknown } = {}) {
    super(`${op}: ${status ? `HTTP ${status}` : 'no response'}${opts.reason ? ` ${opts.reason}` : ''}: ${message}`, { cause: opts.cause });
    this.name = 'KubeApiError';
    this.op = op;
    this.status = status;
    this.reason = opts.reason;
    this.retryAfterSeconds = opts.retryAfterSeconds;
  }
}

function statusOf(err: unknown): number | undefined {
  return err instanceof KubeApiError ? err.status : undefined;
}

/** 410 Gone / reason Expired: our resourceVersion or continue token is too old; relist. */
export function isGone(err: unknown): boolean {
  return statusOf(err) === 410;
}

export function isConflict(err: unknown): boolean {
  return statusOf(err) === 409;
}

export function isNotFound(err: unknown): boolean {
  return statusOf(err) === 404;
}

/**
 * Worth retrying the same request later: no response at all, 429 (priority and fairness),
 * 5xx, and 408/504 timeouts. 4xx other than those is our bug or a permission problem; retrying
 * it unchanged would hammer the server for nothing, but informers still retry slowly (RBAC may be
 * granted later), so this only tunes logging and metrics.
 */
export function isTransient(err: unknown): boolean {
  const s = statusOf(err);
  if (s === undefined) return true;
  return s === 0 || s === 408 || s === 429 || s >= 500;
}

/** Parses Retry-After: delta-seconds or an HTTP date. */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now) / 1000));
}
