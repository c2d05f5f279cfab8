// Director high availability in a cluster (lvs-agent run --peer-key-file): the same election as a
// standalone pair (../announce/ha.ts: UDP heartbeats, rendezvous hashing per VIP, the kernel's
// connection sync), with the peer list read from the AgentReports instead of flags. Every agent
// publishes where it takes heartbeats in its own node's report (only that node's agent may write
// it: the chart's ValidatingAdmissionPolicy), and beats to the endpoints the other reports give,
// each bound to its node's name (../announce/peers.ts): a stolen key on one node cannot speak for
// another from its own address.
//
// The apiserver is only the directory. Once the peers are known, heartbeats and the election run
// without it: while it is down the informer keeps its last reports, and a director that dies then
// still loses its VIPs to the others within the dead interval.
import { canonicalIp } from '../../api/ip.ts';
import type { PeerEndpoint } from '../announce/peers.ts';
import { startHa, type Ha, type HaOptions } from '../announce/ha.ts';
import type { KubeObject } from '../../kube/types.ts';

/** What `lvs-agent run` takes from its flags: everything but what the cluster agent supplies. */
export type ClusterHaSettings = Omit<HaOptions, 'node' | 'peers' | 'healthy' | 'yielding' | 'kernel' | 'onChange' | 'log' | 'clock'>;

/**
 * The peer endpoint one report names, bound to its node, or undefined (none, ours, or not a valid
 * address and port: a report is advice, and one bad node must not stop everyone's election). Only
 * the two fields are read: the whole report (up to 8192 prepared entries) is not parsed per event.
 */
export function peerOf(obj: KubeObject, self: string): PeerEndpoint | undefined {
  const node = obj.metadata.name;
  const o = obj as KubeObject & { node?: unknown; peer?: { address?: unknown; port?: unknown } };
  if (!node || node === self || o.node !== node || typeof o.peer !== 'object' || o.peer === null) return undefined;
  const address = typeof o.peer.address === 'string' ? canonicalIp(o.peer.address) : undefined;
  const port = o.peer.port;
  if (!address || typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  return { address, port, node };
}

const byNodeName = (a: PeerEndpoint, b: PeerEndpoint) => (a.node! < b.node! ? -1 : a.node! > b.node! ? 1 : 0);

/** The peers of a set of reports, sorted by node. */
export function peersFromReports(reports: readonly KubeObject[], self: string): PeerEndpoint[] {
  return reports.flatMap((r) => peerOf(r, self) ?? []).sort(byNodeName);
}

const peersKey = (p: readonly PeerEndpoint[]) => p.map((x) => `${x.node}@${x.address}:${x.port}`).join(',');

export interface ClusterHa {
  /** The election, once started (undefined before: VIPs of several directors stay silent). */
  ha(): Ha | undefined;
  /**
   * One report changed: beat to the endpoint it names now. A deleted report keeps its endpoint
   * (like the gates, ./realservers.ts): a node that is really gone stops beating and lapses; one
   * whose report was deleted by mistake must not be cut off while it still announces.
   */
  reportChanged(obj: KubeObject, deleted: boolean): void;
  close(): Promise<void>;
}

export interface ClusterHaOptions extends Pick<HaOptions, 'node' | 'healthy' | 'yielding' | 'kernel' | 'onChange' | 'log' | 'clock'> {
  settings: ClusterHaSettings;
  reports: () => readonly KubeObject[];
}

/** Starts the membership and the sync daemons with the peers the reports name now. */
export async function startClusterHa(o: ClusterHaOptions): Promise<ClusterHa> {
  const byNode = new Map(peersFromReports(o.reports(), o.node).map((p) => [p.node!, p]));
  let peers = [...byNode.values()];
  let closed = false;
  const ha = await startHa({ ...o.settings, node: o.node, peers, kernel: o.kernel, healthy: o.healthy, ...(o.yielding ? { yielding: o.yielding } : {}), onChange: o.onChange, log: o.log, ...(o.clock ? { clock: o.clock } : {}) });
  o.log.info({ op: 'ha', listen: `${o.settings.listen.address}:${o.settings.listen.port}`, peers: peersKey(peers) }, 'director election started');
  /** Beats to the peers byNode holds now, when they differ from the last list given. */
  const update = (msg: string) => {
    const next = [...byNode.values()].sort(byNodeName);
    if (peersKey(next) === peersKey(peers)) return;
    o.log.info({ op: 'ha', peers: peersKey(next), before: peersKey(peers) }, msg);
    peers = next;
    ha.setPeers(next);
  };
  // Reports that changed while the heartbeat thread started reached no one (the agent holds no
  // ClusterHa yet): read them all once more now.
  for (const p of peersFromReports(o.reports(), o.node)) byNode.set(p.node!, p);
  update('director peers changed while starting');
  return {
    ha: () => (closed ? undefined : ha),
    reportChanged(obj, deleted) {
      if (closed || deleted || !obj.metadata.name) return;
      const p = peerOf(obj, o.node);
      if (p) byNode.set(p.node!, p); else byNode.delete(obj.metadata.name);
      update('director peers changed');
    },
    async close() {
      closed = true;
      await ha.close();
    },
  };
}
