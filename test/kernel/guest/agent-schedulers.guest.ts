// Guest suite of test/kernel/agent.test.ts: every IPVS scheduler through `lvs-agent apply`
// (test/kernel/fixtures/agent-schedulers/schedulers.yaml: one VirtualServer per scheduler on VIP
// 203.0.113.50, three NAT real servers), each one answering real connections; then the
// distributions that define rr, wrr and sh, and persistence with its kernel template.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { listIpvs } from '../../../lab/guest/ipvsadm.ts';
import { nsRun } from '../../../lab/guest/netns.ts';
import { runClient, stopServers, type ClientResult } from '../../../lab/guest/traffic.ts';
import { agent, later, opLines, timed, type AgentRun } from './agent/cli.ts';
import { describeViews, readViews, rowsFromIpvsadm, rowsFromShow } from './agent/compare.ts';
import { agentTopology, burst, CLIENT, CONNECT_TIMEOUT_MS, parseConnections, parsePersistentConns, startServerPatiently, type AgentTopology } from '../../../lab/guest/agent-net.ts';

const uvuSuite = suite('lvs-agent schedulers: every one accepted, rr/wrr/sh distributions, persistence');
const test = timed(uvuSuite);
const STATE = '/run/lvs-agent/director-schedulers.json';
const VIP = '203.0.113.50';
const RS = ['172.16.0.2', '172.16.0.3', '172.16.0.4'];
/** The fixture's services: port → scheduler and the flags ipvsadm prints after it. */
const SCHEDULERS: Array<{ port: number; scheduler: string; flags: string }> = [
  { port: 1001, scheduler: 'rr', flags: '' }, { port: 1002, scheduler: 'wrr', flags: '' },
  { port: 1003, scheduler: 'lc', flags: '' }, { port: 1004, scheduler: 'wlc', flags: '' },
  { port: 1005, scheduler: 'lblc', flags: '' }, { port: 1006, scheduler: 'lblcr', flags: '' },
  { port: 1007, scheduler: 'dh', flags: '' }, { port: 1008, scheduler: 'sh', flags: '' },
  { port: 1009, scheduler: 'sh', flags: '(sh-fallback,sh-port)' }, { port: 1010, scheduler: 'sed', flags: '' },
  { port: 1011, scheduler: 'nq', flags: '' }, { port: 1012, scheduler: 'mh', flags: '(mh-fallback,mh-port)' },
  { port: 1013, scheduler: 'mh', flags: '' }, { port: 1014, scheduler: 'fo', flags: '' },
  { port: 1015, scheduler: 'ovf', flags: '' }, { port: 1020, scheduler: 'rr', flags: 'persistent 300' },
];
const PORTS = SCHEDULERS.map((s) => s.port);
let topo: AgentTopology | undefined;
const results: Record<string, ClientResult> = {};
let shMulti: string[] = [];

uvuSuite.after(async () => {
  await stopServers();
  topo?.destroy();
});

let applying: Promise<AgentRun> | undefined;

test('topology and three identity servers listening on every port of the fixture; apply runs meanwhile', async () => {
  topo = agentTopology({ gateways: 3, clientSources: 12 });
  // Programming the director needs no server: let the agent use the second CPU meanwhile.
  applying = later(agent('director', ['apply', '-f', 'test/kernel/fixtures/agent-schedulers', '--state-file', STATE]));
  // One at a time: Node processes starting together on two emulated CPUs are slow to get ready.
  for (const rs of topo.gateways) await startServerPatiently(rs.ns, { id: rs.ns, tcp: PORTS });
});

test('apply: the kernel accepts all 16 services, every scheduler and its flags, through the agent', async () => {
  const r = await applying!;
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stdout.trim(), '16 service(s) from 16 VirtualServer(s); 64 kernel operation(s)');
  assert.is(opLines(r.stderr).length, 64);
  const byPort = new Map(listIpvs('director').map((s) => [Number(s.address.split(':')[1]), s]));
  assert.equal([...byPort.keys()].sort(), PORTS);
  for (const want of SCHEDULERS) {
    const got = byPort.get(want.port)!;
    assert.is(got.scheduler, want.scheduler, `port ${want.port}`);
    // ipvsadm prints the sh/mh flags in parentheses and "persistent N" after the scheduler name.
    assert.is(got.flags, want.flags, `port ${want.port}`);
    assert.equal(got.dests.map((d) => d.address), RS.map((a) => `${a}:${want.port}`), `port ${want.port}`);
  }
  assert.equal(byPort.get(1002)!.dests.map((d) => d.weight), [1, 2, 3]);
});

test('every scheduler answers a real connection; show --json agrees with ipvsadm -Ln meanwhile', async () => {
  const views = later(readViews('director', STATE));
  const replies = burst('client', PORTS.map((port) => ({ host: VIP, port })));
  replies.forEach((line, i) => {
    assert.match(line, /^\{"id":"rs[123]"/, `port ${PORTS[i]}: ${JSON.stringify(line)}`);
    assert.match(line, new RegExp(`"local":"172\\.16\\.0\\.[234]:${PORTS[i]}"`));
  });
  const v = await views;
  assert.equal(rowsFromShow(v.show), rowsFromIpvsadm(v.ipvsadm), describeViews(v));
  assert.is(v.ours.length, 16);
});

test('distributions: traffic for rr, wrr, sh (one source and twelve) and persistence', async () => {
  const jobs: Record<string, Promise<ClientResult>> = {
    rr: runClient('client', { host: VIP, port: 1001, count: 60, concurrency: 4, timeoutMs: CONNECT_TIMEOUT_MS }),
    wrr: runClient('client', { host: VIP, port: 1002, count: 60, concurrency: 4, timeoutMs: CONNECT_TIMEOUT_MS }),
    sh: runClient('client', { host: VIP, port: 1008, count: 20, timeoutMs: CONNECT_TIMEOUT_MS }),
    persistA: runClient('client', { host: VIP, port: 1020, count: 20, timeoutMs: CONNECT_TIMEOUT_MS }),
    persistB: runClient('client', { host: VIP, port: 1020, count: 20, bind: '192.0.2.100', timeoutMs: CONNECT_TIMEOUT_MS }),
  };
  // Twelve other sources, each twice (in two passes), through one bash process.
  const sources = topo!.clientSources;
  shMulti = burst('client', [...sources, ...sources].map((bind) => ({ host: VIP, port: 1008, bind })));
  for (const [name, job] of Object.entries(jobs)) results[name] = await job;
  for (const [name, r] of Object.entries(results)) assert.is(r.errors, 0, `${name}: ${r.firstError}`);
});

test('rr spreads 60 connections evenly: 20 each', () => {
  assert.equal(results.rr!.byId, { rs1: 20, rs2: 20, rs3: 20 });
});

test('wrr follows the weights 1:2:3: 10/20/30', () => {
  assert.equal(results.wrr!.byId, { rs1: 10, rs2: 20, rs3: 30 });
});

test('sh: one client always lands on one server; different sources spread over several', () => {
  assert.is(Object.keys(results.sh!.byId).length, 1, JSON.stringify(results.sh!.byId));
  const ids = shMulti.map((l) => (JSON.parse(l || '{}') as { id?: string }).id);
  const n = topo!.clientSources.length;
  for (let i = 0; i < n; i++) {
    assert.ok(ids[i], `source ${topo!.clientSources[i]} got no answer`);
    assert.is(ids[i + n], ids[i], `source ${topo!.clientSources[i]} moved between servers`);
  }
  assert.ok(new Set(ids).size >= 2, `12 sources all hashed to ${ids[0]}`);
});

test('persistence: each client sticks to one server despite rr, and ipvsadm shows its template', () => {
  const a = results.persistA!.byId, b = results.persistB!.byId;
  assert.is(Object.keys(a).length, 1, JSON.stringify(a));
  assert.is(Object.keys(b).length, 1, JSON.stringify(b));
  // rr hands the second client's template to the next server.
  assert.is.not(Object.keys(a)[0], Object.keys(b)[0]);
  const addrOf = (id: string) => RS[Number(id.slice(2)) - 1];
  const table = nsRun('director', ['ipvsadm', '-Lnc']);
  // A persistence template is the entry with client port 0 (state NONE, ASSURED once it has
  // been used for a connection).
  const templates = parseConnections(table).filter((c) => c.source.endsWith(':0') && c.virtual === `${VIP}:1020`);
  assert.equal(templates.map((t) => [t.source, t.destination]).sort(), [
    [`${CLIENT}:0`, `${addrOf(Object.keys(a)[0]!)}:1020`],
    ['192.0.2.100:0', `${addrOf(Object.keys(b)[0]!)}:1020`],
  ].sort(), table.split('\n').filter((l) => /:0\s/.test(l)).join('\n'));
  const persist = parsePersistentConns(nsRun('director', ['ipvsadm', '-Ln', '--persistent-conn']));
  const perDest = RS.map((a) => persist[`TCP ${VIP}:1020 -> ${a}:1020`]);
  assert.equal(perDest.slice().sort(), [0, 1, 1]);
});

uvuSuite.run();
