// Where a local real server lives: the network namespace that holds its address. Pods' namespaces
// are found without asking the container runtime: CNI plugins create named namespaces
// (/run/netns/cni-...), and any other pod namespace is held by a process (/proc/PID/ns/net). An
// address local to the agent's own namespace is the host (hostNetwork pods, static host backends).
import { readdirSync, readlinkSync } from 'node:fs';
import type { Logger } from 'pino';
import { inNetns, type NetnsTarget, type Runner } from '../exec.ts';
import { parseIpAddrJson } from '../realserver/iproute.ts';

/** At most this many process namespaces are inspected per search (each costs one `ip`). */
const MAX_PROCESS_NAMESPACES = 256;

async function globalAddresses(run: Runner, target: NetnsTarget): Promise<string[]> {
  const { stdout } = await inNetns(run, target)('ip', ['-j', 'addr', 'show']);
  return parseIpAddrJson(stdout).flatMap((l) => l.addresses.filter((a) => a.scope === 'global').map((a) => a.address));
}

function nsInode(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}

export interface NetnsFinder {
  /**
   * Namespaces of the given addresses; addresses found nowhere are absent from the map. Pass every
   * address wanted now: cached ones not among them are dropped.
   */
  find(addresses: readonly string[]): Promise<Map<string, NetnsTarget>>;
  /** Cached locations (at most the addresses of the last find). */
  size(): number;
  /**
   * Of addresses, those target holds right now (call it right before preparing target); the
   * others are forgotten. A process namespace whose pid now names another namespace holds none.
   */
  confirm(target: NetnsTarget, addresses: readonly string[]): Promise<string[]>;
  /** Forget a cached location (the namespace went away or no longer holds the address). */
  forget(address: string): void;
}

/**
 * A cached location. A pid is only a name for a namespace while that process lives: when it exits
 * and the kernel hands the pid to a new process (pids are reused, lowest free above the last one,
 * wrapping at pid_max), /proc/PID/ns/net names the new process's namespace — often the host's.
 * So a pid location carries the namespace's inode ("net:[N]") as seen when it was found.
 */
interface Location { target: NetnsTarget; inode?: string }

export function createNetnsFinder(run: Runner, log?: Logger, procRoot = '/proc'): NetnsFinder {
  const cache = new Map<string, Location>();
  const inodeOf = (t: NetnsTarget) => (t.kind === 'pid' ? nsInode(`${procRoot}/${t.pid}/ns/net`) : undefined);
  const samePlace = (l: Location) => l.target.kind !== 'pid' || (l.inode !== undefined && inodeOf(l.target) === l.inode);

  async function scan(targets: NetnsTarget[], want: Set<string>): Promise<void> {
    for (const target of targets) {
      const inode = inodeOf(target);
      if (want.size === 0) return;
      let addrs: string[];
      try {
        addrs = await globalAddresses(run, target);
      } catch (err) {
        log?.debug({ op: 'netns', target, err: String(err) }, 'cannot inspect namespace');
        continue;
      }
      // The inode read before the addresses: a pid reused in between fails the later check.
      for (const a of addrs) if (want.delete(a)) cache.set(a, inode ? { target, inode } : { target });
    }
  }

  async function named(): Promise<NetnsTarget[]> {
    try {
      const { stdout } = await run('ip', ['netns', 'list']);
      return stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]).filter((n): n is string => !!n).map((name) => ({ kind: 'named', name }));
    } catch {
      return [];
    }
  }

  function processes(): NetnsTarget[] {
    const own = nsInode(`${procRoot}/self/ns/net`);
    const seen = new Set<string>(own ? [own] : []);
    const out: NetnsTarget[] = [];
    for (const entry of readdirSync(procRoot)) {
      if (!/^\d+$/.test(entry) || out.length >= MAX_PROCESS_NAMESPACES) continue;
      const inode = nsInode(`${procRoot}/${entry}/ns/net`);
      if (!inode || seen.has(inode)) continue;
      seen.add(inode);
      out.push({ kind: 'pid', pid: Number(entry) });
    }
    return out;
  }

  return {
    async find(addresses) {
      // Each pass asks for every local real server: a cached address not asked for is no longer
      // one, so the cache never holds more than the node's current real servers.
      const asked = new Set(addresses);
      for (const a of cache.keys()) if (!asked.has(a)) cache.delete(a);
      for (const a of addresses) {
        const l = cache.get(a);
        if (l && !samePlace(l)) cache.delete(a);
      }
      const want = new Set(addresses.filter((a) => !cache.has(a)));
      if (want.size > 0) await scan([{ kind: 'host' }], want);
      if (want.size > 0) await scan(await named(), want);
      if (want.size > 0) await scan(processes(), want);
      const out = new Map<string, NetnsTarget>();
      for (const a of addresses) {
        const l = cache.get(a);
        if (l) out.set(a, l.target);
      }
      return out;
    },
    async confirm(target, addresses) {
      let held = new Set<string>();
      const moved = addresses.some((a) => { const l = cache.get(a); return l !== undefined && !samePlace(l); });
      if (!moved) {
        try {
          held = new Set(await globalAddresses(run, target));
        } catch (err) {
          log?.debug({ op: 'netns', target, err: String(err) }, 'cannot inspect namespace');
        }
      }
      const out = addresses.filter((a) => held.has(a));
      for (const a of addresses) if (!held.has(a)) cache.delete(a);
      return out;
    },
    forget(address) {
      cache.delete(address);
    },
    size: () => cache.size,
  };
}
