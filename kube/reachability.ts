// Whether the API server answers, as one process-wide signal. Every client loop backs off on its
// own schedule (exponential, capped at 30 s), so after an outage the informers would each find the
// server again up to one capped delay later, one after the other: a change written right after the
// server returns could wait that long in the controller's EndpointSlice informer and again in the
// agent's PlanSlice informer. Instead, the first request that gets an answer after a failure to
// reach the server wakes every loop sleeping in backoff for that reason, after a short jitter so
// they do not arrive in the same instant.
//
// Only "could not reach" failures count (no HTTP answer at all: connection refused or reset, a
// timeout), and only an answer below 500 other than 429 ends them. A 5xx or a 429 is an answer to
// that one request (a resource whose storage is broken, a server that asks for a pause): the loop
// that got it keeps its own backoff, so it is not retried each time some other request succeeds,
// and such answers wake no one (a server still starting answers 503 before it serves).
import { KubeApiError } from './errors.ts';

export class Reachability {
  #unreachable = false;
  readonly #waiters = new Set<() => void>();

  /** A request got no answer at all (connection refused or reset, timeout). */
  failed(): void {
    this.#unreachable = true;
  }

  /** A request got an answer (a status below 500 other than 429): wakes the waiters if the server had been unreachable. */
  answered(): void {
    if (!this.#unreachable) return;
    this.#unreachable = false;
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const wake of waiters) wake();
  }

  /** True between a failure to reach the server and the next answer. */
  get unreachable(): boolean {
    return this.#unreachable;
  }

  /**
   * Resolves when the server answers again (at once if it already did since it was marked
   * unreachable), or when signal aborts; never rejects.
   */
  whenAnswering(signal?: AbortSignal): Promise<void> {
    if (!this.#unreachable || signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        this.#waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      this.#waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }
}

/** A failure to reach the server: no HTTP response at all (KubeApiError status 0). */
export function isUnreachable(err: unknown): boolean {
  return err instanceof KubeApiError && err.status === 0;
}
