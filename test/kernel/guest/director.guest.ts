// Guest suite of test/kernel/director.test.ts (runs inside the VM): director setup on a real
// kernel. Two LANs: front (client, director eth0, an ARP peer) and back (director eth1, rs1, rs2,
// and a gateway namespace that does NOT forward). The real servers' default route is that
// gateway, so classic LVS-NAT replies never reach the client; with the SNAT return path (our nft
// table + vs.conntrack=1) the director masquerades and the replies come back through it.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createRunner } from '../../../dataplane/exec.ts';
import type { DirectorSpec } from '../../../dataplane/director/plan.ts';
import { type DirectorOptions, syncDirector, teardownDirector } from '../../../dataplane/director/setup.ts';
import { arpProbe, ipvsCounters, macOf, sysctls, timed } from './dataplane-helpers.ts';
import { assertInVm, createTopology, nsRun, run, type Topology } from '../../../lab/guest/netns.ts';
import { runClient, startServer, stopServers } from '../../../lab/guest/traffic.ts';

assertInVm();
const test = suite('director (real kernel)');
const VIP = '198.51.100.10';
const VIP2 = '198.51.100.11';
const DIRECTOR_BACK = '10.0.0.1';
const RS = [{ ns: 'rs1', addr: '10.0.0.11' }, { ns: 'rs2', addr: '10.0.0.12' }];
const opts: DirectorOptions = { run: createRunner(), target: { kind: 'named', name: 'director' } };
const kernelRelease = run(['uname', '-r']).trim();
const spec = (over: Partial<DirectorSpec> = {}): DirectorSpec => ({
  vips: [{ address: VIP, announce: false }], snat: [], natFamilies: [4], kernelRelease, ...over,
});
const SNAT = spec({ snat: [{ family: 4, protocol: 'TCP', vip: VIP, port: 80 }] });
let topo: Topology | undefined;
const lvs0 = () => (JSON.parse(nsRun('director', ['ip', '-j', '-d', 'addr', 'show', 'dev', 'lvs0'])) as Array<{
  flags: string[]; linkinfo: { info_kind: string }; addr_info: Array<{ local: string; prefixlen: number; scope: string }>;
}>)[0]!;
const globalAddrs = () => lvs0().addr_info.filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`);
const nftList = () => nsRun('director', ['nft', 'list', 'ruleset']);
const client = (count: number, timeoutMs = 5000) => runClient('client', { host: VIP, port: 80, count, timeoutMs });

test.before(async () => {
  topo = createTopology({
    lans: ['front', 'back'],
    hosts: [
      { ns: 'client', links: [{ lan: 'front', addrs: ['192.0.2.10/24'] }], routes: [{ to: '198.51.100.0/24', via: '192.0.2.1' }] },
      { ns: 'peer', links: [{ lan: 'front', addrs: ['192.0.2.20/24'] }] },
      { ns: 'director', links: [{ lan: 'front', addrs: ['192.0.2.1/24'] }, { lan: 'back', addrs: [`${DIRECTOR_BACK}/24`] }] },
      // The real servers' gateway, which does not forward: classic NAT replies die there.
      { ns: 'gw', links: [{ lan: 'back', addrs: ['10.0.0.254/24'] }] },
      ...RS.map((rs) => ({ ns: rs.ns, links: [{ lan: 'back', addrs: [`${rs.addr}/24`] }], routes: [{ to: 'default', via: '10.0.0.254' }] })),
    ],
  });
  await Promise.all(RS.map((rs) => startServer(rs.ns, { id: rs.ns, tcp: [8080] })));
});

test.after(async () => {
  await stopServers();
  topo?.destroy();
});

test('sync: lvs0 (dummy, up) holds the VIP as /32; sysctls set and read back', async () => {
  const before = sysctls('director', ['net.ipv4.ip_forward', 'net.ipv4.vs.expire_nodest_conn']);
  const r = await timed('director sync (first)', () => syncDirector(opts, spec()));
  const dev = lvs0();
  assert.is(dev.linkinfo.info_kind, 'dummy');
  assert.ok(dev.flags.includes('UP'));
  assert.equal(globalAddrs(), [`${VIP}/32`]);
  assert.equal(r.vips, [VIP]);
  const now = sysctls('director', r.sysctls.map((s) => s.key));
  for (const s of r.sysctls) assert.is(now[s.key], s.value, `${s.key} as reported`);
  assert.equal(Object.fromEntries(r.sysctls.map((s) => [s.key, s.value])), {
    'net.ipv4.conf.all.arp_announce': '2',
    'net.ipv4.ip_forward': '1',
    'net.ipv4.vs.conn_reuse_mode': '1', // kernel 6.1 >= 5.9
    'net.ipv4.vs.expire_nodest_conn': '1',
    'net.ipv4.vs.expire_quiescent_template': '1',
  });
  assert.is(r.sysctls.find((s) => s.key === 'net.ipv4.ip_forward')!.previous, before['net.ipv4.ip_forward']);
  assert.is(before['net.ipv4.vs.expire_nodest_conn'], '0', 'kernel default');
  nsRun('director', ['ipvsadm', '-A', '-t', `${VIP}:80`, '-s', 'rr']);
  for (const rs of RS) nsRun('director', ['ipvsadm', '-a', '-t', `${VIP}:80`, '-r', `${rs.addr}:8080`, '-m']);
});

test('NAT without SNAT: real servers reply via their own gateway, the client gets nothing', async () => {
  const res = await client(2, 2000);
  assert.is(res.errors, 2, `unexpected answers ${JSON.stringify(res.byId)}`);
});

test('NAT with SNAT: nft masquerade + vs.conntrack=1 bring replies back through the director', async () => {
  const r = await timed('director sync (SNAT on)', () => syncDirector(opts, SNAT));
  assert.ok(r.changed);
  assert.equal(r.nftTables, ['inet lvs_operator', 'arp lvs_operator']);
  assert.is(sysctls('director', ['net.ipv4.vs.conntrack'])['net.ipv4.vs.conntrack'], '1');
  assert.match(nftList(), `ct original ip daddr ${VIP} ct original proto-dst 80 masquerade`);
  const c0 = await ipvsCounters('director', `${VIP}:80`);
  const res = await client(4);
  assert.is(res.errors, 0, res.firstError);
  assert.equal(res.byId, { rs1: 2, rs2: 2 });
  for (const rep of res.replies) assert.is(rep.peer.split(':')[0], DIRECTOR_BACK, 'real servers see the director, not the client');
  const c1 = await ipvsCounters('director', `${VIP}:80`);
  assert.is(c1.conns - c0.conns, 4);
  assert.ok(c1.outPkts > c0.outPkts, 'replies pass through the director');
});

test('kernel fact: the masquerade rule alone does nothing while vs.conntrack=0', async () => {
  nsRun('director', ['sysctl', '-qw', 'net.ipv4.vs.conntrack=0']);
  const res = await client(2, 2000);
  assert.is(res.errors, 2, `answers without conntrack: ${JSON.stringify(res.byId)}`);
  const r = await syncDirector(opts, SNAT); // an outside edit is undone
  assert.equal(r.steps, [{ kind: 'sysctl', key: 'net.ipv4.vs.conntrack', from: '0', to: '1' }]);
  assert.is((await client(2)).errors, 0);
});

test('a second sync changes nothing', async () => {
  const r = await timed('director sync (unchanged)', () => syncDirector(opts, SNAT));
  assert.is(r.changed, false);
  assert.equal(r.steps, []);
});

test('ARP: a peer on the front LAN gets no reply for a non-announced VIP; an announced one is answered', async () => {
  const mac = macOf('director', 'eth0');
  assert.is(await arpProbe('peer', '192.0.2.1'), mac, 'the probe itself works');
  assert.is(await arpProbe('peer', VIP), undefined, 'silenced VIP');
  await syncDirector(opts, { ...SNAT, vips: [{ address: VIP, announce: true }] });
  assert.is(await arpProbe('peer', VIP), mac, 'weak host model: the kernel answers for lvs0 addresses on eth0 unless we drop it');
  await syncDirector(opts, SNAT);
  assert.is(await arpProbe('peer', VIP), undefined);
});

test('ownership: an address left on lvs0 by an earlier run is removed, a new VIP added', async () => {
  nsRun('director', ['ip', 'addr', 'add', '198.51.100.99/32', 'dev', 'lvs0']);
  const r = await syncDirector(opts, { ...SNAT, vips: [{ address: VIP, announce: false }, { address: VIP2, announce: false }] });
  assert.equal(globalAddrs().sort(), [`${VIP}/32`, `${VIP2}/32`]);
  assert.ok(r.steps.some((s) => s.kind === 'address' && s.op === 'remove' && s.address === '198.51.100.99/32'));
  assert.is(await arpProbe('peer', VIP2), undefined, 'the new VIP is silenced too');
});

test('teardown: no VIPs, no nft tables, no lvs0; other nft tables untouched', async () => {
  nsRun('director', ['nft', 'add', 'table', 'ip', 'someone_else']);
  await timed('director teardown', () => teardownDirector(opts));
  assert.throws(() => lvs0());
  const rules = nftList();
  assert.not.match(rules, 'lvs_operator');
  assert.match(rules, 'table ip someone_else');
  assert.is((await client(1, 2000)).errors, 1, 'the VIP is gone from this node');
});

test.run();
