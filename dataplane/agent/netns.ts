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
  /** Namespaces of the given addresses; addresses found nowhere are absent from the map. */
  find(addresses: readonly string[]): Promise<Map<string, NetnsTarget>>;
  /** Forget a cached location (the namespace went away or no longer holds the address). */
  forget(address: string): void;
}

export function createNetnsFinder(run: Runner, log?: Logger, procRoot = '/proc'): NetnsFinder {
  const cache = new Map<string, NetnsTarget>();

  async function scan(targets: NetnsTarget[], want: Set<string>): Promise<void> {
    for (const target of targets) {
      if (want.size === 0) return;
      let addrs: string[];
      try {
        addrs = await globalAddresses(run, target);
      } catch (err) {
        log?.debug({ op: 'netns', target, err: String(err) }, 'cannot inspect namespace');
        continue;
      }
      for (const a of addrs) if (want.delete(a)) cache.set(a, target);
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
      const want = new Set(addresses.filter((a) => !cache.has(a)));
      if (want.size > 0) await scan([{ kind: 'host' }], want);
      if (want.size > 0) await scan(await named(), want);
      if (want.size > 0) await scan(processes(), want);
      const out = new Map<string, NetnsTarget>();
      for (const a of addresses) {
        const t = cache.get(a);
        if (t) out.set(a, t);
      }
      return out;
    },
    forget(address) {
      cache.delete(address);
    },
  };
}
