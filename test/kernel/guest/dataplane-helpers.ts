// Guest-side helpers for the director and real-server kernel suites (run only inside the test VM),
// on top of the shared guest lib (topology, traffic, ipvsadm): sysctl snapshots, ARP probes,
// settled IPVS counters, timings.
import { ipvsStats, type IpvsCounters } from '../../../lab/guest/ipvsadm.ts';
import { nsRun, run } from '../../../lab/guest/netns.ts';

/** Values of `keys` in `ns`, one `sysctl` process. */
export function sysctls(ns: string, keys: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of nsRun(ns, ['sysctl', ...keys]).split('\n')) {
    const m = /^(\S+) = (.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

export function macOf(ns: string, dev: string): string {
  return (JSON.parse(nsRun(ns, ['ip', '-j', 'link', 'show', 'dev', dev])) as Array<{ address: string }>)[0]!.address;
}

/**
 * Ask the LAN who has `ip` the way the kernel does: make `ip` on-link for `ns`, send one UDP
 * datagram (the kernel ARPs for an IPv4 address, sends a neighbour solicitation for an IPv6 one),
 * wait, and read the neighbour entry. Returns the MAC that answered, or undefined when nobody did.
 * One bash process: spawns are slow under TCG.
 */
export async function arpProbe(ns: string, ip: string, waitMs = 2500): Promise<string | undefined> {
  const v6 = ip.includes(':');
  const script = [
    `ip -n ${ns} neigh flush dev eth0`,
    `ip -n ${ns} route replace ${ip}/${v6 ? 128 : 32} dev eth0`,
    `echo x | ip netns exec ${ns} socat -u - ${v6 ? `UDP6-SENDTO:[${ip}]` : `UDP-SENDTO:${ip}`}:9`,
    `sleep ${waitMs / 1000}`,
    `ip -n ${ns} -j neigh show to ${ip} dev eth0`,
    `ip -n ${ns} route del ${ip}/${v6 ? 128 : 32} dev eth0`,
  ].join('\n');
  const out = run(['bash', '-e', '-s'], { input: script });
  const entries = JSON.parse(out.trim() || '[]') as Array<{ lladdr?: string; state?: string[] }>;
  return entries.find((e) => e.lladdr && !(e.state ?? []).includes('FAILED'))?.lladdr;
}

/** The same probe for an IPv6 address (a neighbour solicitation instead of ARP). */
export const ndpProbe = arpProbe;

/**
 * Counters of the IPVS service at `address` (e.g. 198.51.100.10:80) in `ns`, from ipvsadm. On this
 * kernel the exported counters are folded in from per-CPU counters by the rate estimator every
 * 2 s, so a reading first waits 2.5 s to include the traffic just sent.
 */
export async function ipvsCounters(ns: string, address: string): Promise<IpvsCounters> {
  await new Promise((r) => setTimeout(r, 2500));
  const svc = ipvsStats(ns).find((s) => s.address === address);
  if (!svc) throw new Error(`no IPVS service ${address} in ${ns}`);
  return svc;
}

export async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  try { return await fn(); } finally { console.log(`# ${label}: ${Date.now() - t0} ms`); }
}
