// Time as a dependency: the controller and the agent read the clock and wait only through this
// interface, so tests drive leases, drains, backoff and requeues with a manual clock instead of
// real sleeps. Two timelines: now() is monotonic and measures every duration (lease expiry, renew
// deadline, drain deadlines, backoff, rate limits); wallNow() is the wall clock and is read only
// where a timestamp is written to the API. The wall clock steps (NTP, an admin's `date -s`);
// CLOCK_MONOTONIC does not, so a step can neither end every drain at once nor cost leadership.

export interface Timer {
  cancel(): void;
}

export interface Clock {
  /**
   * Monotonic milliseconds, for durations only: never steps with the wall clock. (The real clock
   * counts from the epoch as it was at process start, so values look like times; never format one.)
   */
  now(): number;
  /** Milliseconds since the epoch by the wall clock: only for timestamps written to the API. */
  wallNow(): number;
  /** Calls fn once after ms (0 or less: on the next turn). */
  setTimer(fn: () => void, ms: number): Timer;
  /** Resolves after ms, or as soon as signal aborts (never rejects). */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/**
 * performance.now() is libuv's uv_hrtime(), i.e. CLOCK_MONOTONIC: it does not jump when the wall
 * clock is set (it is slewed by NTP's frequency adjustment only, and stops while suspended).
 */
export function monotonicNow(): number {
  return performance.timeOrigin + performance.now();
}

export const realClock: Clock = {
  now: monotonicNow,
  wallNow: () => Date.now(),
  setTimer(fn, ms) {
    const t = setTimeout(fn, Math.max(0, ms));
    return { cancel: () => clearTimeout(t) };
  },
  sleep: (ms, signal) => sleepWith(realClock, ms, signal),
};

export function sleepWith(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = () => { timer.cancel(); resolve(); };
    const timer = clock.setTimer(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A clock that only moves when told to; timers fire in due order during advance(). */
export class ManualClock implements Clock {
  #now: number;
  #wallOffset = 0;
  #seq = 0;
  #timers = new Map<number, { due: number; fn: () => void }>();

  constructor(start = Date.parse('2025-01-01T00:00:00Z')) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  wallNow(): number {
    return this.#now + this.#wallOffset;
  }

  /** Steps the wall clock only (NTP step, `date -s`): monotonic time and timers are unaffected. */
  stepWall(ms: number): void {
    this.#wallOffset += ms;
  }

  setTimer(fn: () => void, ms: number): Timer {
    const id = ++this.#seq;
    this.#timers.set(id, { due: this.#now + Math.max(0, ms), fn });
    return { cancel: () => { this.#timers.delete(id); } };
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepWith(this, ms, signal);
  }

  /** Pending timers, for assertions on what is scheduled. */
  pending(): number[] {
    return [...this.#timers.values()].map((t) => t.due - this.#now).sort((a, b) => a - b);
  }

  /** The earliest pending timer due by `end`, if any. */
  #due(end: number): [number, { due: number; fn: () => void }] | undefined {
    let next: [number, { due: number; fn: () => void }] | undefined;
    for (const entry of this.#timers) if (entry[1].due <= end && (!next || entry[1].due < next[1].due)) next = entry;
    return next;
  }

  #fire(next: [number, { due: number; fn: () => void }]): void {
    this.#timers.delete(next[0]);
    this.#now = Math.max(this.#now, next[1].due);
    next[1].fn();
  }

  /** Moves time forward by ms, firing due timers in order and letting promises settle between. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    for (;;) {
      await settle();
      const next = this.#due(end);
      if (!next) break;
      this.#fire(next);
    }
    this.#now = end;
    await settle();
  }

  /** advance() without settling: synchronous, for tests that step between awaited calls. */
  tick(ms: number): void {
    const end = this.#now + ms;
    for (let next = this.#due(end); next; next = this.#due(end)) this.#fire(next);
    this.#now = end;
  }

  /** When the earliest pending timer is due, if any. */
  nextAt(): number | undefined {
    return this.#due(Infinity)?.[1].due;
  }

  /**
   * Like tick(), but awaits `settle` after each timer, so timers set by async work that a timer
   * started (a sync scheduling the next one) fire within the same span.
   */
  async elapse(ms: number, settle: () => Promise<void>): Promise<void> {
    const end = this.#now + ms;
    for (let at = this.nextAt(); at !== undefined && at <= end; at = this.nextAt()) {
      this.tick(at - this.#now);
      await settle();
    }
    this.tick(end - this.#now);
  }
}

/** Lets queued microtasks and immediate callbacks run. */
export async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
}
