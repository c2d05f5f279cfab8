// The failover path (dataplane/agent/lvs-device.ts reannounce → director/setup.ts announceQuick)
// against the in-memory kernel model: after a full sync, flipping who announces changes exactly
// the ARP/NDP state — our arp/ip6 nft tables, the flipped IPv6 VIPs' proxy entries — announces the
// new VIPs, reads nothing back, and leaves what a full sync would leave. Plus apply's HA flags.
import { writeFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { PlanService } from '../../api/plan.ts';
import { createLvsDevice } from '../../dataplane/agent/lvs-device.ts';
import { UsageError } from '../../dataplane/cli/commands.ts';
import { haSettings, parseEndpoint } from '../../dataplane/cli/ha-options.ts';
import { FakeKernel } from '../../dataplane/realserver/testing/fake-netns.ts';

const test = suite('announce: quick path and HA flags');
const VIP = '192.0.2.100', VIP6 = '2001:db8::100';

const svc = (vip: string): PlanService => ({
  key: `TCP/${vip.includes(':') ? `[${vip}]` : vip}:80`, owner: { namespace: 'default', name: 'web', generation: 1 }, portName: 'http',
  vip, family: vip.includes(':') ? 6 : 4, protocol: 'TCP', port: 80, forwarding: 'DR', scheduler: { name: 'rr', flags: [] },
  prepareRealServers: false, realServers: [], directors: ['d1'],
});

function setup() {
  const k = new FakeKernel({ ipvs: true });
  const ns = k.ns('/run/netns/director');
  ns.addLink('eth0', 'veth', true).addrs.push({ address: '192.0.2.2', prefixLen: 24, scope: 'global', label: 'eth0' }, { address: '2001:db8::2', prefixLen: 64, scope: 'global' });
  const on = new Set<string>();
  const device = createLvsDevice({
    run: k.runner(), node: 'd1', plan: () => [svc(VIP), svc(VIP6)], target: { kind: 'named', name: 'director' }, kernelRelease: '6.1.0-56-amd64',
    announce: (vip) => on.has(vip),
  });
  return { k, ns, on, device, settle: () => new Promise((r) => setImmediate(r)) };
}

test('taking over: ARP answered, proxy entry added, GARP and NA sent, nothing read back; giving up: silent again', async () => {
  const { k, ns, on, device, settle } = setup();
  await device.set([VIP, VIP6]);
  assert.match(ns.nft.get('arp lvs_operator') ?? '', `arp daddr ip ${VIP} drop`);
  const before = k.calls.length;
  on.add(VIP).add(VIP6);
  await device.reannounce();
  await settle();
  const calls = k.calls.slice(before).map((c) => c.slice(c.indexOf('--') + 1).join(' '));
  assert.not.ok(calls.some((c) => c.includes('show') || c.includes('list')), `no observation in the quick path: ${calls.join(' | ')}`);
  assert.not.ok(ns.nft.has('arp lvs_operator'), 'no ARP drop left');
  assert.equal([...ns.proxies], [`${VIP6}%eth0`]);
  assert.equal(ns.announced.sort(), [`${VIP}%eth0`, `${VIP6}%eth0`]);
  // Nothing changed: nothing done.
  const n = k.calls.length;
  await device.reannounce();
  assert.is(k.calls.length, n);
  // Giving the VIPs up.
  on.clear();
  await device.reannounce();
  assert.match(ns.nft.get('arp lvs_operator') ?? '', `arp daddr ip ${VIP} drop`);
  assert.match(ns.nft.get('ip6 lvs_operator') ?? '', 'drop');
  assert.equal([...ns.proxies], []);
  // A full sync finds nothing left to do.
  const m = k.calls.length;
  await device.set([VIP, VIP6]);
  const steps = k.calls.slice(m).filter((c) => c.includes('-f') || c.includes('-batch') || c.includes('-w'));
  assert.equal(steps, [], 'the quick path left what a full sync would');
});

test('a burst of reannounces waiting their turn runs once, on the decision when it runs', async () => {
  const { k, ns, on, device, settle } = setup();
  await device.set([VIP, VIP6]);
  const before = ns.announced.length;
  const nftCalls = () => k.calls.filter((c) => c.includes('nft') && c.includes('-f')).length;
  const n0 = nftCalls();
  on.add(VIP);
  // As membership changes call it (all: announce every announced VIP again).
  const burst = [device.reannounce(true), device.reannounce(true), device.reannounce(true)];
  on.add(VIP6); // decided when it runs, not when asked
  await Promise.all(burst);
  await settle();
  assert.is(nftCalls() - n0, 1, 'one quick announce for three calls');
  assert.equal(ns.announced.slice(before).sort(), [`${VIP}%eth0`, `${VIP6}%eth0`], 'one announcement per VIP, both VIPs');
});

test('before the first full sync the quick path does nothing (it knows no devices yet)', async () => {
  const { k, on, device } = setup();
  on.add(VIP);
  await device.reannounce();
  assert.equal(k.calls, []);
});

test('a VIP whose services left the plan but still drain keeps answering ARP/NDP; one the plan gives another director goes silent; a restarted agent keeps what the kernel answered', async () => {
  const k = new FakeKernel({ ipvs: true });
  const ns = k.ns('/run/netns/director');
  ns.addLink('eth0', 'veth', true).addrs.push({ address: '192.0.2.2', prefixLen: 24, scope: 'global', label: 'eth0' }, { address: '2001:db8::2', prefixLen: 64, scope: 'global' });
  const VIP2 = '192.0.2.101';
  let plan: PlanService[] = [svc(VIP), svc(VIP6), svc(VIP2)];
  const open = () => createLvsDevice({
    run: k.runner(), node: 'd1', plan: () => plan, target: { kind: 'named', name: 'director' }, kernelRelease: '6.1.0-56-amd64',
    // The plan's decision: every VIP the plan gives d1 (as a lone director does).
    announce: (vip) => plan.some((p) => p.vip === vip && p.directors.includes('d1')),
  });
  const device = open();
  await device.set([VIP, VIP6, VIP2]);
  assert.not.ok(ns.nft.has('arp lvs_operator'), 'all announced');
  // The VirtualServers are deleted: the services are held (draining), their VIPs still bound.
  // VIP2's address goes to a service the plan gives another director.
  plan = [{ ...svc(VIP2), directors: ['d2'] }];
  await device.set([VIP, VIP6, VIP2]);
  assert.is(ns.nft.get('arp lvs_operator')?.match(/daddr ip (\S+) drop/g)?.join(), `daddr ip ${VIP2} drop`, 'only the VIP another director owns now is silent');
  assert.equal([...ns.proxies], [`${VIP6}%eth0`], 'the draining IPv6 VIP keeps its proxy-NDP entry');
  assert.equal(device.announced(), [VIP, VIP6].sort());
  // A restart in the middle of the drain: the new agent reads what the kernel answers.
  const again = open();
  await again.list();
  assert.is(ns.nft.get('arp lvs_operator')?.match(/daddr ip (\S+) drop/g)?.join(), `daddr ip ${VIP2} drop`, 'the same after a restart');
  assert.equal([...ns.proxies], [`${VIP6}%eth0`]);
  // Drained: the VIPs go, and nothing of them is left.
  await again.set([VIP2]);
  assert.equal([...ns.proxies], []);
});

test('HA flags: checked before anything is touched, each error naming its flag', () => {
  const key = '/tmp/announce-quick-test.key';
  writeFileSync(key, 'k'.repeat(32));
  const bad = (f: Parameters<typeof haSettings>[0], re: RegExp) => assert.throws(() => haSettings(f), (e: unknown) => e instanceof UsageError && re.test((e as Error).message));
  assert.is(haSettings({ watch: true }), undefined);
  bad({ 'peer-key-file': key }, /--peer-key-file needs --peer/);
  bad({ peer: ['192.0.2.3'], 'peer-key-file': key }, /--peer needs --watch/);
  bad({ peer: ['192.0.2.3'], watch: true }, /--peer-key-file/);
  bad({ peer: ['192.0.2.3'], watch: true, 'peer-key-file': key, announce: 'none' }, /--announce l2/);
  bad({ peer: ['nope'], watch: true, 'peer-key-file': key }, /--peer "nope": not an IP address/);
  bad({ peer: ['192.0.2.3'], watch: true, 'peer-key-file': key, 'peer-interval-ms': '100', 'peer-dead-ms': '150' }, /more than twice/);
  writeFileSync(key + '.short', 'short');
  bad({ peer: ['192.0.2.3'], watch: true, 'peer-key-file': key + '.short' }, /5 bytes, at least 16/);
  const ok = haSettings({ peer: ['192.0.2.3', '[2001:db8::3]:7000'], watch: true, 'peer-key-file': key, 'sync-interface': 'eth0' })!;
  assert.equal(ok.peers, [{ address: '192.0.2.3', port: 7480 }, { address: '2001:db8::3', port: 7000 }]);
  assert.equal(ok.syncDaemon, { interface: 'eth0', syncId: 1 });
  assert.equal(parseEndpoint('0.0.0.0:9', '--peer-listen'), { address: '0.0.0.0', port: 9 });
});

test.run();
