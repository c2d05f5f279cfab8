// Director high availability, the side-effect half: membership among the directors (./peers.ts),
// the election it feeds (./election.ts, pure), and the kernel's IPVS connection sync.
//
// Why this shape (against the failure modes of the anchors, docs/ha.md has the long form):
// - Directors talk to each other directly over UDP, not through the apiserver (leases): a
//   director that dies while the apiserver is down still fails over, and failover time is set
//   by the heartbeat (100 ms, dead after 350 ms by default), not by a lease duration (kube-vip
//   and Cilium: 10-20 s with default leases).
// - Every director computes the same answer from the same members (rendezvous hashing per VIP),
//   so there is no leader to elect and no split vote; VIPs spread over the directors and a
//   director's death moves only its own VIPs.
// - A director is a member only while its agent runs and beats, and eligible only while its
//   data path is healthy (the last IPVS sync succeeded) and after `warmupMs` from its start,
//   the time the kernel's connection sync needs to hand it the connections of its peers: failing
//   back to a director that does not know them would reset them (keepalived #237, #1076).
// - Connection sync: every director runs both the kernel's master daemon (sends its own
//   connections) and its backup daemon (receives the others'), always, whoever is active. So a
//   director that takes over already has the connections, and one that gives a VIP back has had
//   the new active's connections all along: nothing switches daemons at failover time.
import type { Logger } from 'pino';
import { realClock, type Clock, type Timer } from '../../kube/clock.ts';
import { syncDaemons } from '../ipvs/daemon.ts';
import type { IpvsKernel, SyncDaemon } from '../ipvs/types.ts';
import type { ActiveDirector } from './decide.ts';
import { activeFor, type Member } from './election.ts';
import type { Peers, PeersOptions } from './peers.ts';
import { startPeersThread } from './peers-thread.ts';

export type { Endpoint } from './peers.ts';

/** The membership's own options (./peers.ts) plus what the election and the sync need. */
export interface HaOptions extends Pick<PeersOptions, 'node' | 'listen' | 'peers' | 'key' | 'intervalMs' | 'deadAfterMs'> {
  /** Not eligible until this long after start (default 5 s; see the header). */
  warmupMs?: number;
  /** Data-path health: false takes this director out of the election (its VIPs move). */
  healthy: () => boolean;
  /** Its node is being drained: its VIPs go to the other eligible directors (./election.ts). */
  yielding?: () => boolean;
  kernel: IpvsKernel;
  /** The kernel's connection sync on this interface (both daemons), or none. */
  syncDaemon?: { interface: string; syncId: number };
  /** The members or someone's eligibility changed: re-decide announcements now. */
  onChange: () => void;
  log: Logger;
  clock?: Clock;
  /** How often the sync daemons are checked and restored (default 10 s). */
  daemonCheckMs?: number;
}

export interface Ha {
  active: ActiveDirector;
  members(): Member[];
  /** Eligible as this director advertises itself now. */
  eligible(): boolean;
  /** Replaces the peer list (./peers.ts setPeers). */
  setPeers: Peers['setPeers'];
  close(): Promise<void>;
}

/** The daemons a director runs: master and backup on one interface, one sync id. */
export function wantedDaemons(d: { interface: string; syncId: number }): SyncDaemon[] {
  return [{ state: 'master', interface: d.interface, syncId: d.syncId }, { state: 'backup', interface: d.interface, syncId: d.syncId }];
}

export async function startHa(opts: HaOptions): Promise<Ha> {
  const clock = opts.clock ?? realClock;
  const log = opts.log.child({ op: 'ha' });
  const started = clock.now();
  const warmupMs = opts.warmupMs ?? 5_000;
  const eligible = () => clock.now() - started >= warmupMs && opts.healthy();
  let daemonTimer: Timer | undefined;
  let closed = false;
  const checkDaemons = async () => {
    if (!opts.syncDaemon || closed) return;
    try {
      const steps = await syncDaemons(opts.kernel, wantedDaemons(opts.syncDaemon));
      if (steps.length > 0) log.info({ steps: steps.map((s) => `${s.op} ${s.daemon.state} on ${s.daemon.interface}`) }, 'IPVS connection sync daemons set');
    } catch (err) {
      log.error({ err: String(err) }, 'IPVS connection sync daemons could not be set; established connections will not survive a failover');
    }
    if (!closed) daemonTimer = clock.setTimer(() => void checkDaemons(), opts.daemonCheckMs ?? 10_000);
  };
  await checkDaemons();
  // The warm-up ends without any message: re-decide then.
  const warm = clock.setTimer(() => opts.onChange(), warmupMs + 1);
  // In a thread of its own (./peers-thread.ts): a busy agent must not fall silent to its peers.
  const peers: Peers = await startPeersThread({
    node: opts.node, listen: opts.listen, peers: opts.peers, key: opts.key, eligible,
    ...(opts.yielding ? { yielding: opts.yielding } : {}),
    ...(opts.intervalMs !== undefined ? { intervalMs: opts.intervalMs } : {}),
    ...(opts.deadAfterMs !== undefined ? { deadAfterMs: opts.deadAfterMs } : {}),
    logger: log,
    onChange: (members) => {
      log.info({ members: members.map((m) => `${m.node}${m.eligible ? '' : ' (not eligible)'}${m.yielding ? ' (yielding)' : ''}`) }, 'director membership changed');
      opts.onChange();
    },
  });
  return {
    active: (vip, directors) => activeFor(vip, peers.members().filter((m) => directors.includes(m.node))),
    members: () => peers.members(),
    eligible,
    setPeers: (p) => peers.setPeers(p),
    async close() {
      closed = true;
      daemonTimer?.cancel();
      warm.cancel();
      // The daemons stay: a restarting agent must not stop the kernel's connection sync.
      await peers.close();
    },
  };
}
