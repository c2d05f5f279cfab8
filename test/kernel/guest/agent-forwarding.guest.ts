// Guest suite of test/kernel/agent.test.ts: `lvs-agent` programs a real director namespace
// from manifests — examples/nat-seeds.yaml verbatim plus test/kernel/fixtures/agent-forwarding/
// (UDP, NAT with SNAT return path, DR, TUN) — and real TCP/UDP traffic from a client namespace
// must reach the real servers by every forwarding method, with the behaviour each method implies
// (port mapping, source NAT, direct return). See ./agent/net.ts for the topology.
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import { parseDocument } from 'yaml';
import * as assert from 'uvu/assert';
import { listIpvs } from '../../../lab/guest/ipvsadm.ts';
import { nsRun, nsSh } from '../../../lab/guest/netns.ts';
import { runClient, stopServers, type ClientResult } from '../../../lab/guest/traffic.ts';
import { agent, agentOk, later, opLines, timed } from './agent/cli.ts';
import { describeViews, readViews, rowsFromIpvsadm, rowsFromShow } from './agent/compare.ts';
import { agentTopology, CLIENT, CONNECT_TIMEOUT_MS, DIRECTOR_BACK, settledStats, startServerPatiently, type AgentTopology } from '../../../lab/guest/agent-net.ts';

const uvuSuite = suite('lvs-agent forwarding: NAT (seeds), SNAT, UDP, DR, TUN with real traffic');
const test = timed(uvuSuite);
const STATE = '/run/lvs-agent/director-forwarding.json';
const SEEDS_VIP = '203.0.113.5', SNAT_VIP = '203.0.113.6', DR_VIP = '198.51.100.12', TUN_VIP = '203.0.113.20';
const FIXTURES = 'test/kernel/fixtures/agent-forwarding';
const MANIFESTS = ['-f', 'examples/nat-seeds.yaml', '-f', FIXTURES];
let topo: AgentTopology | undefined;
const traffic: Record<string, ClientResult> = {};

uvuSuite.after(async () => {
  await stopServers();
  topo?.destroy();
});

/** `lvs-agent prepare` of one real server, DR then TUN (never two at once on one namespace). */
async function prepareChain(ns: string): Promise<string[]> {
  const dr = await agentOk(undefined, ['prepare', '--forwarding', 'DR', '--vip', DR_VIP, '--netns', ns]);
  const tun = await agentOk(undefined, ['prepare', '--forwarding', 'TUN', '--vip', TUN_VIP, '--netns', ns]);
  return [dr.stdout.trim(), tun.stdout.trim()];
}
let preparing: Promise<string[][]> | undefined;

test('topology and identity servers (RS2 listens on 8000 and 21 only, never on 80); prepare runs meanwhile', async () => {
  topo = agentTopology({ gateways: 2, snat: true, direct: 2 });
  // The agent's preparation of dsr1 and dsr2 needs no server: let it use the second CPU meanwhile.
  preparing = later(Promise.all([prepareChain('dsr1'), prepareChain('dsr2')])); // checked by the next test
  // Servers one at a time: Node processes starting together on two emulated CPUs can miss the
  // shared lib's 30 s readiness limit on a loaded host.
  await startServerPatiently('rs1', { id: 'rs1', tcp: [80], udp: [53] });
  await startServerPatiently('rs2', { id: 'rs2', tcp: [8000, 21], udp: [53] });
  await startServerPatiently('rsnat', { id: 'rsnat', tcp: [80] });
  await startServerPatiently('dsr1', { id: 'dsr1', tcp: [8088, 80] });
  await startServerPatiently('dsr2', { id: 'dsr2', tcp: [8088, 80] });
  assert.is(nsSh('rs2', "ss -Hltn 'sport = :80' | wc -l").trim(), '0');
});

test('lvs-agent prepare readied dsr1 and dsr2 for DR and then TUN, each in its own namespace', async () => {
  const outputs = await preparing!;
  for (const [i, ns] of ['dsr1', 'dsr2'].entries()) {
    const [dr = '', tun = ''] = outputs[i]!;
    assert.match(dr, new RegExp(`^netns:${ns}: \\d+ change\\(s\\); prepared for ${DR_VIP} \\(DR\\)$`));
    assert.match(tun, new RegExp(`^netns:${ns}: \\d+ change\\(s\\); prepared for ${DR_VIP} \\(DR\\), ${TUN_VIP} \\(TUN\\)$`));
    // The VIPs are local where each method delivers them: lo for DR, tunl0 (up) for TUN.
    const addrs = nsSh(ns, 'ip -br -4 addr show dev lo; ip -br -4 addr show dev tunl0');
    assert.match(addrs, new RegExp(`^lo\\s+UNKNOWN\\s.*${DR_VIP}/32`, 'm'));
    assert.match(addrs, new RegExp(`^tunl0@NONE\\s+(UP|UNKNOWN)\\s.*${TUN_VIP}/32`, 'm'));
  }
});

test('apply programs all six services (16 kernel operations) from the seeds example and the fixtures', async () => {
  const r = await agentOk('director', ['apply', ...MANIFESTS, '--state-file', STATE]);
  assert.is(r.stdout.trim(), '6 service(s) from 6 VirtualServer(s); 16 kernel operation(s)');
  assert.is(opLines(r.stderr).length, 16);
  assert.equal(rowsFromIpvsadm(listIpvs('director')), [
    { service: `TCP ${DR_VIP}:8088`, scheduler: 'rr', persistent: 0, dests: ['192.0.2.21:8088 Route 1', '192.0.2.22:8088 Route 1'] },
    { service: `TCP ${TUN_VIP}:80`, scheduler: 'rr', persistent: 0, dests: ['172.16.0.21:80 Tunnel 1', '172.16.0.22:80 Tunnel 1'] },
    // seeds-ftp names no scheduler: the CRD's default, wlc.
    { service: `TCP ${SEEDS_VIP}:21`, scheduler: 'wlc', persistent: 0, dests: ['172.16.0.3:21 Masq 1'] },
    { service: `TCP ${SEEDS_VIP}:80`, scheduler: 'wrr', persistent: 0, dests: ['172.16.0.2:80 Masq 1', '172.16.0.3:8000 Masq 2'] },
    { service: `TCP ${SNAT_VIP}:80`, scheduler: 'rr', persistent: 0, dests: ['172.16.0.9:80 Masq 1'] },
    { service: `UDP ${SEEDS_VIP}:53`, scheduler: 'rr', persistent: 0, dests: ['172.16.0.2:53 Masq 1', '172.16.0.3:53 Masq 1'] },
  ]);
  // The director side the agent set up: VIPs on lvs0, forwarding for NAT, conntrack + masquerade for SNAT.
  const host = nsSh('director', 'ip -br -4 addr show dev lvs0; sysctl net.ipv4.ip_forward net.ipv4.vs.conntrack; nft list table inet lvs_operator');
  for (const vip of [SEEDS_VIP, SNAT_VIP, DR_VIP, TUN_VIP]) assert.match(host, `${vip}/32`);
  assert.match(host, 'net.ipv4.ip_forward = 1');
  assert.match(host, 'net.ipv4.vs.conntrack = 1');
  assert.match(host, new RegExp(`ct original ip daddr ${SNAT_VIP} ct original proto-dst 80 masquerade`));
});

test('show --json agrees with ipvsadm -Ln and names the owners; a second apply meanwhile is a no-op', async () => {
  // Both only read the kernel when nothing is to change, so they run side by side.
  const [v, again] = await Promise.all([readViews('director', STATE), agent('director', ['apply', ...MANIFESTS, '--state-file', STATE])]);
  assert.equal(rowsFromShow(v.show), rowsFromIpvsadm(v.ipvsadm), describeViews(v));
  assert.equal(Object.fromEntries(v.show.map((s) => [s.key, s.virtualServer])), {
    [`TCP/${DR_VIP}:8088`]: 'default/dr-8088',
    [`TCP/${SEEDS_VIP}:21`]: 'default/seeds-ftp',
    [`TCP/${SEEDS_VIP}:80`]: 'default/seeds-web',
    [`TCP/${SNAT_VIP}:80`]: 'default/snat-web',
    [`TCP/${TUN_VIP}:80`]: 'default/tun-web',
    [`UDP/${SEEDS_VIP}:53`]: 'default/seeds-dns',
  });
  assert.ok(v.show.every((s) => s.ours));
  // Everything read back as programmed, TUN's tunnel attributes included: nothing to do.
  assert.is(again.code, 0, again.stderr);
  assert.is(again.stdout.trim(), '6 service(s) from 6 VirtualServer(s); 0 kernel operation(s)');
  assert.equal(opLines(again.stderr), []);
});

test('real traffic through every service (clients run in parallel)', async () => {
  const jobs: Record<string, Promise<ClientResult>> = {
    web: runClient('client', { host: SEEDS_VIP, port: 80, count: 300, concurrency: 8, timeoutMs: CONNECT_TIMEOUT_MS }),
    ftp: runClient('client', { host: SEEDS_VIP, port: 21, count: 4, timeoutMs: CONNECT_TIMEOUT_MS }),
    dns: runClient('client', { host: SEEDS_VIP, port: 53, proto: 'udp', count: 20, timeoutMs: CONNECT_TIMEOUT_MS }),
    snat: runClient('client', { host: SNAT_VIP, port: 80, count: 6, timeoutMs: CONNECT_TIMEOUT_MS }),
    dr: runClient('client', { host: DR_VIP, port: 8088, count: 20, timeoutMs: CONNECT_TIMEOUT_MS }),
    tun: runClient('client', { host: TUN_VIP, port: 80, count: 20, timeoutMs: CONNECT_TIMEOUT_MS }),
  };
  for (const [name, job] of Object.entries(jobs)) traffic[name] = await job;
  for (const [name, r] of Object.entries(traffic)) assert.is(r.errors, 0, `${name}: ${r.firstError}`);
});

test('NAT, seeds VIP:80: 300 connections split 1:2 (±10%) over RS1:80 and RS2:8000, the port rewritten 80 -> 8000', () => {
  const r = traffic.web!;
  assert.is(r.replies.length, 300);
  const [rs1 = 0, rs2 = 0] = [r.byId.rs1, r.byId.rs2];
  assert.ok(rs1 >= 90 && rs1 <= 110 && rs2 >= 180 && rs2 <= 220, `split ${JSON.stringify(r.byId)} is not 100:200 ±10%`);
  for (const rep of r.replies) {
    // NAT rewrites only the destination: the real server sees the client itself.
    assert.is(rep.peer.split(':')[0], CLIENT);
    assert.is(rep.local, rep.id === 'rs1' ? '172.16.0.2:80' : '172.16.0.3:8000');
  }
});

test('NAT, seeds VIP:21 reaches RS2 on port 21', () => {
  const r = traffic.ftp!;
  assert.equal(r.byId, { rs2: 4 });
  for (const rep of r.replies) assert.is(rep.local, '172.16.0.3:21');
});

test('NAT over UDP: datagrams balanced round robin over both real servers and answered', () => {
  const r = traffic.dns!;
  assert.is(r.replies.length, 20);
  // Each datagram leaves a fresh socket, so each is a new IPVS connection; rr alternates (a rare
  // source-port reuse would land on its earlier server, hence not exactly 10/10).
  const [rs1 = 0, rs2 = 0] = [r.byId.rs1, r.byId.rs2];
  assert.ok(rs1 >= 7 && rs2 >= 7 && rs1 + rs2 === 20, JSON.stringify(r.byId));
  for (const rep of r.replies) { assert.is(rep.proto, 'udp'); assert.is(rep.peer.split(':')[0], CLIENT); }
});

test('NAT with returnPath SNAT: a real server whose default route bypasses the director answers, and sees the director as peer', () => {
  const r = traffic.snat!;
  assert.equal(r.byId, { rsnat: 6 });
  for (const rep of r.replies) {
    assert.is(rep.peer.split(':')[0], DIRECTOR_BACK);
    assert.is(rep.local, '172.16.0.9:80');
  }
  assert.match(nsRun('rsnat', ['ip', 'route', 'show', 'default']), /via 172\.16\.0\.254/);
});

test('DR and TUN: both real servers answer, see the client and the VIP, and replies bypass the director (OutPkts 0)', async () => {
  for (const [name, vip, port] of [['dr', DR_VIP, 8088], ['tun', TUN_VIP, 80]] as const) {
    const r = traffic[name]!;
    assert.equal(r.byId, { dsr1: 10, dsr2: 10 }, name);
    for (const rep of r.replies) {
      assert.is(rep.local, `${vip}:${port}`, `${name}: the real server must see the VIP as its local address`);
      assert.is(rep.peer.split(':')[0], CLIENT);
    }
  }
  const stats = Object.fromEntries((await settledStats('director')).map((s) => [`${s.proto} ${s.address}`, s]));
  for (const key of [`TCP ${DR_VIP}:8088`, `TCP ${TUN_VIP}:80`]) {
    const s = stats[key]!;
    assert.is(s.conns, 20, key);
    assert.ok(s.inPkts > 0, `${key}: requests pass the director`);
    assert.is(s.outPkts, 0, `${key}: replies must not pass the director`);
  }
  // Contrast: NAT replies do pass it.
  assert.ok(stats[`TCP ${SEEDS_VIP}:80`]!.outPkts > 0);
});

/** One datagram from the client's fixed source port 40053 to the seeds' UDP service; the answering server's id. */
function askFixedPort(): string | undefined {
  const line = nsSh('client', `printf 'q\\n' | socat -t5 -T10 - UDP:${SEEDS_VIP}:53,sourceport=40053,reuseaddr | head -n 1\n`).trim();
  return line ? (JSON.parse(line) as { id?: string }).id : undefined;
}

test('UDP: a removed real server is deleted at once, and the same flow moves to the other one (no stale entry)', async () => {
  const first = askFixedPort();
  assert.ok(first === 'rs1' || first === 'rs2', String(first));
  // The same source port is the same IPVS connection: it stays on its server.
  assert.is(askFixedPort(), first);
  const [gone, keep] = first === 'rs1' ? ['172.16.0.2', '172.16.0.3'] : ['172.16.0.3', '172.16.0.2'];
  // The same manifests, with seeds-dns down to the other real server.
  const dir = '/run/agent-forwarding-udp';
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(FIXTURES)) copyFileSync(join(FIXTURES, f), join(dir, f));
  const doc = parseDocument(readFileSync(join(FIXTURES, 'nat-udp.yaml'), 'utf8'));
  doc.setIn(['spec', 'backends', 'static'], [{ address: keep }]);
  writeFileSync(join(dir, 'nat-udp.yaml'), doc.toString());
  const r = await agentOk('director', ['apply', '-f', 'examples/nat-seeds.yaml', '-f', dir, '--state-file', STATE]);
  // Not drained: UDP has no connection end to wait for.
  assert.equal(opLines(r.stderr), [`delete ${gone}:53 from UDP/${SEEDS_VIP}:53 (udp)`]);
  // The kernel still holds the flow's entry to the deleted server (UDP timeout 300 s); with
  // expire_nodest_conn=1 the next packet expires it and is scheduled afresh.
  assert.is(askFixedPort(), first === 'rs1' ? 'rs2' : 'rs1', 'the flow stayed on the removed real server');
  const entries = nsRun('director', ['ipvsadm', '-Lnc']).split('\n').filter((l) => l.includes(':40053'));
  assert.ok(entries.every((l) => l.includes(`${keep}:53`)), entries.join('\n'));
});

uvuSuite.run();
