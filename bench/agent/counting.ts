// Counting without touching dataplane/: a proxy around any IpvsKernel counts calls per method, and
// a netlink tap (IpvsNetlinkOptions.tap, which sees every datagram our client sends and receives)
// counts the real messages on the wire: one send per request, dumps included.
import type { IpvsKernel } from '../../dataplane/ipvs/types.ts';

export interface WireCounts {
  /** Netlink requests sent (one datagram each). */
  sent: number;
  sentBytes: number;
  /** Datagrams received (acks, replies, dump parts; one datagram may carry several messages). */
  received: number;
  receivedBytes: number;
}

export interface Counters {
  calls: Record<string, number>;
  wire: WireCounts;
}

export function newCounters(): Counters {
  return { calls: {}, wire: { sent: 0, sentBytes: 0, received: 0, receivedBytes: 0 } };
}

/** Snapshot minus earlier snapshot, for one measured phase. */
export function since(now: Counters, before: Counters): Counters {
  const calls: Record<string, number> = {};
  for (const [k, v] of Object.entries(now.calls)) {
    const d = v - (before.calls[k] ?? 0);
    if (d) calls[k] = d;
  }
  const w = now.wire, b = before.wire;
  return { calls, wire: { sent: w.sent - b.sent, sentBytes: w.sentBytes - b.sentBytes, received: w.received - b.received, receivedBytes: w.receivedBytes - b.receivedBytes } };
}

export function snapshot(c: Counters): Counters {
  return { calls: { ...c.calls }, wire: { ...c.wire } };
}

/** A tap for IpvsNetlink.open({ tap }). */
export function wireTap(c: Counters): (direction: 'send' | 'recv', bytes: Buffer) => void {
  return (direction, bytes) => {
    if (direction === 'send') { c.wire.sent++; c.wire.sentBytes += bytes.length; }
    else { c.wire.received++; c.wire.receivedBytes += bytes.length; }
  };
}

/** The same kernel, with every method call counted by name. */
export function countingKernel(inner: IpvsKernel, c: Counters): IpvsKernel {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function' || typeof prop !== 'string') return v;
      return (...args: unknown[]) => {
        c.calls[prop] = (c.calls[prop] ?? 0) + 1;
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}
