// Exponential backoff with jitter, shared by the informers (list/watch retries), the status writer
// and the work queue's per-item retries. Jitter spreads replicas and items apart so that a
// recovering apiserver is not hit by every client at the same instant.

export interface BackoffPolicy {
  /** Delay of the first retry before jitter. */
  baseMs: number;
  /** Upper bound of the delay before jitter. */
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 500, maxMs: 30_000 };

/** Upper bound on a server-requested Retry-After, so a bogus header cannot park us for hours. */
export const MAX_RETRY_AFTER_MS = 5 * 60_000;

/**
 * Delay before retry number `attempt` (0-based): min(max, base * 2^attempt), jittered uniformly
 * into [d/2, d] ("equal jitter": never zero, never above the cap).
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const d = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(d / 2 + random() * (d / 2));
}

/**
 * Delay before retrying after err. A server's Retry-After (429 from API priority and fairness,
 * or a 503) wins over our own schedule: it knows when it will have room again.
 */
export function retryDelay(
  err: unknown, attempt: number, policy: BackoffPolicy, random: () => number = Math.random,
): number {
  const after = (err as { retryAfterSeconds?: unknown } | undefined)?.retryAfterSeconds;
  if (typeof after === 'number' && Number.isFinite(after) && after >= 0) {
    return Math.min(MAX_RETRY_AFTER_MS, after * 1000);
  }
  return backoffDelay(attempt, policy, random);
}
