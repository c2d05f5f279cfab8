// Health checks: the policy (pure), the plan ↔ targets mapping and weights (pure), the monitor's
// scheduling on a manual clock with a scripted checker, and the real checkers against servers on
// loopback (accepting, refusing, wrong status, never answering).
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import pino from 'pino';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { PlanHealthCheck, PlanService } from '../../api/plan.ts';
import { ManualClock } from '../../kube/clock.ts';
import { httpCheck, tcpCheck, type CheckResult, type Probe } from '../../dataplane/health/check.ts';
import { HealthMonitor } from '../../dataplane/health/monitor.ts';
import { initialHealth, observe } from '../../dataplane/health/policy.ts';
import { probeId, targetsOf, withHealth } from '../../dataplane/health/targets.ts';

const log = pino({ level: 'silent' });
const hc = (o: Partial<PlanHealthCheck> = {}): PlanHealthCheck => ({ type: 'tcp', intervalSeconds: 2, timeoutSeconds: 1, failureThreshold: 3, successThreshold: 2, onFailure: 'Quiesce', ...o });
const svc = (vip: string, o: Partial<PlanService> = {}): PlanService => ({
  key: `TCP/${vip}:80`, owner: { namespace: 'shop', name: 'web', generation: 1 }, portName: 'http', vip, family: vip.includes(':') ? 6 : 4,
  protocol: 'TCP', port: 80, forwarding: 'NAT', scheduler: { name: 'wlc', flags: [] }, prepareRealServers: false, directors: ['n1'],
  realServers: [{ address: '10.0.0.1', port: 8080, weight: 5, state: 'Ready' }, { address: '10.0.0.2', port: 8080, weight: 1, state: 'Ready' }],
  healthCheck: hc(), ...o,
});

const policy = suite('health: policy');
policy('never passed starts down; up after successThreshold passes in a row; down after failureThreshold failures in a row', () => {
  const t = { failureThreshold: 3, successThreshold: 2 };
  let h = initialHealth(0);
  assert.is(h.up, false);
  h = observe(h, true, 'ok', t, 1).health;
  assert.is(h.up, false, 'one pass of two');
  assert.is(h.message, 'passed 1 of 2 checks needed');
  const r = observe(h, true, 'ok', t, 2);
  assert.ok(r.changed && r.health.up && r.health.since === 2);
  h = r.health;
  h = observe(h, false, 'connection refused', t, 3).health;
  h = observe(h, false, 'timed out after 1000 ms', t, 4).health;
  assert.is(h.up, true, 'two failures of three');
  h = observe(h, true, 'ok', t, 5).health;
  h = observe(h, false, 'connection refused', t, 6).health;
  h = observe(h, false, 'connection refused', t, 7).health;
  assert.is(h.up, true, 'a pass resets the count');
  const down = observe(h, false, 'status 500', t, 8);
  assert.ok(down.changed && !down.health.up);
  assert.is(down.health.message, 'status 500', 'the latest failure names it');
  assert.is(down.health.failure, 'connection refused', 'the first failure of the run is kept');
  assert.is(observe(down.health, false, 'timed out', t, 9).health.message, 'timed out');
});
policy('a seeded target starts up and stays up until failureThreshold failures', () => {
  let h = initialHealth(0, true);
  assert.is(h.up, true);
  for (let i = 0; i < 2; i++) h = observe(h, false, 'refused', { failureThreshold: 3, successThreshold: 1 }, i).health;
  assert.is(h.up, true);
});
policy.run();

const targets = suite('health: targets and weights');
targets('one probe per distinct target: IPv4 and IPv6 VIPs, and ports sharing a real-server port, check once', () => {
  const plan = [svc('192.0.2.10'), svc('2001:db8::10', { key: 'TCP/[2001:db8::10]:80' }), svc('192.0.2.10', { key: 'TCP/192.0.2.10:81', port: 81 })];
  const t = targetsOf(plan, 'n1');
  assert.equal([...t.keys()], ['tcp 10.0.0.1:8080', 'tcp 10.0.0.2:8080']);
  assert.equal(t.get('tcp 10.0.0.1:8080')!.uses, ['TCP/192.0.2.10:80|10.0.0.1:8080', 'TCP/[2001:db8::10]:80|10.0.0.1:8080', 'TCP/192.0.2.10:81|10.0.0.1:8080']);
  assert.equal(targetsOf(plan, 'n2').size, 0, 'another node directs nothing here');
});
targets('overrides: a real server checked on another port or path; http keeps host and statuses', () => {
  const s = svc('192.0.2.10', {
    healthCheck: hc({ type: 'http', path: '/healthz', host: 'shop.example', statuses: [200, 204] }),
    realServers: [{ address: '10.0.0.1', port: 8080, weight: 1, state: 'Ready', check: { port: 9090, path: '/ready' } }],
  });
  const [t] = targetsOf([s], 'n1').values();
  assert.equal(t!.probe, { type: 'http', address: '10.0.0.1', port: 9090, timeoutMs: 1000, path: '/ready', host: 'shop.example', statuses: [200, 204] });
  assert.equal(t!.uses, ['TCP/192.0.2.10:80|10.0.0.1:8080'], 'the destination keeps its own port');
});
targets('weights: up keeps its weight, down or unchecked is Draining (weight 0) or removed; unchecked services are the same objects', () => {
  const plain = svc('192.0.2.20', { healthCheck: undefined });
  delete plain.healthCheck;
  const other = svc('192.0.2.30', { directors: ['n2'] });
  const plan = [svc('192.0.2.10'), svc('192.0.2.11', { key: 'TCP/192.0.2.11:80', healthCheck: hc({ onFailure: 'Remove' }), realServers: [{ address: '10.0.0.3', port: 8080, weight: 1, state: 'Ready' }, { address: '10.0.0.4', port: 8080, weight: 1, state: 'Ready' }] }), plain, other];
  const up = new Set(['tcp 10.0.0.1:8080', 'tcp 10.0.0.4:8080']);
  const out = withHealth(plan, 'n1', (id) => ({ ...initialHealth(0, up.has(id)) }));
  assert.equal(out[0]!.realServers.map((r) => [r.address, r.weight, r.state]), [['10.0.0.1', 5, 'Ready'], ['10.0.0.2', 1, 'Draining']]);
  assert.equal(out[1]!.realServers.map((r) => r.address), ['10.0.0.4'], 'Remove leaves the down one out');
  assert.is(out[2], plain);
  assert.is(out[3], other, 'a service this node does not direct is not touched');
  assert.equal(withHealth(plan, 'n1', () => undefined)[0]!.realServers.map((r) => r.state), ['Draining', 'Draining'], 'never checked: weight 0');
  const down = withHealth(plan, 'n1', () => undefined)[0]!;
  assert.ok(withHealth(plan, 'n1', () => undefined)[0] === down, 'the same health: the same object (a sync rebuilds only new objects)');
  const flipped = withHealth(plan, 'n1', () => ({ ...initialHealth(0, true) }))[0]!;
  assert.ok(flipped !== down && flipped.realServers.every((r) => r.state !== 'Draining'), 'a flip: a new object with the new states');
});
targets.run();

const monitor = suite('health: monitor');
function scripted(results: Map<string, boolean>, calls: Probe[], hold?: { release: Array<() => void> }) {
  return (p: Probe): Promise<CheckResult> => {
    calls.push(p);
    const r: CheckResult = results.get(`${p.address}:${p.port}`) ? { ok: true, message: 'ok' } : { ok: false, message: 'connection refused' };
    if (hold) return new Promise((res) => hold.release.push(() => res(r)));
    return Promise.resolve(r);
  };
}
monitor('first check within 250 ms, the second within [0.5, 1.5) intervals, then every 80-100% of the interval; a flip calls onChange once; removal stops checks', async () => {
  const clock = new ManualClock();
  const results = new Map([['10.0.0.1:8080', true], ['10.0.0.2:8080', false]]);
  const calls: Probe[] = [];
  let changes = 0;
  const m = new HealthMonitor({ clock, log, onChange: () => changes++, checker: scripted(results, calls), random: () => 0.999 });
  m.setTargets(targetsOf([svc('192.0.2.10', { healthCheck: hc({ successThreshold: 1, failureThreshold: 2 }) })], 'n1'));
  assert.equal(clock.pending(), [249.75, 249.75]);
  await clock.advance(250);
  assert.is(calls.length, 2);
  assert.is(m.health('tcp 10.0.0.1:8080')?.up, true);
  assert.is(m.health('tcp 10.0.0.2:8080')?.up, false);
  assert.is(changes, 1);
  assert.ok(clock.pending().every((x) => x > 2950 && x <= 3000), 'the second check anywhere in [0.5, 1.5) intervals: phases spread');
  results.set('10.0.0.1:8080', false);
  await clock.advance(3000);
  assert.is(m.health('tcp 10.0.0.1:8080')?.up, true, 'one failure of two');
  assert.ok(clock.pending().every((x) => x > 1950 && x <= 2000), 'then every 80-100% of the interval, start to start');
  await clock.advance(2200);
  assert.is(m.health('tcp 10.0.0.1:8080')?.up, false);
  assert.is(changes, 2);
  m.setTargets(new Map());
  const before = calls.length;
  await clock.advance(10_000);
  assert.is(calls.length, before, 'no checks for removed targets');
  assert.equal(clock.pending(), []);
});
monitor('at most maxInFlight probes at once; the rest wait their turn', async () => {
  const clock = new ManualClock();
  const calls: Probe[] = [];
  const hold = { release: [] as Array<() => void> };
  const m = new HealthMonitor({ clock, log, onChange: () => {}, checker: scripted(new Map(), calls, hold), random: () => 0, maxInFlight: 2 });
  const many = Array.from({ length: 5 }, (_, i) => ({ address: `10.0.1.${i + 1}`, port: 80, weight: 1, state: 'Ready' as const }));
  m.setTargets(targetsOf([svc('192.0.2.10', { realServers: many })], 'n1'));
  await clock.advance(1);
  assert.is(calls.length, 2);
  hold.release.shift()!();
  await clock.advance(0);
  assert.is(calls.length, 3, 'one finished, one more started');
  while (hold.release.length) { hold.release.shift()!(); await clock.advance(0); }
  assert.is(calls.length, 5);
  await m.firstRound();
  m.close();
});
monitor('seeded destinations start up; seeds end with endSeed()', () => {
  const clock = new ManualClock();
  const m = new HealthMonitor({ clock, log, onChange: () => {}, checker: async () => ({ ok: true, message: 'ok' }) });
  m.seed(['TCP/192.0.2.10:80|10.0.0.1:8080']);
  m.setTargets(targetsOf([svc('192.0.2.10')], 'n1'));
  assert.is(m.health('tcp 10.0.0.1:8080')?.up, true);
  assert.is(m.health('tcp 10.0.0.2:8080')?.up, false);
  m.endSeed();
  m.setTargets(targetsOf([svc('192.0.2.10', { realServers: [{ address: '10.0.0.9', port: 8080, weight: 1, state: 'Ready' }] })], 'n1'));
  assert.is(m.health(probeId({ type: 'tcp', address: '10.0.0.9', port: 8080, timeoutMs: 1 }))?.up, false);
  m.close();
});
monitor.run();

const checkers = suite('health: checkers against loopback servers');
async function listen(s: Server | ReturnType<typeof createServer>): Promise<number> {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return (s.address() as AddressInfo).port;
}
checkers('tcp: accepted passes, refused fails naming it', async () => {
  const s = createServer((c) => c.destroy());
  const port = await listen(s);
  assert.equal(await tcpCheck({ type: 'tcp', address: '127.0.0.1', port, timeoutMs: 1000 }), { ok: true, message: 'ok' });
  s.close();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(await tcpCheck({ type: 'tcp', address: '127.0.0.1', port, timeoutMs: 1000 }), { ok: false, message: 'connection refused' });
});
checkers('http: 200-399 by default, expectedStatuses when given, wrong status fails, Host and path sent', async () => {
  const seen: string[] = [];
  const s = createHttpServer((req, res) => { seen.push(`${req.headers.host} ${req.url}`); res.statusCode = req.url === '/bad' ? 500 : req.url === '/empty' ? 204 : 200; res.end(); });
  const port = await listen(s);
  const p = (path: string, o: Partial<Probe> = {}): Probe => ({ type: 'http', address: '127.0.0.1', port, path, timeoutMs: 1000, ...o });
  assert.equal(await httpCheck(p('/healthz', { host: 'shop.example' })), { ok: true, message: 'ok' });
  assert.equal(await httpCheck(p('/bad')), { ok: false, message: 'status 500' });
  assert.equal(await httpCheck(p('/empty', { statuses: [200] })), { ok: false, message: 'status 204' });
  assert.equal(await httpCheck(p('/empty', { statuses: [204] })), { ok: true, message: 'ok' });
  assert.equal(seen[0], 'shop.example /healthz');
  assert.equal(seen[1], `127.0.0.1:${port} /bad`);
  s.close();
});
checkers('http: a server that accepts and never answers fails on the timeout', async () => {
  const socks: Array<{ destroy(): void }> = [];
  const s = createServer((c) => { socks.push(c); });
  const port = await listen(s);
  const t0 = Date.now();
  assert.equal(await httpCheck({ type: 'http', address: '127.0.0.1', port, path: '/', timeoutMs: 300 }), { ok: false, message: 'timed out after 300 ms' });
  assert.ok(Date.now() - t0 >= 290 && Date.now() - t0 < 2000);
  for (const c of socks) c.destroy();
  s.close();
});
checkers.run();

const metrics = suite('health: the agent\'s /metrics');
metrics('per real server up/down, targets, probes by result; /healthz answers', async () => {
  const { createAgentHealth } = await import('../../dataplane/health/agent-health.ts');
  const { createAgentMetrics, startAgentHttp, parseListenAddress } = await import('../../dataplane/agent/metrics.ts');
  const clock = new ManualClock();
  const health = createAgentHealth({ node: 'n1', clock, log, onChange: () => {}, checker: async (p) => (p.address === '10.0.0.1' ? { ok: true, message: 'ok' } : { ok: false, message: 'refused' }) });
  health.apply([svc('192.0.2.10', { healthCheck: hc({ successThreshold: 1 }) })]);
  await clock.advance(300);
  const http = await startAgentHttp('127.0.0.1:0', await createAgentMetrics(), health);
  try {
    const body = await (await fetch(`http://127.0.0.1:${http.port}/metrics`)).text();
    assert.match(body, 'lvs_agent_real_server_up{virtual_server="shop/web",service="TCP/192.0.2.10:80",real_server="10.0.0.1:8080"} 1');
    assert.match(body, 'lvs_agent_real_server_up{virtual_server="shop/web",service="TCP/192.0.2.10:80",real_server="10.0.0.2:8080"} 0');
    assert.match(body, 'lvs_agent_health_check_targets 2');
    assert.match(body, 'lvs_agent_health_checks_total{result="pass"} 1');
    assert.match(body, 'lvs_agent_health_checks_total{result="fail"} 1');
    assert.is((await fetch(`http://127.0.0.1:${http.port}/healthz`)).status, 200);
    assert.is((await fetch(`http://127.0.0.1:${http.port}/readyz`)).status, 200, 'ready by default (standalone)');
  } finally { await http.close(); health.close(); }
  let ready = false;
  const gated = await startAgentHttp('127.0.0.1:0', await createAgentMetrics(), createAgentHealth({ node: 'n1', clock, log, onChange: () => {}, checker: async () => ({ ok: true, message: 'ok' }) }), undefined, undefined, () => ready);
  try {
    assert.is((await fetch(`http://127.0.0.1:${gated.port}/readyz`)).status, 503, 'not synced yet');
    assert.is((await fetch(`http://127.0.0.1:${gated.port}/healthz`)).status, 200, 'alive while not ready');
    ready = true;
    assert.is((await fetch(`http://127.0.0.1:${gated.port}/readyz`)).status, 200);
  } finally { await gated.close(); }
  assert.equal(parseListenAddress(':9810'), { host: '0.0.0.0', port: 9810 });
  assert.equal(parseListenAddress('[::1]:9810'), { host: '::1', port: 9810 });
  assert.is(parseListenAddress('9810'), undefined);
});
metrics.run();
