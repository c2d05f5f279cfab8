// The agent's /healthz and /metrics (--metrics-address): every sync (duration by read-back, result,
// operations, errors, last success), the network-programming latency of plan revisions (cluster
// mode), health checks per real server — up (1) or out of rotation (0), labelled with
// VirtualServer, service and real server — probes run and failed, the number of targets, who
// announces what, and the kernel's IPVS counters of this agent's services (./ipvs-stats.ts).
// Loaded only when asked for (prom-client stays out of the standalone commands' start-up otherwise).
import type { Registry } from 'prom-client';
import type { AgentHealth } from '../health/agent-health.ts';
import type { Member } from '../announce/election.ts';
import type { SyncMetrics } from '../sync/loop.ts';
import type { SyncResult } from '../sync/sync.ts';
import type { IpvsStatsSource } from './ipvs-stats.ts';
import { errnoCode } from '../ipvs/errors.ts';
import { NLMSG_ERROR, splitMessages, type NlMessage } from '../ipvs/nla.ts';
import type { Tap } from '../ipvs/transport.ts';
import { hostPort } from '../sync/keys.ts';

type PromClient = typeof import('prom-client');

/**
 * prom-client, loaded on first use. It is CommonJS: Node's own import gives named exports, but in
 * the bundle (scripts/build.ts, esbuild with code splitting) a dynamic import of it yields only
 * `default` — destructuring named exports there gave undefined, and every agent started with
 * --metrics-address (the chart's default) died with "Registry is not a constructor". The system
 * tier, which runs the bundled agent with /metrics, caught it.
 */
export async function promClient(): Promise<PromClient> {
  const m = (await import('prom-client')) as PromClient & { default?: PromClient };
  return m.default ?? m;
}

/** Who announces what, as this agent sees it now. */
export type Announcing = () => { announced: string[]; members: Member[] };

export interface AgentMetrics extends SyncMetrics {
  readonly registry: Registry;
  /** Network-programming latencies (s) of the plan revisions a sync just programmed. */
  programmed(seconds: readonly number[]): void;
  /** Counts the IPVS netlink traffic: give it to the client (IpvsNetlink.open's tap). */
  readonly netlinkTap: Tap;
}

/** Seconds: a partial sync of one change takes milliseconds, a full one at 40,000 services minutes. */
const SYNC_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** Seconds, change to kernel: kube-proxy's SLO is 1 s at p99 for small clusters. */
const PROGRAMMING_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600];

/**
 * 'full' (everything read back), 'listing' (the services listed without destinations: new owned
 * VIPs, or the periodic one with the verifier; sync/listing.ts), 'partial' (the changed services,
 * with a verify slice or not), 'verify' (a verify slice alone: a tick with nothing changed), 'none'
 * (failed before reading).
 */
export function readLabel(r: SyncResult): 'full' | 'listing' | 'partial' | 'verify' | 'none' {
  if (r.read === undefined) return 'none';
  if (r.read === 'full') return 'full';
  if (r.listed !== undefined) return 'listing';
  return r.verified !== undefined && r.verified === r.read ? 'verify' : 'partial';
}

export async function createAgentMetrics(): Promise<AgentMetrics> {
  const { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } = await promClient();
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'lvs_agent_' });
  const registers = [registry];
  const duration = new Histogram({ name: 'lvs_agent_sync_duration_seconds', help: 'IPVS syncs (plan → read-back → diff → writes), by read-back: full, listing (services listed without destinations), partial (changed services), verify (a verify slice alone) or none (failed before reading).', labelNames: ['read'], buckets: SYNC_BUCKETS, registers });
  const syncs = new Counter({ name: 'lvs_agent_syncs_total', help: 'IPVS syncs by read-back and result (ok, retry, drainPending).', labelNames: ['read', 'result'], registers });
  const ops = new Counter({ name: 'lvs_agent_sync_operations_total', help: 'Kernel writes the syncs\' diffs asked for.', registers });
  const errors = new Counter({ name: 'lvs_agent_sync_errors_total', help: 'Errors of syncs that must be retried, by operation (addService, addDestination, dump, bindVip, ...).', labelNames: ['op'], registers });
  const lastOk = new Gauge({ name: 'lvs_agent_last_successful_sync_timestamp_seconds', help: 'Wall time (Unix seconds) of the end of the last sync that needed no retry.', registers });
  const draining = new Gauge({ name: 'lvs_agent_draining_destinations', help: 'Real servers removed from the plan whose connections are still draining (weight 0).', registers });
  const programming = new Histogram({
    name: 'lvs_agent_network_programming_duration_seconds', registers, buckets: PROGRAMMING_BUCKETS,
    help: 'From the change behind a plan revision (the EndpointSlice trigger time, or when the controller resolved the plan) to the end of the sync that programmed it. Across two machines\' clocks.',
  });
  return {
    registry,
    netlinkTap: netlinkCounters(Counter, registers),
    synced(r, seconds, wallNow) {
      const read = readLabel(r);
      duration.observe({ read }, seconds);
      syncs.inc({ read, result: r.kind });
      if (r.ops > 0) ops.inc(r.ops);
      if (r.kind === 'retry') for (const e of r.errors) errors.inc({ op: e.op });
      else lastOk.set(wallNow / 1000);
      draining.set(r.draining);
    },
    programmed(list) { for (const s of list) programming.observe(s); },
  };
}

/**
 * lvs_agent_netlink_writes_total (sendmsg calls: a batch of writes is one), _messages_total by
 * direction, and _errors_total by errno (the kernel's NLMSG_ERROR replies that are not ACKs; a
 * request that got no reply at all shows in lvs_agent_sync_errors_total as ETIMEDOUT). Counted
 * from the socket's datagrams, split by ../ipvs/nla.ts splitMessages (headers read, no payload
 * copied). The IPVS counters' scrape-time dumps (./ipvs-stats.ts) use sockets of their own and
 * are not counted.
 */
function netlinkCounters(Counter: PromClient['Counter'], registers: Registry[]): Tap {
  const writes = new Counter({ name: 'lvs_agent_netlink_writes_total', help: 'IPVS generic-netlink datagrams sent (one sendmsg; a batch of kernel writes is one).', registers });
  const messages = new Counter({ name: 'lvs_agent_netlink_messages_total', help: 'IPVS generic-netlink messages, by direction (sent: requests; received: replies, dump parts, ACKs and errors).', labelNames: ['direction'], registers });
  const errors = new Counter({ name: 'lvs_agent_netlink_errors_total', help: 'Error replies of the kernel to IPVS requests, by errno (EEXIST, ENOENT, ESRCH, ...).', labelNames: ['errno'], registers });
  return (direction, bytes) => {
    if (direction === 'send') writes.inc();
    // The tap runs in the socket's message listener and must not throw: a datagram that cannot be
    // split counts no message (the channel fails the requests it may have answered).
    let list: NlMessage[];
    try { list = splitMessages(bytes); } catch { return; }
    for (const m of list) {
      // An NLMSG_ERROR's payload starts with the negative errno; 0 is an ACK.
      if (direction === 'recv' && m.type === NLMSG_ERROR && m.payload.length >= 4 && m.payload.readInt32LE(0) !== 0) {
        errors.inc({ errno: errnoCode(-m.payload.readInt32LE(0)) });
      }
    }
    messages.inc({ direction: direction === 'send' ? 'sent' : 'received' }, list.length);
  };
}

export interface AgentHttp {
  port: number;
  close(): Promise<void>;
}

/** "HOST:PORT", "[v6]:PORT" or ":PORT" (all addresses). */
export function parseListenAddress(text: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  if (!m || port > 65535) return undefined;
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export async function registerHealthMetrics(registry: Registry, health: AgentHealth): Promise<void> {
  const { Counter, Gauge } = await promClient();
  new Gauge({
    name: 'lvs_agent_real_server_up', help: 'Health check of a real server as this director sees it: 1 in rotation, 0 out (down, or not passed yet).',
    labelNames: ['virtual_server', 'service', 'real_server'], registers: [registry],
    collect() {
      this.reset();
      for (const s of health.states()) this.set({ virtual_server: s.virtualServer, service: s.serviceKey, real_server: hostPort(s.address, s.port) }, s.up ? 1 : 0);
    },
  });
  new Gauge({ name: 'lvs_agent_health_check_targets', help: 'Distinct probes this agent runs (one per real server and check).', registers: [registry], collect() { this.set(health.checked()); } });
  let seen = { checks: 0, failures: 0 };
  new Counter({
    name: 'lvs_agent_health_checks_total', help: 'Health-check probes completed, by result (pass, fail).', labelNames: ['result'], registers: [registry],
    collect() {
      const c = health.monitor.counts;
      this.inc({ result: 'pass' }, c.checks - c.failures - (seen.checks - seen.failures));
      this.inc({ result: 'fail' }, c.failures - seen.failures);
      seen = { ...c };
    },
  });
}

/** lvs_agent_vip_announced{vip} (1 per VIP this node answers ARP/NDP for) and the election's members. */
export async function registerAnnounceMetrics(registry: Registry, announcing: Announcing): Promise<void> {
  const { Gauge } = await promClient();
  new Gauge({
    name: 'lvs_agent_vip_announced', help: 'VIPs this node answers ARP/NDP for now (it is their active director): 1 per VIP.',
    labelNames: ['vip'], registers: [registry],
    collect() { this.reset(); for (const vip of announcing().announced) this.set({ vip }, 1); },
  });
  new Gauge({
    name: 'lvs_agent_director_member', help: 'Directors this agent hears in the election (itself included): 1 eligible, 0 alive but not eligible.',
    labelNames: ['node'], registers: [registry],
    collect() { this.reset(); for (const m of announcing().members) this.set({ node: m.node }, m.eligible ? 1 : 0); },
  });
}

/** --metrics-ipvs-stats: the kernel's counters per service (default), per real server too, or none. */
export type IpvsStatsLevel = 'services' | 'real-servers' | 'off';

export function parseIpvsStatsLevel(text: string | undefined): IpvsStatsLevel | undefined {
  const v = text ?? 'services';
  return v === 'services' || v === 'real-servers' || v === 'off' ? v : undefined;
}

/**
 * Serves /healthz (the event loop answers), /readyz (`ready`, default always: e.g. the cluster
 * agent's first sync of the published plans) and /metrics on address.
 */
export async function startAgentHttp(address: string, metrics: AgentMetrics, health: AgentHealth, announcing?: Announcing, ipvsStats?: IpvsStatsSource, ready: () => boolean = () => true): Promise<AgentHttp> {
  const listen = parseListenAddress(address);
  if (!listen) throw new Error(`--metrics-address: expected HOST:PORT, got ${JSON.stringify(address)}`);
  const { startHttp } = await import('../../kube/http.ts');
  const registry = metrics.registry;
  await registerHealthMetrics(registry, health);
  if (announcing) await registerAnnounceMetrics(registry, announcing);
  if (ipvsStats) await (await import('./ipvs-stats.ts')).registerIpvsStatsMetrics(registry, ipvsStats);
  const s = await startHttp({ healthy: () => true, ready, registry }, listen.port, listen.host);
  return { port: s.port, close: s.close };
}
