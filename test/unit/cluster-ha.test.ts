// Director election in cluster mode (dataplane/cluster/ha.ts): peers come from the AgentReports,
// each endpoint bound to its node; two cluster agents over one fake API server and real UDP on
// 127.0.0.1 elect one announcer for a VIP they both direct, publish who announces in their
// reports, and hand the VIP over when the announcer stops.
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { peerOf, peersFromReports } from '../../dataplane/cluster/ha.ts';
import { clusterHaSettings } from '../../dataplane/cli/ha-options.ts';
import { UsageError } from '../../dataplane/cli/commands.ts';
import { FakeKubeApi } from '../../kube/testing/fake.ts';
import { ManualClock } from '../../kube/clock.ts';
import type { KubeObject } from '../../kube/types.ts';
import { harness, ownerPlan, podFinder, publish, service, VIP, type Harness } from '../lib/cluster-fixtures.ts';
import { createClusterAgent } from '../../dataplane/cluster/agent.ts';
import pino from 'pino';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

const test = suite('cluster HA: peers from reports, one announcer per VIP');
const KEY = Buffer.from('cluster ha test key, 32 bytes...');
const report = (node: string, extra: object): KubeObject => ({ apiVersion: 'lvs.dev/v1alpha1', kind: 'AgentReport', metadata: { name: node }, node, ...extra } as unknown as KubeObject);

test('peerOf: the endpoint a report names, bound to its node; ours, bad and mismatched ones skipped', () => {
  assert.equal(peerOf(report('n2', { peer: { address: '10.0.0.2', port: 7480 } }), 'n1'), { address: '10.0.0.2', port: 7480, node: 'n2' });
  assert.equal(peerOf(report('n2', { peer: { address: '2001:DB8::0:2', port: 7480 } }), 'n1')?.address, '2001:db8::2', 'canonical');
  assert.is(peerOf(report('n1', { peer: { address: '10.0.0.1', port: 7480 } }), 'n1'), undefined, 'our own');
  assert.is(peerOf(report('n2', {}), 'n1'), undefined, 'no election there');
  assert.is(peerOf(report('n2', { peer: { address: 'evil.example', port: 7480 } }), 'n1'), undefined);
  assert.is(peerOf(report('n2', { peer: { address: '10.0.0.2', port: 0 } }), 'n1'), undefined);
  assert.is(peerOf(report('n2', { peer: { address: '10.0.0.2', port: '7480' } }), 'n1'), undefined);
  assert.is(peerOf({ ...report('n2', { peer: { address: '10.0.0.2', port: 7480 } }), node: 'n3' } as KubeObject, 'n1'), undefined, 'node != name');
  assert.equal(peersFromReports([report('n3', { peer: { address: '10.0.0.3', port: 1 } }), report('n2', { peer: { address: '10.0.0.2', port: 2 } })], 'n1').map((p) => p.node), ['n2', 'n3']);
});

test('run flags: --peer-key-file turns the election on and needs this node\'s own --peer-listen', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cluster-ha-'));
  const key = join(dir, 'key');
  writeFileSync(key, KEY);
  assert.is(clusterHaSettings({}), undefined);
  const bad = (f: object, re: RegExp) => assert.throws(() => clusterHaSettings(f), (e: unknown) => e instanceof UsageError && re.test((e as Error).message));
  bad({ 'peer-listen': '10.0.0.1' }, /--peer-listen needs --peer-key-file/);
  bad({ 'peer-key-file': key }, /needs --peer-listen/);
  bad({ 'peer-key-file': key, 'peer-listen': '0.0.0.0' }, /own address/);
  bad({ 'peer-key-file': key, 'peer-listen': '10.0.0.1', peer: ['10.0.0.2'] }, /AgentReports/);
  const s = clusterHaSettings({ 'peer-key-file': key, 'peer-listen': '10.0.0.1', 'sync-interface': 'eth0', 'peer-interval-ms': '50', 'peer-dead-ms': '200' })!;
  assert.equal([s.listen, s.syncDaemon, s.intervalMs, s.deadAfterMs], [{ address: '10.0.0.1', port: 7480 }, { interface: 'eth0', syncId: 1 }, 50, 200]);
});

async function freePorts(n: number): Promise<number[]> {
  const socks = await Promise.all(Array.from({ length: n }, async () => { const s = createSocket('udp4'); s.bind(0, '127.0.0.1'); await once(s, 'listening'); return s; }));
  const ports = socks.map((s) => s.address().port);
  await Promise.all(socks.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

/** Real time passes for the heartbeats while the shared manual clock moves the agents' timers. */
async function waitFor(what: string, clock: ManualClock, cond: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
    await clock.advance(10);
  }
}

test('two directors of one VIP: exactly one announces, both reports say who; the announcer stops and the other takes the VIP', async () => {
  const clock = new ManualClock();
  const api = new FakeKubeApi(() => clock.wallNow());
  const [p1, p2] = await freePorts(2) as [number, number];
  // The VIP in both nodes' eth0 subnet: announced there (an uplink), like seed 004's segment.
  publish(api, ownerPlan('web', [service({ announce: {} })], { directors: ['n1', 'n2'] }));
  const hs: Record<string, Harness> = { n1: harness('n1', { api, clock }), n2: harness('n2', { api, clock }) };
  const ports: Record<string, number> = { n1: p1, n2: p2 };
  for (const [n, h] of Object.entries(hs)) {
    h.cmd.host.ns('host').addLink('eth0', 'veth', true).addrs.push({ address: n === 'n1' ? '203.0.113.2' : '203.0.113.3', prefixLen: 24, scope: 'global', label: 'eth0' });
  }
  const ha = (n: string) => ({ ha: { listen: { address: '127.0.0.1', port: ports[n]! }, key: KEY, intervalMs: 20, deadAfterMs: 150, warmupMs: 0 } });
  const announced = (n: string) => hs[n]!.report()?.announced ?? [];
  try {
    await hs.n1!.start(ha('n1'));
    await hs.n2!.start(ha('n2'));
    // The heartbeat thread starts in real time; the reports follow the first syncs.
    await waitFor('both reports', clock, () => hs.n1!.report()?.peer !== undefined && hs.n2!.report()?.peer !== undefined);
    assert.equal(hs.n1!.report()?.peer, { address: '127.0.0.1', port: p1 }, 'n1 publishes where it takes heartbeats');
    // Settled: one announcer in both reports for 20 rounds in a row (the start has transitions: n1
    // alone before n2's report names its endpoint, then both).
    let steady = 0;
    await waitFor('one announcer', clock, () => {
      steady = announced('n1').length + announced('n2').length === 1 ? steady + 1 : 0;
      return steady >= 20;
    });
    const active = announced('n1').includes(VIP) ? 'n1' : 'n2';
    const other = active === 'n1' ? 'n2' : 'n1';
    assert.equal(announced(active), [VIP]);
    assert.not.ok(hs[active]!.cmd.host.ns('host').nft.get('arp lvs_operator')?.includes(`arp daddr ip ${VIP} drop`), 'the announcer answers ARP');
    assert.match(hs[other]!.cmd.host.ns('host').nft.get('arp lvs_operator') ?? '', `arp daddr ip ${VIP} drop`, 'the other stays silent');
    // Steady: the answer holds over many heartbeats (and syncs).
    for (let i = 0; i < 30; i++) {
      await new Promise((r) => setTimeout(r, 10));
      await clock.advance(10);
      assert.equal([announced(active), announced(other)], [[VIP], []], `still one announcer after ${i * 10} ms`);
    }
    // The announcer stops (its heartbeats end): the other takes the VIP within the dead interval.
    await hs[active]!.stop();
    await waitFor('takeover', clock, () => announced(other).includes(VIP));
    assert.not.ok(hs[other]!.cmd.host.ns('host').nft.get('arp lvs_operator')?.includes(`arp daddr ip ${VIP} drop`));
    assert.ok(hs[other]!.cmd.host.ns('host').announced.includes(`${VIP}%eth0`), 'gratuitous ARP sent on takeover');
  } finally {
    for (const h of Object.values(hs)) await h.close();
  }
});

test('an election that cannot listen on --peer-listen fails the agent\'s start, naming the flag', async () => {
  const h = harness('n1');
  publish(h.api, ownerPlan('web', [service({ announce: {} })], { directors: ['n1', 'n2'] }));
  const agent = createClusterAgent({
    api: h.api, node: 'n1', kernel: h.kernel, run: h.cmd.run, log: pino({ level: 'silent' }), clock: h.clock, finder: podFinder(),
    ha: { listen: { address: '192.0.2.99', port: 7480 }, key: KEY },
  });
  const ctl = new AbortController();
  const running = agent.run(ctl.signal).then(() => 'ran', (err: unknown) => String(err));
  for (let i = 0; i < 50; i++) await h.clock.advance(10);
  ctl.abort();
  await h.clock.advance(0);
  assert.match(await running, /--peer-listen 192\.0\.2\.99:7480: cannot take director heartbeats there .*EADDRNOTAVAIL/);
  assert.equal(h.kernel.snapshot(), [], 'nothing programmed without the election it was asked to run');
  await h.close();
});

test.run();
