// Polling with a deadline and timing lines, plus IPVS read-back through the independent ipvsadm.
import { listIpvs, ipvsStats, type IpvsService, type IpvsServiceStats } from '../../../../lab/guest/ipvsadm.ts';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Resolves with the probe's first truthy value; the error names what was awaited and the last observation. */
export async function until<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, o: { timeoutMs?: number; everyMs?: number; show?: () => unknown } = {}): Promise<T> {
  const end = Date.now() + (o.timeoutMs ?? 60_000);
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) { last = err; }
    if (Date.now() > end) {
      const seen = o.show ? ` ; last seen: ${JSON.stringify(await Promise.resolve(o.show()).catch((e: unknown) => String(e)))}` : '';
      throw new Error(`timed out after ${o.timeoutMs ?? 60_000} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}${seen}`);
    }
    await sleep(o.everyMs ?? 500);
  }
}

export async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  try { return await fn(); } finally { console.log(`# ${label}: ${Date.now() - t0} ms`); }
}

/** The root namespace's IPVS table (the node's), from `ipvsadm -Ln`. */
export const ipvs = (): IpvsService[] => listIpvs();

export function service(table: IpvsService[], vip: string, port: number): IpvsService | undefined {
  return table.find((s) => s.proto === 'TCP' && s.address === `${vip}:${port}`);
}

/** "address weight forward" per destination, sorted: compact and comparable. */
export function dests(table: IpvsService[], vip: string, port: number): string[] {
  return (service(table, vip, port)?.dests ?? []).map((d) => `${d.address} ${d.forward} ${d.weight}`).sort();
}

/**
 * Counters after the kernel's estimator has folded in the per-CPU counters (every 2 s on 6.1),
 * so traffic just sent is included.
 */
export async function settledStats(): Promise<IpvsServiceStats[]> {
  await sleep(2500);
  return ipvsStats();
}

export function statsOf(stats: IpvsServiceStats[], vip: string, port: number): IpvsServiceStats {
  const s = stats.find((x) => x.proto === 'TCP' && x.address === `${vip}:${port}`);
  if (!s) throw new Error(`no IPVS service ${vip}:${port} in ipvsadm --stats`);
  return s;
}
