// The kernel's IPVS counters on the agent's /metrics (dataplane/agent/ipvs-stats.ts): only the
// agent's own services, under their VirtualServer; per real server only when asked; one kernel
// dump per scrape (the metrics of a scrape collect concurrently) and at most one per interval.
// The real kernel's side (the counters equal ipvsadm --stats) is in the system tier's NAT scenario.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ownedCounters, registerIpvsStatsMetrics } from '../../dataplane/agent/ipvs-stats.ts';
import { parseIpvsStatsLevel, promClient } from '../../dataplane/agent/metrics.ts';
import type { IpvsServiceState } from '../../dataplane/ipvs/types.ts';

const test = suite('agent /metrics: IPVS counters');

const dest = (address: string, conns: number, active: number) => ({
  family: 4 as const, address, port: 8080, forward: 'masq' as const, weight: 1, upperThreshold: 0, lowerThreshold: 0,
  stats: { activeConns: active, inactiveConns: conns - active, persistConns: 0, conns, inPkts: conns * 5, outPkts: conns * 4, inBytes: conns * 500, outBytes: conns * 900 },
});
const state = (address: string, port: number, conns: number, family: 4 | 6 = 4): IpvsServiceState => ({
  service: { family, protocol: 'TCP', address, port, scheduler: 'rr', flags: 0, timeout: 0, netmask: family === 4 ? '255.255.255.255' : '128', stats: { conns, inPkts: conns * 10, outPkts: conns * 8, inBytes: conns * 1000, outBytes: conns * 1800 } },
  destinations: [dest('10.0.0.1', Math.ceil(conns / 2), 1), dest('10.0.0.2', Math.floor(conns / 2), 0)],
});

// Ours: 198.51.100.10:80 and [2001:db8::10]:443; kube-proxy's ClusterIP 10.96.0.1:443 is not.
const KERNEL = [state('10.96.0.1', 443, 99), state('198.51.100.10', 80, 7), state('2001:db8::10', 443, 3, 6)];
const OWNED = new Map([['TCP/198.51.100.10:80', 'shop/web'], ['TCP/[2001:db8::10]:443', 'shop/api']]);

async function scrape(realServers: boolean, kernel: () => IpvsServiceState[] = () => KERNEL) {
  const { Registry } = await promClient();
  const registry = new Registry();
  let dumps = 0;
  let t = 0;
  await registerIpvsStatsMetrics(registry, { kernel: { dump: async () => { dumps += 1; return kernel(); } }, owned: () => OWNED, realServers, minIntervalMs: 10_000, now: () => t });
  return { registry, dumps: () => dumps, advance: (ms: number) => { t += ms; } };
}

test('ownedCounters: the owned services only, keyed as the plan keys them (IPv6 in brackets), fwmark services never', () => {
  const fwm: IpvsServiceState = { ...state('0.0.0.0', 0, 5), service: { ...state('0.0.0.0', 0, 5).service, fwmark: 7 } };
  const got = ownedCounters([...KERNEL, fwm], OWNED);
  assert.equal(got.map((c) => [c.virtualServer, c.service, c.state.service.stats?.conns]), [['shop/web', 'TCP/198.51.100.10:80', 7], ['shop/api', 'TCP/[2001:db8::10]:443', 3]]);
});

test('per service: connections, packets and bytes by direction, labelled with the VirtualServer; no foreign service, no per-real-server series by default', async () => {
  const s = await scrape(false);
  const text = await s.registry.metrics();
  assert.match(text, 'lvs_ipvs_service_connections_total{virtual_server="shop/web",service="TCP/198.51.100.10:80"} 7');
  assert.match(text, 'lvs_ipvs_service_connections_total{virtual_server="shop/api",service="TCP/[2001:db8::10]:443"} 3');
  assert.match(text, 'lvs_ipvs_service_packets_total{virtual_server="shop/web",service="TCP/198.51.100.10:80",direction="in"} 70');
  assert.match(text, 'lvs_ipvs_service_packets_total{virtual_server="shop/web",service="TCP/198.51.100.10:80",direction="out"} 56');
  assert.match(text, 'lvs_ipvs_service_bytes_total{virtual_server="shop/web",service="TCP/198.51.100.10:80",direction="out"} 12600');
  assert.match(text, '# TYPE lvs_ipvs_service_connections_total counter');
  assert.not.match(text, '10.96.0.1');
  assert.not.match(text, 'lvs_ipvs_real_server_');
  assert.is(s.dumps(), 1, 'the three metrics of one scrape share one dump');
});

test('per real server when asked: connections, active and inactive now, packets and bytes in', async () => {
  const s = await scrape(true);
  const text = await s.registry.metrics();
  const web = 'virtual_server="shop/web",service="TCP/198.51.100.10:80"';
  assert.match(text, `lvs_ipvs_real_server_connections_total{${web},real_server="10.0.0.1:8080"} 4`);
  assert.match(text, `lvs_ipvs_real_server_active_connections{${web},real_server="10.0.0.1:8080"} 1`);
  assert.match(text, `lvs_ipvs_real_server_inactive_connections{${web},real_server="10.0.0.1:8080"} 3`);
  assert.match(text, `lvs_ipvs_real_server_packets_in_total{${web},real_server="10.0.0.2:8080"} 15`);
  assert.match(text, '# TYPE lvs_ipvs_real_server_active_connections gauge');
  assert.is(s.dumps(), 1, 'eight metrics, one dump');
});

test('a dump at most every minIntervalMs; then the new counters; a service that went is gone from the output', async () => {
  let kernel = KERNEL;
  const { registry, dumps, advance } = await scrape(false, () => kernel);
  await registry.metrics();
  await Promise.all([registry.metrics(), registry.metrics()]);
  assert.is(dumps(), 1, 'three scrapes within the interval: one dump');
  kernel = [state('198.51.100.10', 80, 12)];
  advance(9_999);
  await registry.metrics();
  assert.is(dumps(), 1);
  advance(1);
  const text = await registry.metrics();
  assert.is(dumps(), 2);
  assert.match(text, 'lvs_ipvs_service_connections_total{virtual_server="shop/web",service="TCP/198.51.100.10:80"} 12');
  assert.not.match(text, 'shop/api');
});

test('--metrics-ipvs-stats: services by default, real-servers, off; anything else is refused', () => {
  assert.is(parseIpvsStatsLevel(undefined), 'services');
  assert.is(parseIpvsStatsLevel('real-servers'), 'real-servers');
  assert.is(parseIpvsStatsLevel('off'), 'off');
  assert.is(parseIpvsStatsLevel('all'), undefined);
});

test.run();
