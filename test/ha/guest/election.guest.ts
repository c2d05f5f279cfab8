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
import { agentOk, startAgent, timed, type AgentProcess } from '../../kernel/guest/agent/cli.ts';
import { DIRECTORS, directorMacs, haTopology, sleep, VIP, waitConns, type Director, type Macs } from './ha-net.ts';
import { startStreams, startStreamServer, stopStreamProcesses, summarize, type StreamRun } from './streams.ts';
import type { StreamConn } from '../../../lab/guest/stream.ts';

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
/** A line per connection every 100 ms: 20 connections at 20 ms saturated the emulated guest. */
const STREAM_INTERVAL_MS = 100;
let topo: Topology | undefined;
let macs: Macs;
const agents = new Map<Director, AgentProcess>();
const streams: Partial<Record<keyof typeof PORTS, StreamRun>> = {};
/** Per failover: what happened, when it started (wall ms), takeover ms (new announcer seen), client moved ms. */
const events: Array<{ what: string; at: number; takeoverMs: number; clientMs: number }> = [];

uvuSuite.after(async () => {
  for (const [d, a] of agents) {
    const lines = a.stderr().split('\n');
    const tail = lines.filter((l) => /"level":(40|50)|membership|announce|daemon|firstSync/.test(l)).slice(0, 60).map((l) => `#   ${l.slice(0, 300)}`);
    console.log(`\n# ${d} agent: ${lines.length} log lines; warnings, membership, daemons and announcements (last 25):\n${tail.join('\n')}\n# stdout tail: ${a.stdout().split('\n').slice(-3).join(' | ')}`);
    await a.kill('SIGKILL');
  }
  stopStreamProcesses();
  topo?.destroy();
});

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

/**
 * Directors answering ARP for the VIP now: those holding it on lvs0 whose arp table drops no
 * request for it. One process for both (every spawn is costly under TCG, and polling must not
 * starve the agents it measures).
 */
function announcers(): Director[] {
  const script = DIRECTORS.map((d) => `echo "== ${d}"; ip netns exec ${d} sh -c 'ip -br addr show dev lvs0 2>/dev/null; nft list table arp lvs_operator 2>/dev/null'; true`).join('\n');
  const parts = run(['sh', '-c', script]).split(/^== /m).slice(1);
  return DIRECTORS.filter((d, i) => {
    const t = parts[i] ?? '';
    return t.startsWith(d) && t.includes(`${VIP}/32`) && !t.includes(`arp daddr ip ${VIP} drop`);
  });
}

function clientMac(): string {
  return (JSON.parse(nsRun('client', ['ip', '-j', 'neigh', 'show', VIP])) as Array<{ lladdr?: string }>)[0]?.lladdr ?? '';
}

async function until<T>(what: string, probe: () => T | undefined, ms: number, everyMs = 20): Promise<T> {
  for (const end = Date.now() + ms; ; await sleep(everyMs)) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
  }
}

/** What both directors hold now, for a failure's message. */
function diag(): string {
  return run(['sh', '-c', DIRECTORS.map((d) => `echo "== ${d}"; ip netns exec ${d} sh -c 'ipvsadm -L --daemon; ipvsadm -Lnc | grep -c ESTABLISHED; nft list table inet hasync | grep counter'`).join('\n') + '\nip -n client neigh show'])
    .split('\n').map((l) => `#   ${l}`).join('\n');
}

const sole = () => { const a = announcers(); return a.length === 1 ? a[0] : undefined; };

/** Runs `act`, then measures until `to` alone announces and the client's entry points at it. */
async function failover(what: string, to: Director, act: () => void, ms = 15_000): Promise<void> {
  const at = Date.now();
  act();
  const takeoverMs = await until(`${to} announces ${VIP} (${what})`, () => (announcers().includes(to) ? Date.now() - at : undefined), ms);
  const clientMs = await until(`client's entry for ${VIP} is ${to}'s MAC (${what})`, () => (clientMac() === macs.lan[to] ? Date.now() - at : undefined), ms);
  events.push({ what, at, takeoverMs, clientMs });
}

test('topology; real servers prepared; two agents with the same manifests elect exactly one announcer', async () => {
  topo = haTopology();
  macs = directorMacs();
  writeFileSync(MANIFEST, vs('el-dr', PORTS.DR, 'DR') + '---\n' + vs('el-tun', PORTS.TUN, 'TUN'));
  writeFileSync(KEY, 'a shared secret of the two directors, 32+ bytes\n');
  for (const ns of ['rs1', 'rs2']) {
    for (const mode of ['DR', 'TUN']) await agentOk(undefined, ['prepare', '--forwarding', mode, '--vip', VIP, '--netns', ns]);
    await startStreamServer(ns, [PORTS.DR, PORTS.TUN]);
  }
  for (const d of DIRECTORS) startDirector(d);
  // Settled: each agent has seen the other eligible (both warmed up), then one announcer.
  for (const a of agents.values()) await a.waitForStderr((e) => e.includes('"members":["d1","d2"]'), 240_000);
  const active = await until('exactly one director announces', sole, 30_000, 200);
  // The client finds the VIP by ARP (nothing static): the active director answers.
  for (const [m, port] of Object.entries(PORTS)) streams[m as keyof typeof PORTS] = await startStreams('client', { host: VIP, port, conns: 10, intervalMs: STREAM_INTERVAL_MS, finalMs: 5000 });
  assert.is(clientMac(), macs.lan[active]);
  const where = () => run(['sh', '-c', [
    ...['rs1', 'rs2'].map((ns) => `echo "${ns}: $(ip netns exec ${ns} ss -Htn state established | wc -l) established"`),
    ...DIRECTORS.map((d) => `echo "${d}:"; ip netns exec ${d} ipvsadm -Lnc | sort | uniq -c | head -30`),
  ].join('\n')]).split('\n').map((l) => `#   ${l}`).join('\n');
  if (Object.values(streams).some((s) => s!.established !== 10)) {
    assert.unreachable(`streams established: ${Object.entries(streams).map(([m, s]) => `${m} ${s!.established}`).join(', ')} (of 10 each); active ${active}\n${where()}\n${diag()}`);
  }
  for (const d of DIRECTORS) nsRun(d, ['ipvsadm', '-L', '--daemon']).includes('backup') || assert.unreachable(`${d} runs no backup sync daemon`);
  const standby = DIRECTORS.find((d) => d !== active)!;
  for (const port of Object.values(PORTS)) {
    if (await waitConns(standby, port, 10, 30_000) === undefined) assert.unreachable(`${standby} did not get the connections to :${port} by sync in 30 s:\n${diag()}`);
  }
  for (const s of Object.values(streams)) s!.mark();
  console.log(`\n# active ${active}, standby ${standby}: streams established and synced`);
});

test(`${CYCLES} times: the active director's link goes down (the other takes over) and comes back (it takes back)`, async () => {
  for (let i = 0; i < CYCLES; i++) {
    const a = sole() ?? await until('one announcer', sole, 10_000);
    const b = DIRECTORS.find((d) => d !== a)!;
    await failover(`link down ${a}`, b, () => nsRun(a, ['ip', 'link', 'set', 'eth0', 'down']));
    await sleep(1000);
    // Back: the preferred director (the rendezvous hash) takes the VIP back at once.
    await failover(`link up ${a}`, a, () => nsRun(a, ['ip', 'link', 'set', 'eth0', 'up']));
    await until('one announcer again', sole, 10_000);
    await sleep(1000);
  }
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

function gapOf(conns: StreamConn[], at: number, next: number): number {
  // The longest gap that ended between this failover and the next.
  return Math.max(0, ...conns.flatMap((c) => (c.gaps ?? []).filter(([end]) => end > at && end <= next).map(([, g]) => g)));
}

test('every established DR and TUN stream survived every failover; gaps and takeover times', async () => {
  const results = Object.fromEntries(await Promise.all(Object.entries(streams).map(async ([m, s]) => [m, await s!.stop()] as const)));
  const lines: string[] = [];
  const pct = (xs: number[], p: number) => [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)]!;
  const summaries = Object.entries(results).map(([m, conns]) => {
    const s = summarize(conns);
    const gaps = events.map((e, i) => gapOf(conns, e.at, events[i + 1]?.at ?? Infinity));
    lines.push(`${m}: ${s.survived}/${s.established} survived; per-failover gap ms p50 ${pct(gaps, 50)} p99 ${pct(gaps, 99)} max ${Math.max(...gaps)}; errors ${s.errors.join(',') || 'none'}`);
    return [m, s] as const;
  });
  const take = events.map((e) => e.takeoverMs), client = events.map((e) => e.clientMs);
  lines.push(`${events.length} failovers: takeover ms p50 ${pct(take, 50)} p99 ${pct(take, 99)} max ${Math.max(...take)}; client moved ms p50 ${pct(client, 50)} p99 ${pct(client, 99)}`);
  for (const e of events) lines.push(`  ${e.what}: takeover ${e.takeoverMs} ms, client moved ${e.clientMs} ms`);
  console.log(`\n${lines.map((l) => `# ${l}`).join('\n')}`);
  for (const [m, s] of summaries) {
    assert.is(s.established, 10, m);
    assert.is(s.survived, s.established, `${m}: ${JSON.stringify(s)}`);
  }
  assert.ok(events.length >= 2 * CYCLES + 3);
});

uvuSuite.run();
