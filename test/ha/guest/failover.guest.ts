// Guest suite of test/ha/failover.test.ts: what connection failover between two IPVS directors
// needs, on the real kernel. Both directors (d1, d2) are programmed identically by `lvs-agent
// apply` (test/ha/fixtures/ha-services.yaml: DR :8080, TUN :8081, NAT :8082, NAT+SNAT :8083 on
// VIP 192.0.2.100); the real servers are readied by `lvs-agent prepare`; the kernel's own sync
// daemons (master AND backup on each director, one syncid, eth0) copy IPVS connections across.
// Long-lived TCP streams (10 connections, a line every 20 ms, echoed) run while the test moves the
// client's neighbour entry for the VIP d1 -> d2 -> d1 ... (see ha-net.ts), and record per
// connection whether it survived and the largest gap between echoes. A control run without the
// sync daemons shows that the sync is what carries the connections.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { run } from '../../../lab/guest/netns.ts';
import { agentOk, later, timed } from '../../kernel/guest/agent/cli.ts';
import {
  counterDelta, DIRECTORS, directorMacs, haTopology, PORTS, setSync, sleep, startSyncDaemons, stopSyncDaemons, switchTo,
  SYNC_DEFAULTS, syncCounters, VIP, type SyncCounters, waitConns, type Director, type Macs, type Method, type SyncSettings,
} from './ha-net.ts';
import { startStreams, startStreamServer, stopStreamProcesses, summarize, type StreamSummary } from '../../../lab/guest/streams.ts';
import type { Topology } from '../../../lab/guest/netns.ts';

const uvuSuite = suite('ha: connection failover between two IPVS directors (sync daemons)');
const test = timed(uvuSuite);
const FIXTURES = 'test/ha/fixtures';
const CONNS = 10;
const STREAM = { host: VIP, conns: CONNS, intervalMs: 20, finalMs: 5000 };
const SWITCHES = 5; // each way
const DWELL_MS = 1000;
// Chosen: sync on state changes and then at most every 10 s per connection, instead of every 50
// incoming packets; v1 messages (timeouts and IPv6 carried).
const CHOSEN: SyncSettings = { threshold: '3 0', refreshPeriod: 10, version: 1 };
let topo: Topology | undefined;
let macs: Macs;
const rows: Array<{ run: string } & StreamSummary & { syncMs?: number }> = [];
const tuning: Array<Record<string, string | number>> = [];

uvuSuite.after(() => {
  stopStreamProcesses();
  topo?.destroy();
});

async function prepare(ns: string): Promise<void> {
  for (const mode of ['DR', 'TUN']) await agentOk(undefined, ['prepare', '--forwarding', mode, '--vip', VIP, '--netns', ns]);
}

test('topology; lvs-agent prepares rs1/rs2 (DR + TUN) and programs d1 and d2 identically', async () => {
  topo = haTopology();
  macs = directorMacs();
  const prepared = later(Promise.all([prepare('rs1'), prepare('rs2')]));
  for (const ns of ['rs1', 'rs2']) await startStreamServer(ns, [PORTS.DR, PORTS.TUN]);
  for (const ns of ['nrs1', 'nrs2']) await startStreamServer(ns, [PORTS.NAT, PORTS.SNAT]);
  await prepared;
  const applied = await Promise.all(DIRECTORS.map((d) => agentOk(d, ['apply', '-f', FIXTURES, '--state-file', `/run/lvs-agent/${d}.json`, '--announce', 'none'])));
  for (const r of applied) assert.match(r.stdout, /^4 service\(s\) from 4 VirtualServer\(s\)/);
  const tables = DIRECTORS.map((d) => run(['ip', 'netns', 'exec', d, 'ipvsadm', '-Ln']));
  assert.is(tables[0], tables[1], 'both directors hold the same IPVS table');
  for (const m of Object.keys(PORTS) as Method[]) assert.match(tables[0]!, `${VIP}:${PORTS[m]}`);
  switchTo(macs, 'd1');
});

test('sync daemons: master and backup run at once in each director (one syncid, eth0)', () => {
  setSync(SYNC_DEFAULTS);
  for (const d of DIRECTORS) {
    const status = startSyncDaemons(d);
    console.log(`# ${d} ipvsadm -L --daemon:\n${status.trim()}`);
    assert.match(status, /master sync daemon \(mcast=eth0, syncid=7,/);
    assert.match(status, /backup sync daemon \(mcast=eth0, syncid=7,/);
  }
});

/** Sync entries in `bytes` of IP datagrams: 20 + 8 B IP/UDP, message header 8 B (v1) / 4 B (v0), IPv4 entry 36 / 24 B. */
const entries = (c: SyncCounters, v: 0 | 1) => (c.outBytes - c.outPackets * (v ? 36 : 32)) / (v ? 36 : 24);

/**
 * Streams through d1 only, no switch. Set-up: from before the streams until d2 holds them all
 * plus 2.5 s (the master sends a partly filled buffer after ~2 s); steady: the next `windowMs`.
 */
async function measureSync(label: string, s: SyncSettings, windowMs: number): Promise<void> {
  setSync(s);
  await sleep(2500); // whatever the previous settings left in the master's buffer goes out now
  const t0 = { d1: syncCounters('d1'), d2: syncCounters('d2') };
  const streams = await startStreams('client', { ...STREAM, port: PORTS.DR });
  const syncMs = (await waitConns('d2', PORTS.DR, streams.ports, 20_000)).ms;
  await sleep(2500);
  const t1 = syncCounters('d1');
  await sleep(windowMs);
  const setup = counterDelta(t0.d1, t1);
  const steady = counterDelta(t1, syncCounters('d1'));
  const d1 = counterDelta(t0.d1, syncCounters('d1'));
  // A datagram d1 counted at output may still be on its way into d2 on a loaded host: up to 3 s.
  let d2 = counterDelta(t0.d2, syncCounters('d2'));
  for (let i = 0; i < 10 && d2.inPackets < d1.outPackets; i++) { await sleep(300); d2 = counterDelta(t0.d2, syncCounters('d2')); }
  await streams.stop();
  tuning.push({
    settings: label, toBackupMs: syncMs ?? -1, setupPkts: setup.outPackets, setupEntries: entries(setup, s.version),
    [`steady${windowMs / 1000}sPkts`]: steady.outPackets, [`steady${windowMs / 1000}sEntries`]: entries(steady, s.version),
    d1SentPkts: d1.outPackets, d2RecvPkts: d2.inPackets, d1RecvPkts: d1.inPackets,
  });
  assert.ok(syncMs !== undefined, `${label}: d2 never held all ${CONNS} connections`);
  assert.ok(setup.outPackets > 0, `${label}: d1's master sent nothing`);
  assert.ok(d2.inPackets >= d1.outPackets, `${label}: d2's backup received ${d2.inPackets} of the ${d1.outPackets} datagrams d1's master sent`);
  assert.is(d1.inPackets, 0, `${label}: d1 must not receive its own master's multicast (d2 forwarded nothing)`);
}

test('sync sysctls: defaults vs v0 vs chosen (sync traffic of 10 DR streams through d1: set-up, then 5 s steady)', async () => {
  await measureSync('v1, threshold 3 50, refresh 0 (defaults)', SYNC_DEFAULTS, 5000);
  await measureSync('v0, threshold 3 50, refresh 0', { ...SYNC_DEFAULTS, version: 0 }, 5000);
  await measureSync('v1, threshold 3 0, refresh 10 s (chosen)', CHOSEN, 5000);
  console.log('# sync tuning (d1 active; sync UDP datagrams counted by nft on both directors):');
  console.table(tuning);
  setSync(CHOSEN);
});

/** Whether d2 held this run's connections when the switching began: the ms it took, or why not. */
const syncNote = (s: StreamSummary & { syncMs?: number; others: number }) =>
  `d2 held all ${CONNS} after ${s.syncMs ?? 'never'} ms; up to ${s.others} entries of earlier connections meanwhile`;

async function failover(label: string, method: Method, switches: number, syncWaitMs = 30_000): Promise<StreamSummary & { syncMs?: number; others: number }> {
  switchTo(macs, 'd1');
  const streams = await startStreams('client', { ...STREAM, port: PORTS[method] });
  const synced = await waitConns('d2', PORTS[method], streams.ports, syncWaitMs);
  const syncMs = synced.ms;
  streams.mark();
  for (let i = 0; i < switches; i++) {
    for (const d of ['d2', 'd1'] as Director[]) { switchTo(macs, d); await sleep(DWELL_MS); }
  }
  if (switches === 0) { switchTo(macs, 'd2'); await sleep(2 * DWELL_MS); }
  const s = summarize(await streams.stop());
  switchTo(macs, 'd1');
  rows.push({ run: label, ...s, ...(syncMs !== undefined ? { syncMs } : {}) });
  const out = { ...s, ...(syncMs !== undefined ? { syncMs } : {}), others: synced.others };
  console.log(`# ${label}: ${JSON.stringify(s)}; ${syncNote(out)}`);
  return out;
}

for (const method of ['DR', 'TUN'] as const) {
  test(`${method}: with sync, every established stream survives ${SWITCHES} switches d1->d2 and ${SWITCHES} back`, async () => {
    const s = await failover(`${method} sync`, method, SWITCHES);
    assert.is(s.established, CONNS);
    assert.is(s.survived, CONNS, `survived ${s.survived}/${s.established}; errors ${s.errors.join(', ')}; ${syncNote(s)}`);
  });
}

/** net.ipv4.vs.conntrack (the agent sets 1 when the node has a SNAT service) and conntrack's TCP window check. */
function conntrack(vs: 0 | 1, liberal: 0 | 1): void {
  for (const d of DIRECTORS) run(['ip', 'netns', 'exec', d, 'sysctl', '-qw', `net.ipv4.vs.conntrack=${vs}`, `net.netfilter.nf_conntrack_tcp_be_liberal=${liberal}`]);
}

test('NAT, vs.conntrack=1 (as the agent sets it beside a SNAT service): fail-back to d1 resets the streams', async () => {
  // d1's conntrack entry saw the handshake, so it checks TCP windows; after d2 carried the stream,
  // the client's ACKs cover reply data d1 never saw: INVALID, a new conntrack entry whose reply
  // tuple clashes, a remapped source port, and the real server answers that port with a RST.
  conntrack(1, 0);
  const s = await failover('NAT sync, vs.conntrack=1', 'NAT', SWITCHES);
  assert.is(s.established, CONNS);
  assert.ok(s.survived < CONNS, `expected resets, ${s.survived}/${CONNS} survived`);
});

test(`NAT with sync, vs.conntrack=0 (the agent's setting without SNAT services): every stream survives ${SWITCHES} switches each way`, async () => {
  conntrack(0, 0);
  const s = await failover('NAT sync, vs.conntrack=0', 'NAT', SWITCHES);
  assert.is(s.established, CONNS);
  assert.is(s.survived, CONNS, `survived ${s.survived}/${s.established}; errors ${s.errors.join(', ')}`);
});

test('NAT with sync, vs.conntrack=1 + nf_conntrack_tcp_be_liberal=1: measured only', async () => {
  // Not asserted: 4/4 (one round trip, exploratory boot), 10/10 and 0/10 (two runs of this
  // suite) survived; docs/ha-kernel-facts.md keeps it as an open question.
  conntrack(1, 1);
  const s = await failover('NAT sync, vs.conntrack=1 + be_liberal', 'NAT', SWITCHES);
  assert.is(s.established, CONNS);
});

test('NAT with returnPath SNAT (tcp_be_liberal on): IPVS sync does not carry the masquerade binding', async () => {
  const s = await failover('SNAT sync, tcp_be_liberal', 'SNAT', SWITCHES);
  assert.is(s.established, CONNS);
  assert.ok(s.survived < CONNS, `expected resets, ${s.survived}/${CONNS} survived`);
});

test('control: without sync daemons, DR, TUN and NAT streams do not survive one switch d1->d2', async () => {
  for (const d of DIRECTORS) console.log(`# ${d} after stop:\n${stopSyncDaemons(d).trim() || '(no daemon)'}`);
  for (const method of ['DR', 'TUN', 'NAT'] as const) {
    const s = await failover(`${method} no sync`, method, 0, 15_000);
    assert.is(s.established, CONNS);
    assert.is(s.survived, 0, `${method}: ${s.survived} survived without sync`);
  }
});

test('results table', () => {
  console.log(`# kernel ${run(['uname', '-r']).trim()}; ${CONNS} streams x 1 line / ${STREAM.intervalMs} ms; dwell ${DWELL_MS} ms per switch`);
  console.table(rows.map((r) => ({ run: r.run, established: r.established, survived: r.survived, '%': r.survivedPct, maxGapMs: r.maxGapMs, toBackupMs: r.syncMs ?? '-', errors: r.errors.join(' ') })));
});

uvuSuite.run();
