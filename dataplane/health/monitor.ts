// Runs the checks: every target on its own timer, first check soon after it appears (at a random
// point of the first quarter second, or of its interval if shorter), the second anywhere in
// [0.5, 1.5) intervals later (spreading the phases of targets that appeared together), then start
// to start every 80-100% of the interval at random, so 10,000 targets do not fire in bursts and a
// real server that stops answering is down within failureThreshold × interval (plus one timeout
// when its checks time out) whatever the jitter; at most maxInFlight probes at once (the rest
// wait their turn, oldest first). Results go through the policy (policy.ts); a flip calls
// onChange so the agent syncs, and onTransition for logs, Events and metrics.
//
// Seeding: a target whose destination the kernel already had at weight > 0 when the agent started
// (seed()) starts up, so restarting the agent does not take every checked real server out of
// rotation until it passes again. Seeds apply to targets created before endSeed().
import type { Logger } from 'pino';
import type { Clock, Timer } from '../../kube/clock.ts';
import { realChecker, type Checker } from './check.ts';
import { initialHealth, observe, type Health } from './policy.ts';
import type { Target } from './targets.ts';

export interface MonitorOptions {
  clock: Clock;
  log: Logger;
  /** A real server came up or went down: the plan's weights changed. */
  onChange: () => void;
  onTransition?: (t: Target, h: Health) => void;
  /** A result changed what a target's health says (up, or the message): records may refresh. */
  onUpdate?: () => void;
  checker?: Checker;
  random?: () => number;
  /** Most probes running at once. Default 256. */
  maxInFlight?: number;
}

interface Entry {
  target: Target;
  health: Health;
  timer?: Timer;
  queued: boolean;
  running: boolean;
  removed: boolean;
  /** The phase-spreading second check was scheduled. */
  spread?: boolean;
}

export class HealthMonitor {
  readonly #o: MonitorOptions;
  readonly #entries = new Map<string, Entry>();
  readonly #queue: Entry[] = [];
  #inFlight = 0;
  #seed: Set<string> | undefined;
  #closed = false;
  /** Probes completed and failed since start (for metrics). */
  readonly counts = { checks: 0, failures: 0 };

  constructor(o: MonitorOptions) {
    this.#o = o;
  }

  /** Destinations ("serviceKey|address:port") the kernel held at weight > 0 when the agent started. */
  seed(useKeys: Iterable<string>): void {
    this.#seed = new Set(useKeys);
  }

  endSeed(): void {
    this.#seed = undefined;
  }

  health(id: string): Health | undefined {
    return this.#entries.get(id)?.health;
  }

  /** Replaces the set of targets; kept ones keep their health, new ones start down (or seeded up). */
  setTargets(next: ReadonlyMap<string, Target>): void {
    for (const [id, e] of this.#entries) {
      if (next.has(id)) continue;
      e.removed = true;
      e.timer?.cancel();
      this.#entries.delete(id);
    }
    const random = this.#o.random ?? Math.random;
    for (const [id, t] of next) {
      const e = this.#entries.get(id);
      if (e) { e.target = t; continue; }
      const seeded = t.uses.some((u) => this.#seed?.has(u));
      const entry: Entry = { target: t, health: initialHealth(this.#o.clock.wallNow(), seeded), queued: false, running: false, removed: false };
      this.#entries.set(id, entry);
      this.#arm(entry, random() * Math.min(250, t.intervalMs));
    }
  }

  /** Every target with its health, sorted by id. */
  all(): Array<{ target: Target; health: Health }> {
    return [...this.#entries.values()].map((e) => ({ target: e.target, health: e.health })).sort((a, b) => (a.target.id < b.target.id ? -1 : a.target.id > b.target.id ? 1 : 0));
  }

  /** Resolves once every current target has completed a check (targets removed meanwhile do not count). */
  firstRound(): Promise<void> {
    return new Promise((resolve) => {
      const poll = () => {
        if (this.#closed || [...this.#entries.values()].every((e) => e.health.checked)) resolve();
        else this.#o.clock.setTimer(poll, 20);
      };
      poll();
    });
  }

  close(): void {
    this.#closed = true;
    for (const e of this.#entries.values()) e.timer?.cancel();
    this.#queue.length = 0;
  }

  #arm(e: Entry, ms: number): void {
    if (this.#closed || e.removed) return;
    e.timer = this.#o.clock.setTimer(() => { e.timer = undefined; this.#due(e); }, Math.max(0, ms));
  }

  #due(e: Entry): void {
    if (this.#closed || e.removed || e.running || e.queued) return;
    if (this.#inFlight >= (this.#o.maxInFlight ?? 256)) { e.queued = true; this.#queue.push(e); return; }
    void this.#probe(e);
  }

  async #probe(e: Entry): Promise<void> {
    this.#inFlight++;
    e.running = true;
    const started = this.#o.clock.now();
    const checker = this.#o.checker ?? realChecker;
    let r;
    try {
      r = await checker(e.target.probe);
    } catch (err) {
      r = { ok: false, message: err instanceof Error ? err.message : String(err) };
    }
    this.#inFlight--;
    e.running = false;
    this.counts.checks++;
    if (!r.ok) this.counts.failures++;
    if (!e.removed && !this.#closed) this.#record(e, r.ok, r.message, started);
    this.#next();
  }

  #record(e: Entry, ok: boolean, message: string, started: number): void {
    const { health, changed } = observe(e.health, ok, message, e.target.thresholds, this.#o.clock.wallNow());
    const updated = changed || health.message !== e.health.message;
    e.health = health;
    const random = this.#o.random ?? Math.random;
    // The first checks of a new plan come together (soon after it appears); the next one lands at
    // a uniformly random point of a whole interval around the due time, so phases spread at once.
    // Later ones never later than one interval after the last one started: the jitter must not
    // stretch failureThreshold checks past failureThreshold × interval (nor a timeout add to each).
    const spread = e.health.passes + e.health.failures === 1 && !e.spread ? 0.5 + random() : 0.8 + 0.2 * random();
    e.spread = true;
    this.#arm(e, started + e.target.intervalMs * spread - this.#o.clock.now());
    if (updated) this.#o.onUpdate?.();
    if (!changed) return;
    const p = e.target.probe;
    this.#o.log.info({ op: 'health', target: e.target.id, up: health.up, message: health.message }, `real server ${p.address}:${p.port} ${health.up ? 'up' : 'down'}: ${health.message}`);
    this.#o.onTransition?.(e.target, health);
    this.#o.onChange();
  }

  #next(): void {
    while (this.#queue.length > 0 && this.#inFlight < (this.#o.maxInFlight ?? 256)) {
      const e = this.#queue.shift()!;
      e.queued = false;
      if (!e.removed && !this.#closed) void this.#probe(e);
    }
  }
}
