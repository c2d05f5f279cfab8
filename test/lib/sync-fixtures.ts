// Shared fixtures for the dataplane sync tests: a manual clock, plan builders, a log capture.
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { serviceKey, type PlanRealServer, type PlanService } from '../../api/plan.ts';

/** The manual clock (kube/clock.ts): tick() steps synchronously, elapse() lets async work run between timers. */
export { ManualClock } from '../../kube/clock.ts';

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
