// Guest suite of test/ha/failover.test.ts: two standalone directors elect their announcer
// (issue 15: keepalived's classic two-director setup, done by lvs-agent). d1 and d2 run
// `lvs-agent apply --watch` with the same manifests (DR :8080, TUN :8081 on VIP 192.0.2.100) and
// each other as --peer; nobody touches the client's neighbour table. Long-lived TCP streams run
// while the active director fails — link down (the node gone from the network), its agent
// SIGKILLed, the directors partitioned from each other — and comes back; each failover's
// client-visible gap and takeover time are measured, and every established stream must survive.
import { writeFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { nsRun, run, type Topology } from '../../../lab/guest/netns.ts';
import { startAgent, timed, type AgentProcess } from '../../kernel/guest/agent/cli.ts';
import { DIRECTORS, directorMacs, haTopology, sleep, VIP, type Director, type Macs } from './ha-net.ts';
import type { StreamRun } from '../../../lab/guest/streams.ts';
import { announcers, clientMac, failover as failoverAt, linkCycle, prepareRealServers, reportStreams, sole, startSyncedStreams, teardown, until, type FailoverEvent } from './watch.ts';

const uvuSuite = suite('ha: two lvs-agent directors elect their announcer; streams survive failovers');
const test = timed(uvuSuite);
const PORTS = { DR: 8080, TUN: 8081 } as const;
const MANIFEST = '/run/tmp/ha-election.yaml';
const KEY = '/run/tmp/ha-peer.key';
const ADDR: Record<Director, string> = { d1: '192.0.2.2', d2: '192.0.2.3' };
const CYCLES = Number(process.env.LVS_HA_CYCLES ?? 10); // link down + up: 2 failovers each
/**
 * Heartbeat every 200 ms, dead after 1 s: under TCG a guest process stalls for hundreds of ms at a
 * time, and the defaults (100 / 350 ms, meant for real hardware) made the two agents drop each
 * other every second or two with nothing failing (measured: docs/ha.md).
 */
const TIMING = ['--peer-interval-ms', '200', '--peer-dead-ms', '1000'];
let topo: Topology | undefined;
let macs: Macs;
const agents = new Map<Director, AgentProcess>();
const streams: Partial<Record<keyof typeof PORTS, StreamRun>> = {};
const events: FailoverEvent[] = [];
const failover = (what: string, to: Director, act: () => void, ms?: number) => failoverAt(events, macs, what, to, act, ms);

uvuSuite.after(() => teardown(agents, topo));

const vs = (name: string, port: number, forwarding: string) => `apiVersion: lvs.dev/v1alpha1
kind: VirtualServer
metadata: {name: ${name}}
spec:
  addresses: [${VIP}]
  ports: [{name: stream, port: ${port}, protocol: TCP}]
  forwarding: ${forwarding}
  scheduler: {name: rr}
  backends: {static: [{address: 192.0.2.21}, {address: 192.0.2.22}]}
`;

function startDirector(d: Director): AgentProcess {
  const other = DIRECTORS.find((x) => x !== d)!;
  const a = startAgent(d, [
    'apply', '--watch', '-f', MANIFEST, '--state-file', `/run/lvs-agent/${d}-ha.json`, '--node-name', d,
    '--peer', `${ADDR[other]}:7480`, '--peer-listen', `${ADDR[d]}:7480`, '--peer-key-file', KEY,
    '--sync-interface', 'eth0', '--sync-id', '9', '--peer-warmup-ms', '2000', ...TIMING,
  ]);
  agents.set(d, a);
  return a;
}

test('topology; real servers prepared; two agents with the same manifests elect exactly one announcer', async () => {
  topo = haTopology();
  macs = directorMacs();
  writeFileSync(MANIFEST, vs('el-dr', PORTS.DR, 'DR') + '---\n' + vs('el-tun', PORTS.TUN, 'TUN'));
  writeFileSync(KEY, 'a shared secret of the two directors, 32+ bytes\n');
  await prepareRealServers([PORTS.DR, PORTS.TUN]);
  for (const d of DIRECTORS) startDirector(d);
  // Settled: each agent has seen the other eligible (both warmed up), then one announcer.
  for (const a of agents.values()) await a.waitForStderr((e) => e.includes('"members":["d1","d2"]'), 240_000);
  const active = await until('exactly one director announces', sole, 30_000, 200);
  // --sync-interface: the agent set the connection-sync sysctls it chose (dataplane/director/plan.ts
  // CONNECTION_SYNC_SYSCTLS; the kernel's defaults are "3 50", 0).
  for (const d of DIRECTORS) {
    const got = nsRun(d, ['sysctl', '-n', 'net.ipv4.vs.sync_threshold', 'net.ipv4.vs.sync_refresh_period', 'net.ipv4.vs.sync_version']).split('\n').map((l) => l.replace(/\s+/g, ' ').trim());
    assert.equal(got.slice(0, 3), ['3 0', '10', '1'], `${d}: connection-sync sysctls`);
  }
  Object.assign(streams, await startSyncedStreams(PORTS, active, 10));
});

test(`${CYCLES} times: the active director's link goes down (the other takes over) and comes back (it takes back)`, async () => {
  for (let i = 0; i < CYCLES; i++) await linkCycle(events, macs);
});

test('SIGKILL of the active agent: the other takes over; restarted, it waits its warm-up, then takes back', async () => {
  const a = await until('one announcer', sole, 10_000);
  const b = DIRECTORS.find((d) => d !== a)!;
  await failover(`agent SIGKILL ${a}`, b, () => void agents.get(a)!.kill('SIGKILL'));
  // Known limit (docs/ha.md): the dead agent's kernel keeps the state it last set, so ${a} still
  // answers ARP for the VIP until its agent is back; ${b}'s gratuitous ARP has moved the client.
  console.log(`\n# after SIGKILL of ${a}: announcing ${announcers().join(' and ')}; client at ${clientMac() === macs.lan[b] ? b : a}`);
  assert.is(clientMac(), macs.lan[b]);
  await sleep(1000);
  await failover(`agent restart ${a}`, a, () => void startDirector(a), 120_000);
  await until('one announcer again', sole, 10_000);
});

test('directors partitioned from each other (not from the client): both announce, and one again after healing', async () => {
  const a = await until('one announcer', sole, 10_000);
  const b = DIRECTORS.find((d) => d !== a)!;
  const block = 'add table inet hapart\nadd chain inet hapart in { type filter hook input priority -10; }\nadd rule inet hapart in udp dport 7480 drop\n';
  // Both directions: each sees the other die and announces alone (an asymmetric cut is not a split:
  // the side that still hears the other defers to it).
  await failover(`partition (${a} and ${b} stop hearing each other)`, b, () => { for (const d of DIRECTORS) run(['ip', 'netns', 'exec', d, 'nft', '-f', '-'], { input: block }); });
  assert.equal(announcers().sort(), [...DIRECTORS].sort(), 'both announce while partitioned');
  await sleep(1000);
  const healed = Date.now();
  for (const d of DIRECTORS) nsRun(d, ['nft', 'delete', 'table', 'inet', 'hapart']);
  const ms = await until('one announcer after healing', () => (sole() ? Date.now() - healed : undefined), 10_000);
  console.log(`\n# partition healed: one announcer again after ${ms} ms`);
  assert.ok(ms < 10_000, `duplicate announcement lasted ${ms} ms after healing`);
  // ${a} never stopped announcing and saw no change, so nothing but its periodic announcement
  // (every 10 s) moves the client back from ${b}, which still forwards meanwhile.
  const back = await until(`client's entry back at ${a}`, () => (clientMac() === macs.lan[a] ? Date.now() - healed : undefined), 15_000, 100);
  console.log(`\n# client back at ${a} ${back} ms after healing (periodic announcement)`);
});

test('every established DR and TUN stream survived every failover; gaps and takeover times', async () => {
  await reportStreams(streams, events, 10);
  assert.ok(events.length >= 2 * CYCLES + 3);
});

uvuSuite.run();
