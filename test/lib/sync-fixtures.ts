// Shared fixtures for the dataplane sync tests: a manual clock, plan builders, a log capture.
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { serviceKey, type PlanRealServer, type PlanService } from '../../api/plan.ts';
import { sleepWith, type Clock, type Timer } from '../../kube/clock.ts';

/**
 * A clock that only moves when told to; advance() fires due timers in time order. advance() is
 * synchronous (the syncer tests step it between awaited syncs), unlike kube/clock.ts's.
 */
export class ManualClock implements Clock {
  #now: number;
  #wallOffset = 0;
  #timers = new Map<number, { at: number; fn: () => void }>();
  #next = 1;

  constructor(start = 1_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  wallNow(): number {
    return this.#now + this.#wallOffset;
  }

  /** Steps the wall clock only (an NTP step): monotonic time and timers are unaffected. */
  stepWall(ms: number): void {
    this.#wallOffset += ms;
  }

  setTimer(fn: () => void, ms: number): Timer {
    const id = this.#next++;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn });
    return { cancel: () => { this.#timers.delete(id); } };
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepWith(this, ms, signal);
  }

  /** Move time forward by ms, firing each timer that falls due at its own time. */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      const due = [...this.#timers.entries()].filter(([, t]) => t.at <= end).sort(([, a], [, b]) => a.at - b.at)[0];
      if (!due) break;
      this.#timers.delete(due[0]);
      this.#now = due[1].at;
      due[1].fn();
    }
    this.#now = end;
  }

  /** When the earliest pending timer is due, if any. */
  nextAt(): number | undefined {
    const ats = [...this.#timers.values()].map((t) => t.at);
    return ats.length ? Math.min(...ats) : undefined;
  }

  /**
   * Like advance(), but awaits `settle` after each timer, so timers set by async work that a timer
   * started (a sync scheduling the next one) fire within the same span.
   */
  async elapse(ms: number, settle: () => Promise<void>): Promise<void> {
    const end = this.#now + ms;
    for (let at = this.nextAt(); at !== undefined && at <= end; at = this.nextAt()) {
      this.advance(at - this.#now);
      await settle();
    }
    this.advance(end - this.#now);
  }
}

export function rs(address: string, port: number, over: Partial<PlanRealServer> = {}): PlanRealServer {
  return { address, port, weight: 1, state: 'Ready', ...over };
}

/** A NAT/TCP/wlc service on 203.0.113.10:80 directed by node-a, unless overridden. */
export function planService(over: Partial<PlanService> = {}): PlanService {
  const base: PlanService = {
    key: '',
    owner: { namespace: 'default', name: 'web', generation: 1 },
    portName: 'http',
    vip: '203.0.113.10',
    family: 4,
    protocol: 'TCP',
    port: 80,
    forwarding: 'NAT',
    scheduler: { name: 'wlc', flags: [] },
    prepareRealServers: false,
    realServers: [rs('10.0.0.1', 8080), rs('10.0.0.2', 8080)],
    directors: ['node-a'],
    ...over,
  };
  return { ...base, key: over.key ?? serviceKey(base.protocol, base.vip, base.port) };
}

export interface LogCapture {
  log: Logger;
  lines: Array<Record<string, unknown>>;
}

/** A pino logger at debug level whose JSON lines are kept for assertions. */
export function captureLog(): LogCapture {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: 'debug' }, sink), lines };
}
