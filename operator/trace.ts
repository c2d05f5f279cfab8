// Where one reconcile's time went, by step (client-go's utiltrace shape): the worker logs it
// when the reconcile was slow, so a late PlanSlice can be told apart as time waiting in the queue
// (other keys, or this key's previous run), resolving, writing slices, writing status or
// recording Events. No I/O here.

export class StepTrace {
  readonly #now: () => number;
  readonly #start: number;
  #last: number;
  /** Milliseconds per step name, summed when a step repeats (a conflict retry runs them again). */
  readonly steps: Record<string, number> = {};

  constructor(now: () => number) {
    this.#now = now;
    this.#start = this.#last = now();
  }

  /** Ends the step called `name`: the time since the previous step (or the start) is charged to it. */
  step(name: string): void {
    const t = this.#now();
    this.steps[name] = (this.steps[name] ?? 0) + Math.round(t - this.#last);
    this.#last = t;
  }

  get totalMs(): number {
    return Math.round(this.#now() - this.#start);
  }
}
