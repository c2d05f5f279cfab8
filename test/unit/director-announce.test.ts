// Announcing VIPs (dataplane/director/announce.ts + setup.ts) against the in-memory kernel model:
// which devices are uplinks, ARP answered or dropped, proxy NDP and its sysctls for IPv6, one
// gratuitous ARP / unsolicited NA per VIP that becomes announced, and nothing of others touched.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FakeKernel } from '../../dataplane/realserver/testing/fake-netns.ts';
import type { DirectorSpec } from '../../dataplane/director/plan.ts';
import { announcements, newlyAnnounced, uplinksFor } from '../../dataplane/director/announce.ts';
import { syncDirector, teardownDirector } from '../../dataplane/director/setup.ts';
import type { LinkInfo } from '../../dataplane/realserver/iproute.ts';

const test = suite('director-announce');
const PATH = '/run/netns/director';
const VIP = '192.0.2.100';
const VIP6 = '2001:db8::100';

function setup() {
  const k = new FakeKernel({ ipvs: true });
  const ns = k.ns(PATH);
  const eth0 = ns.addLink('eth0', 'veth', true);
  eth0.addrs.push({ address: '192.0.2.2', prefixLen: 24, scope: 'global', label: 'eth0' }, { address: '2001:db8::2', prefixLen: 64, scope: 'global' });
  const eth1 = ns.addLink('eth1', 'veth', true);
  eth1.addrs.push({ address: '10.0.0.2', prefixLen: 24, scope: 'global', label: 'eth1' });
  // Lets the announcements, sent without waiting for them, reach the fake.
  const settle = () => new Promise((r) => setImmediate(r));
  return { k, ns, settle, opts: { run: k.runner(), target: { kind: 'named', name: 'director' } as const } };
}

const spec = (vips: Array<[string, boolean]>, over: Partial<DirectorSpec> = {}): DirectorSpec => ({
  vips: vips.map(([address, announce]) => ({ address, announce })), snat: [], natFamilies: [], kernelRelease: '6.1.0-56-amd64', ...over,
});

const link = (name: string, up: boolean, addrs: Array<[string, number]>): LinkInfo => ({
  name, up, alias: '', addresses: addrs.map(([address, prefixLen]) => ({ family: address.includes(':') ? 6 : 4, address, prefixLen, scope: 'global' })),
});

test('uplinks: the up devices whose own subnet contains the VIP; never lvs0, lo, a host route or another family', () => {
  const links = [
    link('eth0', true, [['192.0.2.2', 24], ['2001:db8::2', 64]]),
    link('eth1', true, [['10.0.0.2', 8]]),
    link('eth2', false, [['192.0.2.3', 24]]),
    link('lvs0', true, [['192.0.2.100', 32]]),
    link('lo', true, [['192.0.2.0', 24]]),
    link('eth3', true, [['192.0.2.100', 32]]),
  ];
  assert.equal(uplinksFor('192.0.2.100', links, 'lvs0'), ['eth0']);
  assert.equal(uplinksFor('10.200.0.1', links, 'lvs0'), ['eth1']);
  assert.equal(uplinksFor('2001:db8::100', links, 'lvs0'), ['eth0']);
  assert.equal(uplinksFor('2001:db8:1::100', links, 'lvs0'), []);
  assert.equal(uplinksFor('203.0.113.10', links, 'lvs0'), [], 'a routed VIP has nothing to announce on L2');
});

test('announcements(): each announced VIP gets uplinksFor()\'s devices (the subnets computed once), or its own interfaces', () => {
  const links = [
    link('eth0', true, [['192.0.2.2', 24], ['2001:db8::2', 64]]),
    link('eth1', true, [['10.0.0.2', 8], ['192.0.2.9', 25]]),
    link('eth2', false, [['192.0.2.3', 24]]),
    link('lvs0', true, [['192.0.2.100', 32]]),
  ];
  const vips = ['192.0.2.2', '192.0.2.100', '192.0.2.200', '10.1.2.3', '2001:db8::5', '203.0.113.1', '2001:db8:9::1'];
  const s = { ...spec(vips.map((v) => [v, true] as [string, boolean])), vips: [...vips.map((address) => ({ address, announce: true })), { address: '10.9.9.9', announce: true, interfaces: ['eth7'] }, { address: '192.0.2.50', announce: false }] };
  assert.equal(announcements(s, links, 'lvs0'), [
    ...vips.map((address) => ({ address, devices: uplinksFor(address, links, 'lvs0') })),
    { address: '10.9.9.9', devices: ['eth7'] },
  ]);
  assert.equal(announcements(s, links, 'lvs0')[1], { address: '192.0.2.100', devices: ['eth0', 'eth1'] });
  assert.equal(announcements(s, links, 'lvs0')[0], { address: '192.0.2.2', devices: ['eth1'] }, 'not its own address\'s device');
});

test('IPv4: an announced VIP is answered (no drop rule) and announced once by gratuitous ARP on its uplink', async () => {
  const { ns, opts, settle } = setup();
  const r = await syncDirector(opts, spec([[VIP, true]]));
  await settle();
  assert.equal(r.vips, [VIP]);
  assert.not.ok(ns.nft.has('arp lvs_operator'), 'nothing dropped');
  assert.equal(r.announced, [{ address: VIP, devices: ['eth0'] }]);
  assert.equal(ns.announced, [`${VIP}%eth0`]);
  const again = await syncDirector(opts, spec([[VIP, true]]));
  await settle();
  assert.equal(again.newlyAnnounced, []);
  assert.equal(ns.announced, [`${VIP}%eth0`], 'no second gratuitous ARP for a VIP already announced');
});

test('IPv4: silenced, the VIP is ARP-dropped and no announcement goes out; announced again, it is announced again', async () => {
  const { ns, opts, settle } = setup();
  await syncDirector(opts, spec([[VIP, true]]));
  await syncDirector(opts, spec([[VIP, false]]));
  await settle();
  assert.match(ns.nft.get('arp lvs_operator') ?? '', `arp daddr ip ${VIP} drop`);
  assert.equal(ns.announced.length, 1);
  const r = await syncDirector(opts, spec([[VIP, true]]));
  await settle();
  assert.equal(r.newlyAnnounced, [{ address: VIP, devices: ['eth0'] }]);
  assert.equal(ns.announced, [`${VIP}%eth0`, `${VIP}%eth0`]);
});

test('IPv6: an announced VIP gets a proxy entry on its uplink, the sysctls ndisc needs for it, and one unsolicited NA', async () => {
  const { ns, opts, settle } = setup();
  ns.proxies.add('2001:db8::99%eth0'); // someone else's
  const r = await syncDirector(opts, spec([[VIP6, true]]));
  await settle();
  assert.equal([...ns.proxies].sort(), ['2001:db8::100%eth0', '2001:db8::99%eth0']);
  assert.is(ns.sysctls.get('net.ipv6.conf.eth0.forwarding'), '1');
  assert.is(ns.sysctls.get('net.ipv6.conf.eth0.proxy_ndp'), '1');
  assert.is(ns.sysctls.get('net.ipv6.neigh.eth0.proxy_delay'), '0');
  assert.is(ns.sysctls.get('net.ipv6.conf.eth0.accept_ra'), '2', 'router advertisements still accepted while forwarding');
  assert.is(ns.sysctls.get('net.ipv6.conf.eth1.proxy_ndp'), '0', 'only the uplink');
  assert.ok(r.sysctls.some((s) => s.key === 'net.ipv6.neigh.eth0.proxy_delay' && s.previous === '80'));
  assert.equal(ns.announced, [`${VIP6}%eth0`]);
  // Silenced: our entry goes, the foreign one stays, the NS drop rule appears.
  await syncDirector(opts, spec([[VIP6, false]]));
  assert.equal([...ns.proxies], ['2001:db8::99%eth0']);
  assert.match(ns.nft.get('ip6 lvs_operator') ?? '', 'drop');
});

test('IPv6: accept_ra 0 (router advertisements off) is left as it is', async () => {
  const { ns, opts } = setup();
  ns.sysctls.set('net.ipv6.conf.eth0.accept_ra', '0');
  await syncDirector(opts, spec([[VIP6, true]]));
  assert.is(ns.sysctls.get('net.ipv6.conf.eth0.accept_ra'), '0');
});

test('a removed VIP takes its proxy entry along; teardown leaves no entry of ours', async () => {
  const { ns, opts } = setup();
  await syncDirector(opts, spec([[VIP6, true], [VIP, true]]));
  await syncDirector(opts, spec([[VIP, true]]));
  assert.equal([...ns.proxies], []);
  await syncDirector(opts, spec([[VIP6, true]]));
  await teardownDirector(opts);
  assert.equal([...ns.proxies], []);
  assert.not.ok(ns.links.has('lvs0'));
});

test('interfaces: announcements go exactly to the devices named, whatever the subnets', async () => {
  const { ns, opts, settle } = setup();
  const r = await syncDirector(opts, spec([[VIP, true], [VIP6, true]], { interfaces: ['eth1'] }));
  await settle();
  assert.equal(r.announced.map((a) => a.devices), [['eth1'], ['eth1']]);
  assert.equal([...ns.proxies], [`${VIP6}%eth1`]);
  assert.equal(ns.announced.sort(), [`${VIP}%eth1`, `${VIP6}%eth1`]);
});

test('a failed announcement (device down) is logged, the sync still succeeds', async () => {
  const { ns, opts, settle } = setup();
  const r = await syncDirector(opts, spec([[VIP, true]], { interfaces: ['eth9'] }));
  await settle();
  assert.equal(r.vips, [VIP]);
  assert.equal(ns.announced, []);
});

test('newlyAnnounced: by address and device', () => {
  assert.equal(newlyAnnounced([{ address: VIP, devices: ['eth0'] }], [{ address: VIP, devices: ['eth0', 'eth1'] }, { address: VIP6, devices: ['eth0'] }]),
    [{ address: VIP, devices: ['eth1'] }, { address: VIP6, devices: ['eth0'] }]);
});

test.run();
