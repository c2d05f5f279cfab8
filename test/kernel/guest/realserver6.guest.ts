// Guest suite of test/kernel/realserver6.test.ts (runs inside the VM): IPv6 through IPVS on a real
// kernel. LAN "front": client, director eth0, an NDP peer, rs1 (a named netns) and rs2 (reached by
// the PID of a process inside it, as a pod would be), all dual-stack. LAN "back": director eth1 and
// rsnat, whose default route is the director (classic NAT); LAN "pods": director eth2 and a pod.
// The director's VIP lives on lvs0 via our director setup; the IPVS rules come from the stock
// ipvsadm, the independent witness.
// Real-server preparation must turn failing DR/TUN traffic into direct replies (OutPkts 0) and
// cleanup must restore each namespace exactly. Ports: 80 DR, 81 TUN (ip6ip6), 82 TUN over the
// real servers' IPv4 addresses (IPv6 in IPv4, sit0), 90 NAT -> rsnat:8080.
import { spawn, type ChildProcess } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createRunner, type NetnsTarget } from '../../../dataplane/exec.ts';
import { syncDirector } from '../../../dataplane/director/setup.ts';
import type { DirectorSpec } from '../../../dataplane/director/plan.ts';
import { cleanupRealServer, inspectRealServer, prepareRealServer, type RealServerOptions } from '../../../dataplane/realserver/prepare.ts';
import { OWNED_METRIC6, type RealServerVip } from '../../../dataplane/realserver/plan.ts';
import { ipvsCounters, macOf, ndpProbe, sysctls, timed } from './dataplane-helpers.ts';
import { assertInVm, createTopology, nsRun, run, type Topology } from '../../../lab/guest/netns.ts';
import { runClient, startServer, stopServers } from '../../../lab/guest/traffic.ts';

assertInVm();
const test = suite('realserver IPv6 (real kernel)');
const VIP = '2001:db8:100::10';
const CLIENT = '2001:db8:1::10';
const DIRECTOR = '2001:db8:1::1';
const RS = [{ ns: 'rs1', addr: '2001:db8:1::11', addr4: '192.0.2.11' }, { ns: 'rs2', addr: '2001:db8:1::12', addr4: '192.0.2.12' }];
const RSNAT = '2001:db8:2::11';
const opts: RealServerOptions = { run: createRunner() };
const kernelRelease = run(['uname', '-r']).trim();
const directorSpec = (announce: boolean): DirectorSpec => ({ vips: [{ address: VIP, announce }], snat: [], natFamilies: [6], kernelRelease });
let topo: Topology | undefined;
let holder: ChildProcess | undefined;
const targets: Record<string, NetnsTarget> = {};
// What preparation could conceivably touch: the IPv4 ARP/rp_filter knobs and IPv6's per-device conf.
const SYSCTLS = [
  ...['all.arp_ignore', 'all.arp_announce', 'lo.arp_ignore', 'lo.arp_announce', 'all.rp_filter'].map((k) => `net.ipv4.conf.${k}`),
  ...['all.forwarding', 'lo.disable_ipv6', 'all.accept_dad'].map((k) => `net.ipv6.conf.${k}`),
];
const snapshot = (ns: string) => ({ sysctls: sysctls(ns, SYSCTLS), lo: addrsOn(ns, 'lo'), alias: linkOf(ns, 'lo').ifalias });
const before: Record<string, ReturnType<typeof snapshot>> = {};
interface JsonAddr { local: string; prefixlen: number; metric?: number; nodad?: boolean }
const linkOf = (ns: string, dev: string) => (JSON.parse(nsRun(ns, ['ip', '-j', '-d', 'addr', 'show', 'dev', dev])) as Array<{
  flags: string[]; ifalias?: string; linkinfo?: { info_kind: string; info_data?: { proto?: string } }; addr_info: JsonAddr[];
}>)[0]!;
const addrsOn = (ns: string, dev: string) => linkOf(ns, dev).addr_info.map((a) => `${a.local}/${a.prefixlen}`);
const vipOn = (ns: string, dev: string) => linkOf(ns, dev).addr_info.find((a) => a.local === VIP);
const client = (port: number, count: number, timeoutMs = 5000) => runClient('client', { host: VIP, port, count, timeoutMs });
const svc = (port: number) => `[${VIP}]:${port}`;

test.before(async () => {
  const dual = (v6: string, v4?: string) => [`${v6}/64`, ...(v4 ? [`${v4}/24`] : [])];
  topo = createTopology({
    lans: ['front', 'back', 'pods'],
    hosts: [
      { ns: 'client', links: [{ lan: 'front', addrs: dual(CLIENT, '192.0.2.10') }], routes: [{ to: `${VIP}/128`, via: DIRECTOR }] },
      { ns: 'director', links: [{ lan: 'front', addrs: dual(DIRECTOR, '192.0.2.1') }, { lan: 'back', addrs: dual('2001:db8:2::1') }, { lan: 'pods', addrs: dual('fd00:1::1') }] },
      // A pod on the director node (its lan plays the node's pod network).
      { ns: 'pod', links: [{ lan: 'pods', addrs: dual('fd00:1::2') }], routes: [{ to: 'default', via: 'fd00:1::1' }] },
      { ns: 'peer', links: [{ lan: 'front', addrs: dual('2001:db8:1::20') }] },
      ...RS.map((rs) => ({ ns: rs.ns, links: [{ lan: 'front', addrs: dual(rs.addr, rs.addr4) }] })),
      { ns: 'rsnat', links: [{ lan: 'back', addrs: dual(RSNAT) }], routes: [{ to: 'default', via: '2001:db8:2::1' }] },
    ],
  });
  targets.rs1 = { kind: 'named', name: 'rs1' };
  holder = spawn('ip', ['netns', 'exec', 'rs2', 'sleep', '3600'], { stdio: 'ignore' });
  targets.rs2 = { kind: 'pid', pid: holder.pid! };
  for (const rs of RS) before[rs.ns] = snapshot(rs.ns);
  const d = await timed('director sync', () => syncDirector({ run: opts.run, target: { kind: 'named', name: 'director' } }, directorSpec(false)));
  assert.equal(d.vips, [VIP]);
  nsRun('director', ['bash', '-c', [
    `ipvsadm -A -t ${svc(80)} -s rr`, `ipvsadm -A -t ${svc(81)} -s rr`, `ipvsadm -A -t ${svc(82)} -s rr`, `ipvsadm -A -t ${svc(90)} -s rr`,
    ...RS.flatMap((rs) => [`ipvsadm -a -t ${svc(80)} -r [${rs.addr}]:80 -g`, `ipvsadm -a -t ${svc(81)} -r [${rs.addr}]:81 -i`, `ipvsadm -a -t ${svc(82)} -r ${rs.addr4}:82 -i`]),
    `ipvsadm -a -t ${svc(90)} -r [${RSNAT}]:8080 -m`,
  ].join(' && ')]);
  // '::' listens for IPv6 (and IPv4-mapped) on every address, the VIP included once it is local.
  for (const rs of RS) await startServer(rs.ns, { id: rs.ns, tcp: [80, 81, 82], bind: ['::'] });
  await startServer('rsnat', { id: 'rsnat', tcp: [8080], bind: ['::'] });
});

test.after(async () => {
  await stopServers();
  holder?.kill('SIGKILL');
  topo?.destroy();
});

test('NAT: the director rewrites [VIP]:90 to [rsnat]:8080 and carries the replies back', async () => {
  const c0 = await ipvsCounters('director', svc(90));
  const res = await client(90, 4);
  assert.is(res.errors, 0, res.firstError);
  assert.equal(res.byId, { rsnat: 4 });
  for (const r of res.replies) {
    assert.is(r.local, `${RSNAT}:8080`, 'the real server was reached at its own address and port');
    assert.is(r.peer.slice(0, r.peer.lastIndexOf(':')), CLIENT, 'the real server saw the client');
  }
  const c1 = await ipvsCounters('director', svc(90));
  assert.is(c1.conns - c0.conns, 4);
  assert.ok(c1.outPkts > c0.outPkts, 'NAT replies pass through the director');
});

test('DR: unprepared real servers drop the traffic', async () => {
  const res = await client(80, 2, 2000);
  assert.is(res.errors, 2, `expected failures, got ${JSON.stringify(res.byId)}`);
});

test('DR: prepared (VIP/128 on lo, nodad, our metric), real servers answer the client directly', async () => {
  for (const rs of RS) {
    const r = await timed(`prepare DR ${rs.ns}`, () => prepareRealServer(opts, targets[rs.ns]!, [{ mode: 'DR', vip: VIP }]));
    assert.equal(r.owned, [{ mode: 'DR', vip: VIP }]);
    const a = vipOn(rs.ns, 'lo');
    assert.equal([a?.prefixlen, a?.metric, a?.nodad], [128, OWNED_METRIC6, true]);
    assert.equal(snapshot(rs.ns).sysctls, before[rs.ns]!.sysctls, 'no sysctl changed for an IPv6 VIP');
  }
  const c0 = await ipvsCounters('director', svc(80));
  const res = await client(80, 6);
  assert.is(res.errors, 0, res.firstError);
  assert.equal(res.byId, { rs1: 3, rs2: 3 });
  for (const r of res.replies) {
    assert.is(r.local, `${VIP}:80`, 'the real server accepted the VIP as its own address');
    assert.is(r.peer.slice(0, r.peer.lastIndexOf(':')), CLIENT);
  }
  const c1 = await ipvsCounters('director', svc(80));
  assert.is(c1.conns - c0.conns, 6);
  assert.ok(c1.inPkts > c0.inPkts);
  assert.is(c1.outPkts, 0, 'DR replies never pass through the director');
});

test('NDP: nobody answers a solicitation for the VIP; with the VIP on eth0 instead of lo, rs1 would', async () => {
  assert.is(await ndpProbe('peer', RS[0]!.addr), macOf('rs1', 'eth0'), 'the probe itself works');
  assert.is(await ndpProbe('peer', VIP), undefined, 'VIP on lo: ndisc answers only for addresses of the receiving device');
  assert.equal(JSON.parse(nsRun('client', ['ip', '-j', '-6', 'neigh', 'show', 'to', VIP]).trim() || '[]'), [], 'no real server solicited from the VIP');
  nsRun('rs1', ['ip', '-6', 'addr', 'add', `${VIP}/128`, 'dev', 'eth0', 'nodad']);
  try {
    assert.is(await ndpProbe('peer', VIP), macOf('rs1', 'eth0'), 'control: on the wire-facing device the VIP is answered');
  } finally {
    nsRun('rs1', ['ip', '-6', 'addr', 'del', `${VIP}/128`, 'dev', 'eth0']);
  }
});

test('NDP on the director: our ip6 table drops solicitations for a non-announced VIP even where proxy NDP would answer', async () => {
  const director = { run: opts.run, target: { kind: 'named' as const, name: 'director' } };
  assert.is(await ndpProbe('peer', VIP), undefined, 'lvs0 address: not answered on eth0');
  // How an IPv6 VIP gets answered on eth0 at all: proxy NDP (forwarding is on for NAT).
  nsRun('director', ['bash', '-c', `sysctl -qw net.ipv6.conf.all.proxy_ndp=1 && ip -6 neigh add proxy ${VIP} dev eth0`]);
  try {
    assert.match(nsRun('director', ['nft', 'list', 'table', 'ip6', 'lvs_operator']), 'icmpv6 type nd-neighbor-solicit @th,64,128 0x20010db8010000000000000000000010 drop');
    assert.is(await ndpProbe('peer', VIP), undefined, 'dropped before ndisc');
    // Announced on eth0 (the VIP is in none of its subnets, so it is named): the agent owns the
    // proxy entry of its VIP (the one above is kept as it is) and sets what ndisc needs for it.
    const on = await syncDirector(director, { ...directorSpec(true), interfaces: ['eth0'] });
    assert.equal(on.nftTables, [], 'announced: no drop table');
    assert.equal(on.announced, [{ address: VIP, devices: ['eth0'] }]);
    assert.is(await ndpProbe('peer', VIP), macOf('director', 'eth0'), 'announced: the proxy entry answers');
    await syncDirector(director, directorSpec(false));
    assert.is(await ndpProbe('peer', VIP), undefined);
    assert.not.match(nsRun('director', ['ip', '-6', 'neigh', 'show', 'proxy']), VIP, 'silenced: our VIP\'s proxy entry is gone');
  } finally {
    nsRun('director', ['bash', '-c', `ip -6 neigh del proxy ${VIP} dev eth0 2>/dev/null; sysctl -qw net.ipv6.conf.all.proxy_ndp=0`]);
  }
});

test('DR: a second prepare changes nothing; cleanup restores lo, its alias and the sysctls exactly', async () => {
  for (const rs of RS) {
    const again = await prepareRealServer(opts, targets[rs.ns]!, [{ mode: 'DR', vip: VIP }]);
    assert.is(again.changed, false);
    assert.equal(await inspectRealServer(opts, targets[rs.ns]!, { mode: 'DR', vip: VIP }), { prepared: true, problems: [] });
    const r = await timed(`cleanup DR ${rs.ns}`, () => cleanupRealServer(opts, targets[rs.ns]!));
    assert.ok(r.changed);
    assert.equal(snapshot(rs.ns), before[rs.ns]);
    assert.is((await cleanupRealServer(opts, targets[rs.ns]!)).changed, false);
  }
  assert.is((await client(80, 2, 2000)).errors, 2);
});

const loaded = (m: string) => run(['cat', '/proc/modules']).split('\n').some((l) => l.startsWith(`${m} `));

test('TUN ip6ip6: preparation loads ip6_tunnel and brings ip6tnl0 up with the VIP; real servers answer directly', async () => {
  console.log(`# ip6_tunnel loaded before TUN preparation: ${loaded('ip6_tunnel')}`);
  assert.is((await client(81, 2, 2000)).errors, 2, 'unprepared: nothing decapsulates');
  for (const rs of RS) {
    await timed(`prepare TUN ${rs.ns}`, () => prepareRealServer(opts, targets[rs.ns]!, [{ mode: 'TUN', vip: VIP }]));
    const t = linkOf(rs.ns, 'ip6tnl0');
    assert.ok(t.flags.includes('UP'));
    assert.is(t.linkinfo?.info_kind, 'ip6tnl');
    assert.is(vipOn(rs.ns, 'ip6tnl0')?.metric, OWNED_METRIC6);
    assert.equal(snapshot(rs.ns).sysctls, before[rs.ns]!.sysctls, 'no reverse-path filter in IPv6: nothing to set');
  }
  assert.ok(loaded('ip6_tunnel'));
  await traffic(81);
});

test('TUN, IPv6 VIP over IPv4 real servers: sit0 decapsulates IPv6 in IPv4', async () => {
  assert.is((await client(82, 2, 2000)).errors, 2, 'unprepared: sit0 down');
  for (const rs of RS) {
    const r = await prepareRealServer(opts, targets[rs.ns]!, [{ mode: 'TUN', vip: VIP, encap: 4 }]);
    assert.equal(r.owned, [{ mode: 'TUN', vip: VIP }, { mode: 'TUN', vip: VIP, encap: 4 }] as RealServerVip[]);
    assert.ok(linkOf(rs.ns, 'sit0').flags.includes('UP'));
  }
  assert.equal(run(['ip', 'netns', 'exec', 'director', 'ipvsadm', '-Ln']).match(/192\.0\.2\.1[12]:82\s+Tunnel/g)?.length, 2, 'IPVS holds IPv4 tunnel destinations under the IPv6 service');
  await traffic(82);
});

/** Six connections to [VIP]:port, three per real server, the VIP local there, nothing back through the director. */
async function traffic(port: number): Promise<void> {
  const c0 = await ipvsCounters('director', svc(port));
  const res = await client(port, 6);
  assert.is(res.errors, 0, res.firstError);
  assert.equal(res.byId, { rs1: 3, rs2: 3 });
  for (const r of res.replies) assert.is(r.local, `${VIP}:${port}`, 'decapsulated packet delivered to the VIP as a local address');
  const c1 = await ipvsCounters('director', svc(port));
  assert.is(c1.conns - c0.conns, 6);
  assert.ok(c1.inPkts > c0.inPkts);
  // (Unprepared, the real servers answered with ICMP errors, which IPVS counts as out.)
  assert.is(c1.outPkts - c0.outPkts, 0, 'TUN replies never pass through the director');
  assert.is(await ndpProbe('peer', VIP), undefined, 'still nobody answers for the VIP');
}

test('TUN: idempotent; cleanup brings ip6tnl0 and sit0 down, removes the VIPs, restores everything', async () => {
  for (const rs of RS) {
    const both: RealServerVip[] = [{ mode: 'TUN', vip: VIP }, { mode: 'TUN', vip: VIP, encap: 4 }];
    assert.is((await prepareRealServer(opts, targets[rs.ns]!, both)).changed, false);
    await cleanupRealServer(opts, targets[rs.ns]!);
    for (const dev of ['ip6tnl0', 'sit0']) {
      assert.not.ok(linkOf(rs.ns, dev).flags.includes('UP'), `we brought ${dev} up, so cleanup brings it down`);
      assert.is(vipOn(rs.ns, dev), undefined);
    }
    assert.equal(snapshot(rs.ns), before[rs.ns]);
  }
  assert.is((await client(81, 2, 2000)).errors, 2);
  assert.is((await client(82, 2, 2000)).errors, 2);
});

test('a pod on the director node answering from the VIP (local there on lvs0) is forwarded as it is: IPv6 needs no accept_local', () => {
  nsRun('pod', ['ip', '-6', 'addr', 'add', `${VIP}/128`, 'dev', 'lo', 'nodad']);
  const got = run(['bash', '-c', `ip netns exec client timeout 15 socat -u UDP6-RECVFROM:9999 - & sleep 1
echo from-vip | ip netns exec pod socat -u - 'UDP6-SENDTO:[${CLIENT}]:9999,bind=[${VIP}]'; wait`]);
  assert.is(got.trim(), 'from-vip');
  assert.equal(sysctls('director', ['net.ipv4.conf.eth2.accept_local']), { 'net.ipv4.conf.eth2.accept_local': '0' }, 'the IPv4 remedy is not in play');
});

test('an IPv6 VIP someone else put on lo (no metric) serves DR and is never removed', async () => {
  nsRun('rs1', ['ip', '-6', 'addr', 'add', `${VIP}/128`, 'dev', 'lo', 'nodad']);
  const r = await prepareRealServer(opts, targets.rs1!, [{ mode: 'DR', vip: VIP }]);
  assert.not.ok(r.changes.some((c) => c.kind === 'address'));
  await cleanupRealServer(opts, targets.rs1!);
  assert.ok(vipOn('rs1', 'lo'), 'still there');
});

test.run();
