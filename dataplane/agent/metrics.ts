// The agent's /healthz and /metrics (--metrics-address): health checks per real server — up (1)
// or out of rotation (0), labelled with VirtualServer, service and real server — probes run and
// failed, and the number of targets. Loaded only when asked for (prom-client stays out of the
// standalone commands' start-up otherwise).
import type { Registry } from 'prom-client';
import type { AgentHealth } from '../health/agent-health.ts';
import type { Member } from '../announce/election.ts';

/** Who announces what, as this agent sees it now. */
export type Announcing = () => { announced: string[]; members: Member[] };
import { hostPort } from '../sync/keys.ts';

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
  const { Counter, Gauge } = await import('prom-client');
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
  const { Gauge } = await import('prom-client');
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

/** Serves /healthz (the event loop answers) and /metrics on address. */
export async function startAgentHttp(address: string, health: AgentHealth, announcing?: Announcing): Promise<AgentHttp> {
  const listen = parseListenAddress(address);
  if (!listen) throw new Error(`--metrics-address: expected HOST:PORT, got ${JSON.stringify(address)}`);
  const [{ Registry, collectDefaultMetrics }, { startHttp }] = await Promise.all([import('prom-client'), import('../../kube/http.ts')]);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'lvs_agent_' });
  await registerHealthMetrics(registry, health);
  if (announcing) await registerAnnounceMetrics(registry, announcing);
  const s = await startHttp({ healthy: () => true, ready: () => true, registry }, listen.port, listen.host);
  return { port: s.port, close: s.close };
}
