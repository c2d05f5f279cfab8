// Bringing the kernel's IPVS sync daemons to a wanted set. The kernel runs at most one master and
// one backup per network namespace, and cannot change a running one: a daemon whose settings
// differ is stopped (DEL_DAEMON) and started again (NEW_DAEMON); equal ones are left running.
//
// "Equal" compares what the kernel reports back (GET_DAEMON) with the wanted settings as
// start_sync_thread (net/netfilter/ipvs/ip_vs_sync.c, Linux 6.1) would store them:
//  - interface and syncId as given;
//  - group: an omitted one is 224.0.0.81; port: an omitted or 0 one is 8848; ttl: omitted or 0 is 1
//    (a kernel before 4.3 reports none of these, and always uses those defaults);
//  - maxLen only when wanted (non-zero): the kernel clamps it to [1, 65535 - headers] for a master
//    and [1024, 65535 - headers] for a backup (headers: IPv4 + UDP = 28, IPv6 + UDP = 48 bytes), so
//    the clamped value is compared, or a backup wanting 100 would be restarted on every sync.
//    An omitted maxLen follows the interface's MTU, which this pure module does not know.
import { canonicalIp, ipFamily } from '../../api/ip.ts';
import { SYNC_DEFAULTS } from './daemon-codec.ts';
import { isIpvsError } from './errors.ts';
import type { IpvsKernel, SyncDaemon } from './types.ts';

export type DaemonStep = { op: 'start' | 'stop'; daemon: SyncDaemon };

const STATES: Array<SyncDaemon['state']> = ['master', 'backup'];

function groupOf(d: SyncDaemon): string {
  const g = d.group ?? SYNC_DEFAULTS.group;
  return canonicalIp(g) ?? g;
}

/** The SYNC_MAXLEN start_sync_thread stores for a wanted non-zero maxLen. */
export function clampedMaxLen(d: SyncDaemon & { maxLen: number }): number {
  const headers = ipFamily(groupOf(d)) === 6 ? 40 + 8 : 20 + 8;
  const min = d.state === 'backup' ? 1024 : 1;
  return Math.min(Math.max(d.maxLen, min), 65535 - headers);
}

/** Whether the running daemon `have` already is the wanted `want` (same state assumed). */
export function daemonMatches(want: SyncDaemon, have: SyncDaemon): boolean {
  if (want.interface !== have.interface || want.syncId !== have.syncId) return false;
  if (groupOf(want) !== groupOf(have)) return false;
  if ((want.port || SYNC_DEFAULTS.port) !== (have.port || SYNC_DEFAULTS.port)) return false;
  if ((want.ttl || SYNC_DEFAULTS.ttl) !== (have.ttl || SYNC_DEFAULTS.ttl)) return false;
  if (want.maxLen && have.maxLen !== undefined) return clampedMaxLen({ ...want, maxLen: want.maxLen }) === have.maxLen;
  return true;
}

/**
 * The steps from `have` (the kernel's list) to `want`, per state master then backup: a stop of a
 * daemon not wanted or different, then a start of a wanted one not running as wanted.
 * Throws when `want` names a state twice (the kernel could run only one of them).
 */
export function planDaemons(want: readonly SyncDaemon[], have: readonly SyncDaemon[]): DaemonStep[] {
  const steps: DaemonStep[] = [];
  for (const state of STATES) {
    const wanted = want.filter((d) => d.state === state);
    if (wanted.length > 1) throw new Error(`sync daemons: ${wanted.length} ${state} daemons wanted, the kernel runs at most one`);
    const w = wanted[0];
    const h = have.find((d) => d.state === state);
    const same = w !== undefined && h !== undefined && daemonMatches(w, h);
    if (h && !same) steps.push({ op: 'stop', daemon: h });
    if (w && !same) steps.push({ op: 'start', daemon: w });
  }
  return steps;
}

/**
 * Lists the kernel's daemons, applies planDaemons' steps in order and returns them. A stop
 * answered ESRCH (the daemon stopped meanwhile) counts as done; every other IpvsError is thrown
 * as is (EEXIST: a daemon of that state was started meanwhile; ENODEV: no such interface).
 */
export async function syncDaemons(kernel: IpvsKernel, want: readonly SyncDaemon[]): Promise<DaemonStep[]> {
  if (!kernel.listDaemons || !kernel.startDaemon || !kernel.stopDaemon) {
    throw new Error('sync daemons: this IpvsKernel implements no listDaemons/startDaemon/stopDaemon');
  }
  const steps = planDaemons(want, await kernel.listDaemons());
  for (const step of steps) {
    if (step.op === 'start') {
      await kernel.startDaemon(step.daemon);
      continue;
    }
    try {
      await kernel.stopDaemon(step.daemon.state);
    } catch (err) {
      if (!isIpvsError(err, 'ESRCH')) throw err;
    }
  }
  return steps;
}
