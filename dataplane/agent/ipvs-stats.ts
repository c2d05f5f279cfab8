// The kernel's IPVS traffic counters of this agent's services on /metrics, for dashboards: per
// service (connections, packets and bytes in and out, since the service was added) and, when
// asked for, per real server (the same plus active and inactive connections now).
//
// Read at scrape time with one dump of the kernel (the syncer keeps no counters), at most once
// per `minIntervalMs` however many scrapers ask; the metrics of a scrape, and concurrent scrapes,
// share one dump. The agent gives it netlink sockets of its own (../cli/commands.ts ipvsStats), so
// a sync's read-back never queues behind a scrape. Only the services the plan gives this node are shown (in cluster mode also those
// the removal guard holds), labelled with their VirtualServer: a deleted VirtualServer's services
// drop out while they drain, and other owners' services (kube-proxy's) are not ours to publish.
//
// Kernel behaviour relied on: the counters are 64-bit (IPVS_SVC_ATTR_STATS64, read by the
// netlink client) and only grow while the service exists; deleting and re-adding a service starts
// them at zero, which Prometheus's rate() reads as a counter reset.
import type { Registry } from 'prom-client';
import type { IpvsKernel, IpvsServiceState } from '../ipvs/types.ts';
import { hostPort, ipvsServiceKey } from '../sync/keys.ts';
import { promClient } from './metrics.ts';

export interface IpvsStatsSource {
  kernel: Pick<IpvsKernel, 'dump'>;
  /** Service key → its VirtualServer ("namespace/name"): the services whose counters are shown. */
  owned: () => ReadonlyMap<string, string>;
  /** Per-real-server series too (one set per destination: mind the cardinality at scale). */
  realServers: boolean;
  /** A dump younger than this is reused (default 10 s). */
  minIntervalMs?: number;
  now?: () => number;
}

/** One service's counters as published: the kernel's, under the agent's names. */
export interface ServiceCounters {
  virtualServer: string;
  service: string;
  state: IpvsServiceState;
}

/** The owned services of a dump, with their labels (pure). */
export function ownedCounters(states: readonly IpvsServiceState[], owned: ReadonlyMap<string, string>): ServiceCounters[] {
  const out: ServiceCounters[] = [];
  for (const state of states) {
    if (state.service.fwmark) continue;
    const service = ipvsServiceKey(state.service);
    const virtualServer = owned.get(service);
    if (virtualServer !== undefined) out.push({ virtualServer, service, state });
  }
  return out;
}

/** A dump at most every minIntervalMs, shared by the scrapes that ask meanwhile. */
function cachedDump(src: IpvsStatsSource): () => Promise<IpvsServiceState[]> {
  const now = src.now ?? Date.now;
  const minIntervalMs = src.minIntervalMs ?? 10_000;
  let last: { at: number; states: IpvsServiceState[] } | undefined;
  let running: Promise<IpvsServiceState[]> | undefined;
  return () => {
    if (last && now() - last.at < minIntervalMs) return Promise.resolve(last.states);
    running ??= src.kernel.dump().then((states) => {
      last = { at: now(), states };
      return states;
    }).finally(() => { running = undefined; });
    return running;
  };
}

type Stats = NonNullable<IpvsServiceState['service']['stats']>;
type DestStats = NonNullable<IpvsServiceState['destinations'][number]['stats']>;
type Labels = Record<string, string>;

export async function registerIpvsStatsMetrics(registry: Registry, src: IpvsStatsSource): Promise<void> {
  const { Counter, Gauge } = await promClient();
  const read = cachedDump(src);
  // prom-client collects the metrics of one scrape concurrently: each awaits the same shared dump.
  const owned = async () => ownedCounters(await read(), src.owned());
  const registers = [registry];
  const perService = (name: string, help: string, emit: (s: Stats, put: (extra: Labels, v: number) => void) => void, direction: boolean) => new Counter({
    name, help, labelNames: ['virtual_server', 'service', ...(direction ? ['direction'] : [])], registers,
    async collect() {
      const list = await owned();
      this.reset();
      for (const c of list) {
        if (c.state.service.stats) emit(c.state.service.stats, (extra, v) => this.inc({ virtual_server: c.virtualServer, service: c.service, ...extra }, v));
      }
    },
  });
  perService('lvs_ipvs_service_connections_total', 'Connections IPVS scheduled for this service since it was added (kernel counter).', (s, put) => put({}, s.conns), false);
  perService('lvs_ipvs_service_packets_total', 'Packets through IPVS for this service: in (client to real server) and out (replies through the director; none for DR and TUN).',
    (s, put) => { put({ direction: 'in' }, s.inPkts); put({ direction: 'out' }, s.outPkts); }, true);
  perService('lvs_ipvs_service_bytes_total', 'Bytes through IPVS for this service, in and out as for packets.',
    (s, put) => { put({ direction: 'in' }, s.inBytes); put({ direction: 'out' }, s.outBytes); }, true);
  if (!src.realServers) return;
  const perDest = (name: string, help: string, pick: (s: DestStats) => number, gauge: boolean) => {
    const each = async (put: (l: Labels, v: number) => void) => {
      for (const c of await owned()) for (const d of c.state.destinations) {
        if (d.stats) put({ virtual_server: c.virtualServer, service: c.service, real_server: hostPort(d.address, d.port) }, pick(d.stats));
      }
    };
    const labelNames = ['virtual_server', 'service', 'real_server'];
    if (gauge) new Gauge({ name, help, labelNames, registers, async collect() { const g = this; g.reset(); await each((l, v) => g.set(l, v)); } });
    else new Counter({ name, help, labelNames, registers, async collect() { const c = this; c.reset(); await each((l, v) => c.inc(l, v)); } });
  };
  perDest('lvs_ipvs_real_server_connections_total', 'Connections IPVS scheduled to this real server since it was added.', (s) => s.conns, false);
  perDest('lvs_ipvs_real_server_active_connections', 'Connections to this real server in ESTABLISHED state now (IPVS activeconns).', (s) => s.activeConns, true);
  perDest('lvs_ipvs_real_server_inactive_connections', 'Connections to this real server in any other state now (IPVS inactconns).', (s) => s.inactiveConns, true);
  perDest('lvs_ipvs_real_server_packets_in_total', 'Packets IPVS forwarded to this real server.', (s) => s.inPkts, false);
  perDest('lvs_ipvs_real_server_bytes_in_total', 'Bytes IPVS forwarded to this real server.', (s) => s.inBytes, false);
}
