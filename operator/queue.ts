// Work queue of VirtualServer keys (namespace/name), with client-go's semantics:
//  - a key is queued at most once (dirty set), however many events mark it;
//  - a key is never handed to two workers at once: marked while processing, it is queued again
//    when the worker calls done(), so the newest state is always reconciled after the event;
//  - retries are rate-limited per key with exponential backoff and jitter, reset by forget().
// Events only mark keys; all reading of state happens in reconcile, from the caches.
import { DEFAULT_BACKOFF, retryDelay, type BackoffPolicy } from '../kube/backoff.ts';
import type { Clock, Timer } from '../kube/clock.ts';

export type ReconcileResult =
  | { kind: 'done' }
  | { kind: 'requeue'; after: number }
  | { kind: 'error'; err: unknown };

export interface WorkQueueOptions {
  clock: Clock;
  backoff?: BackoffPolicy;
  random?: () => number;
}

export class WorkQueue {
  readonly #o: WorkQueueOptions;
  #ready: string[] = [];
  readonly #dirty = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #delayed = new Map<string, { due: number; timer: Timer }>();
  readonly #failures = new Map<string, number>();
  /** When each dirty key was first marked since it was last handed out (clock.now()). */
  readonly #since = new Map<string, number>();
  /** How long each key in flight waited between its first mark and being handed out (ms). */
  readonly #waited = new Map<string, number>();
  #getters: Array<(key: string | undefined) => void> = [];
  #shutdown = false;

  constructor(opts: WorkQueueOptions) {
    this.#o = opts;
  }

  add(key: string): void {
    if (this.#shutdown || this.#dirty.has(key)) return;
    this.#dirty.add(key);
    if (!this.#since.has(key)) this.#since.set(key, this.#o.clock.now());
    if (this.#processing.has(key)) return;
    const getter = this.#getters.shift();
    if (getter) {
      this.#handOut(key);
      getter(key);
    } else {
      this.#ready.push(key);
    }
  }

  /** Adds key after ms; an earlier pending delay for the same key wins. */
  addAfter(key: string, ms: number): void {
    if (this.#shutdown) return;
    if (ms <= 0) return this.add(key);
    const due = this.#o.clock.now() + ms;
    const cur = this.#delayed.get(key);
    if (cur && cur.due <= due) return;
    cur?.timer.cancel();
    const timer = this.#o.clock.setTimer(() => { this.#delayed.delete(key); this.add(key); }, ms);
    this.#delayed.set(key, { due, timer });
  }

  /**
   * Schedules a retry of key after its per-key backoff, or after the server's Retry-After when
   * err carries one (429 from priority and fairness); returns the delay chosen.
   */
  addRateLimited(key: string, err?: unknown): number {
    const n = this.#failures.get(key) ?? 0;
    this.#failures.set(key, n + 1);
    const delay = retryDelay(err, n, this.#o.backoff ?? DEFAULT_BACKOFF, this.#o.random);
    this.addAfter(key, delay);
    return delay;
  }

  /** Clears key's failure count (after a success). */
  forget(key: string): void {
    this.#failures.delete(key);
  }

  failures(key: string): number {
    return this.#failures.get(key) ?? 0;
  }

  /**
   * Next key to work on; undefined once the queue is shut down or signal aborts. Call done(key)
   * (or finish) afterwards.
   */
  get(signal?: AbortSignal): Promise<string | undefined> {
    const key = this.#ready.shift();
    if (key !== undefined) {
      this.#handOut(key);
      return Promise.resolve(key);
    }
    if (this.#shutdown || signal?.aborted) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const getter = (k: string | undefined) => { signal?.removeEventListener('abort', onAbort); resolve(k); };
      const onAbort = () => {
        const i = this.#getters.indexOf(getter);
        if (i >= 0) this.#getters.splice(i, 1);
        resolve(undefined);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#getters.push(getter);
    });
  }

  #handOut(key: string): void {
    this.#dirty.delete(key);
    this.#processing.add(key);
    const since = this.#since.get(key);
    this.#since.delete(key);
    this.#waited.set(key, since === undefined ? 0 : this.#o.clock.now() - since);
  }

  /** True when key is in flight and was marked again meanwhile: a newer state waits for it. */
  markedAgain(key: string): boolean {
    return this.#processing.has(key) && this.#dirty.has(key);
  }

  /**
   * For a key in flight: ms between its first mark (an event, a retry's or requeue's due time)
   * and being handed out, i.e. the time it waited for a worker or for its own previous run.
   */
  waited(key: string): number | undefined {
    return this.#waited.get(key);
  }

  done(key: string): void {
    this.#processing.delete(key);
    this.#waited.delete(key);
    if (this.#dirty.has(key)) {
      this.#dirty.delete(key);
      this.add(key);
    }
  }

  /** Applies a reconcile result to key: forget on success, delayed or rate-limited re-add otherwise. */
  finish(key: string, result: ReconcileResult): void {
    if (result.kind === 'error') this.addRateLimited(key, result.err);
    else this.forget(key);
    if (result.kind === 'requeue') this.addAfter(key, result.after);
    this.done(key);
  }

  /** Keys waiting to be handed out (the queue-depth metric). */
  get length(): number {
    return this.#ready.length;
  }

  /** Keys queued, in flight, or waiting on a delay. */
  get pending(): number {
    return this.#ready.length + this.#processing.size + this.#delayed.size;
  }

  isIdle(): boolean {
    return this.#ready.length === 0 && this.#processing.size === 0;
  }

  /** Drops everything queued or delayed (leadership lost: the next leader starts from scratch). */
  clear(): void {
    this.#ready = [];
    this.#dirty.clear();
    this.#since.clear();
    for (const d of this.#delayed.values()) d.timer.cancel();
    this.#delayed.clear();
    this.#failures.clear();
  }

  shutDown(): void {
    this.#shutdown = true;
    this.clear();
    for (const g of this.#getters.splice(0)) g(undefined);
  }
}
