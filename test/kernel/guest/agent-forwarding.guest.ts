// Guest suite of test/kernel/agent-traffic.test.ts: `lvs-agent` programs a real director namespace
// from manifests — examples/nat-seeds.yaml verbatim plus test/kernel/fixtures/agent-forwarding/
// (UDP, NAT with SNAT return path, DR, TUN) — and real TCP/UDP traffic from a client namespace
// must reach the real servers by every forwarding method, with the behaviour each method implies
// (port mapping, source NAT, direct return). See ./agent/net.ts for the topology.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ipvsStats, listIpvs } from './lib/ipvsadm.ts';
import { nsRun, nsSh } from './lib/netns.ts';
import { runClient, startServer, stopServers, type ClientResult } from './lib/traffic.ts';
import { agent, agentOk, opLines, timed } from './agent/cli.ts';
import { describeViews, readViews, rowsFromIpvsadm, rowsFromShow } from './agent/compare.ts';
import { agentTopology, CLIENT, DIRECTOR_BACK, type AgentTopology } from './agent/net.ts';

const uvuSuite = suite('lvs-agent forwarding: NAT (seeds), SNAT, UDP, DR, TUN with real traffic');
const test = timed(uvuSuite);
const STATE = '/run/lvs-agent/director-forwarding.json';
const SEEDS_VIP = '203.0.113.5', SNAT_VIP = '203.0.113.6', DR_VIP = '198.51.100.12', TUN_VIP = '203.0.113.20';
const MANIFESTS = ['-f', 'examples/nat-seeds.yaml', '-f', 'test/kernel/fixtures/agent-forwarding'];
let topo: AgentTopology | undefined;
const traffic: Record<string, ClientResult> = {};

uvuSuite.after(async () => {
  await stopServers();
  topo?.destroy();
});

test('topology and identity servers (RS2 listens on 8000 and 21 only, never on 80)', async () => {
  topo = agentTopology({ gateways: 2, snat: true, direct: 2 });
  // One at a time: five Node processes starting together on two emulated CPUs can each miss the
  // shared lib's 30 s readiness limit on a loaded host.
  await startServer('rs1', { id: 'rs1', tcp: [80], udp: [53] });
  await startServer('rs2', { id: 'rs2', tcp: [8000, 21], udp: [53] });
  await startServer('rsnat', { id: 'rsnat', tcp: [80] });
  await startServer('dsr1', { id: 'dsr1', tcp: [8088, 80] });
  await startServer('dsr2', { id: 'dsr2', tcp: [8088, 80] });
  assert.is(nsSh('rs2', "ss -Hltn 'sport = :80' | wc -l").trim(), '0');
});

test('lvs-agent prepare readies dsr1 and dsr2 for DR and then TUN, each in its own namespace', async () => {
  // One chain per real server (the two steps on one namespace must not race), both in parallel.
  const chain = async (ns: string) => {
    const dr = await agentOk(undefined, ['prepare', '--forwarding', 'DR', '--vip', DR_VIP, '--netns', ns]);
    const tun = await agentOk(undefined, ['prepare', '--forwarding', 'TUN', '--vip', TUN_VIP, '--netns', ns]);
    return [dr.stdout.trim(), tun.stdout.trim()];
  };
  const [a, b] = await Promise.all([chain('dsr1'), chain('dsr2')]);
  for (const [ns, out] of [['dsr1', a], ['dsr2', b]] as const) {
    assert.match(out![0]!, new RegExp(`^netns:${ns}: \\d+ change\\(s\\); prepared for ${DR_VIP} \\(DR\\)$`));
    assert.match(out![1]!, new RegExp(`^netns:${ns}: \\d+ change\\(s\\); prepared for ${DR_VIP} \\(DR\\), ${TUN_VIP} \\(TUN\\)$`));
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
  const host = nsSh('director', 'ip -br -4 addr show dev lvs0; sysctl -n net.ipv4.ip_forward net.ipv4.vs.conntrack; nft list table inet lvs_operator');
  for (const vip of [SEEDS_VIP, SNAT_VIP, DR_VIP, TUN_VIP]) assert.match(host, `${vip}/32`);
  assert.match(host, /\n1\n1\n/);
  assert.match(host, new RegExp(`ct original ip daddr ${SNAT_VIP} ct original proto-dst 80 masquerade`));
});

test('lvs-agent show --json agrees with ipvsadm -Ln and names the owning VirtualServers', () => {
  const v = readViews('director', STATE);
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
});

test('real traffic through every service (clients run in parallel)', async () => {
  const jobs: Record<string, Promise<ClientResult>> = {
    web: runClient('client', { host: SEEDS_VIP, port: 80, count: 300, concurrency: 8 }),
    ftp: runClient('client', { host: SEEDS_VIP, port: 21, count: 4 }),
    dns: runClient('client', { host: SEEDS_VIP, port: 53, proto: 'udp', count: 20 }),
    snat: runClient('client', { host: SNAT_VIP, port: 80, count: 6 }),
    dr: runClient('client', { host: DR_VIP, port: 8088, count: 20 }),
    tun: runClient('client', { host: TUN_VIP, port: 80, count: 20 }),
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

test('DR and TUN: both real servers answer, see the client and the VIP, and replies bypass the director (OutPkts 0)', () => {
  for (const [name, vip, port] of [['dr', DR_VIP, 8088], ['tun', TUN_VIP, 80]] as const) {
    const r = traffic[name]!;
    assert.equal(r.byId, { dsr1: 10, dsr2: 10 }, name);
    for (const rep of r.replies) {
      assert.is(rep.local, `${vip}:${port}`, `${name}: the real server must see the VIP as its local address`);
      assert.is(rep.peer.split(':')[0], CLIENT);
    }
  }
  const stats = Object.fromEntries(ipvsStats('director').map((s) => [`${s.proto} ${s.address}`, s]));
  for (const key of [`TCP ${DR_VIP}:8088`, `TCP ${TUN_VIP}:80`]) {
    const s = stats[key]!;
    assert.is(s.conns, 20, key);
    assert.ok(s.inPkts > 0, `${key}: requests pass the director`);
    assert.is(s.outPkts, 0, `${key}: replies must not pass the director`);
  }
  // Contrast: NAT replies do pass it.
  assert.ok(stats[`TCP ${SEEDS_VIP}:80`]!.outPkts > 0);
});

test('a second apply after the traffic is a no-op (DR and TUN destinations read back as programmed)', async () => {
  const before = listIpvs('director');
  const r = await agent('director', ['apply', ...MANIFESTS, '--state-file', STATE]);
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stdout.trim(), '6 service(s) from 6 VirtualServer(s); 0 kernel operation(s)');
  assert.equal(opLines(r.stderr), []);
  assert.equal(rowsFromIpvsadm(listIpvs('director')), rowsFromIpvsadm(before));
});

uvuSuite.run();
