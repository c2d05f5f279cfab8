// Guest suite of test/kernel/realserver.test.ts (runs inside the VM): real-server preparation for
// DR and TUN on a real kernel, with real TCP traffic. One LAN: client -> director (VIP on lvs0 via
// our director setup, IPVS rules from the stock ipvsadm) -> rs1 (a named netns) and rs2 (reached
// by the PID of a process inside it, as a pod would be). The real servers start like typical
// hosts: rp_filter=1, arp_ignore/arp_announce 0. Each mode must fail before preparation and
// answer the client directly after it (director OutPkts = 0); cleanup must undo exactly that.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createRunner, type NetnsTarget } from '../../../dataplane/exec.ts';
import { syncDirector } from '../../../dataplane/director/setup.ts';
import {
  cleanupRealServer, inspectRealServer, prepareRealServer, type RealServerOptions,
} from '../../../dataplane/realserver/prepare.ts';
import type { RealServerMode } from '../../../dataplane/realserver/plan.ts';
import { arpProbe, ipvsCounters, macOf, sysctls, timed } from './dataplane-helpers.ts';
import { assertInVm, createTopology, nsRun, run, type Topology } from '../../../lab/guest/netns.ts';
import { runClient, startServer, stopServers } from '../../../lab/guest/traffic.ts';

assertInVm();
const test = suite('realserver (real kernel)');
const VIP = '198.51.100.10';
const CLIENT = '192.0.2.10';
const RS = [{ ns: 'rs1', addr: '192.0.2.11' }, { ns: 'rs2', addr: '192.0.2.12' }];
const opts: RealServerOptions = { run: createRunner() };
let topo: Topology | undefined;
let holder: ChildProcess | undefined;
const targets: Record<string, NetnsTarget> = {};
const SYSCTLS = ['all.arp_ignore', 'all.arp_announce', 'lo.arp_ignore', 'lo.arp_announce', 'all.rp_filter'].map((k) => `net.ipv4.conf.${k}`);
const snapshot = (ns: string) => sysctls(ns, SYSCTLS);
const before: Record<string, Record<string, string>> = {};
const vipsOn = (ns: string, dev: string) =>
  (JSON.parse(nsRun(ns, ['ip', '-j', 'addr', 'show', 'dev', dev])) as Array<{ addr_info: Array<{ local: string; label?: string }> }>)[0]!
    .addr_info.filter((a) => a.local === VIP);
const vips = (mode: RealServerMode) => [{ mode, vip: VIP }];
const client = (port: number, count: number, timeoutMs = 5000) => runClient('client', { host: VIP, port, count, timeoutMs });

test.before(async () => {
  topo = createTopology({
    lans: ['lan'],
    hosts: [
      { ns: 'client', links: [{ lan: 'lan', addrs: [`${CLIENT}/24`] }], routes: [{ to: `${VIP}/32`, via: '192.0.2.1' }] },
      { ns: 'director', links: [{ lan: 'lan', addrs: ['192.0.2.1/24'] }] },
      { ns: 'peer', links: [{ lan: 'lan', addrs: ['192.0.2.20/24'] }] },
      ...RS.map((rs) => ({ ns: rs.ns, links: [{ lan: 'lan', addrs: [`${rs.addr}/24`] }] })),
    ],
  });
  // Real servers start like typical hosts: strict reverse-path filtering (effective value is
  // max(all, dev), and devices created later, such as tunl0, inherit default).
  for (const rs of RS) nsRun(rs.ns, ['sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=1', 'net.ipv4.conf.default.rp_filter=1']);
  targets.rs1 = { kind: 'named', name: 'rs1' };
  holder = spawn('ip', ['netns', 'exec', 'rs2', 'sleep', '3600'], { stdio: 'ignore' });
  targets.rs2 = { kind: 'pid', pid: holder.pid! };
  for (const rs of RS) before[rs.ns] = snapshot(rs.ns);
  const d = await timed('director sync', () => syncDirector({ run: opts.run, target: { kind: 'named', name: 'director' } },
    { vips: [{ address: VIP, announce: false }], snat: [], natFamilies: [], kernelRelease: run(['uname', '-r']).trim() }));
  assert.equal(d.vips, [VIP]);
  for (const [port, flag] of [[80, '-g'], [81, '-i']] as const) {
    nsRun('director', ['ipvsadm', '-A', '-t', `${VIP}:${port}`, '-s', 'rr']);
    for (const rs of RS) nsRun('director', ['ipvsadm', '-a', '-t', `${VIP}:${port}`, '-r', `${rs.addr}:${port}`, flag]);
  }
  await Promise.all(RS.map((rs) => startServer(rs.ns, { id: rs.ns, tcp: [80, 81] })));
});

test.after(async () => {
  await stopServers();
  holder?.kill('SIGKILL');
  topo?.destroy();
});

test('DR: unprepared real servers drop the traffic', async () => {
  const res = await client(80, 2, 2000);
  assert.is(res.errors, 2, `expected failures, got ${JSON.stringify(res.byId)}`);
});

test('DR: prepared real servers answer the client directly', async () => {
  for (const rs of RS) {
    const r = await timed(`prepare DR ${rs.ns}`, () => prepareRealServer(opts, targets[rs.ns]!, vips('DR')));
    assert.ok(r.changed);
    assert.equal(r.owned, vips('DR'));
    assert.is(vipsOn(rs.ns, 'lo')[0]?.label, 'lo:lvsop');
    const now = sysctls(rs.ns, ['net.ipv4.conf.all.arp_ignore', 'net.ipv4.conf.all.arp_announce']);
    assert.equal(Object.values(now), ['1', '2']);
  }
  const c0 = await ipvsCounters('director', `${VIP}:80`);
  const res = await client(80, 6);
  assert.is(res.errors, 0, res.firstError);
  assert.equal(res.byId, { rs1: 3, rs2: 3 });
  for (const r of res.replies) {
    assert.is(r.local, `${VIP}:80`, 'the real server accepted the VIP as its own address');
    assert.is(r.peer.split(':')[0], CLIENT);
  }
  const c1 = await ipvsCounters('director', `${VIP}:80`);
  assert.is(c1.conns - c0.conns, 6);
  assert.ok(c1.inPkts > c0.inPkts);
  assert.is(c1.outPkts - c0.outPkts, 0, 'DR replies never pass through the director');
  assert.is(c1.outPkts, 0, 'not a single packet of this service went out through the director');
});

test('ARP: nobody on the LAN answers for the VIP (director lvs0 silenced, real servers arp_ignore)', async () => {
  assert.is(await arpProbe('peer', RS[0]!.addr), macOf('rs1', 'eth0'), 'the probe itself works');
  assert.is(await arpProbe('peer', VIP), undefined);
});

test('DR: a second prepare changes nothing; inspection agrees', async () => {
  for (const rs of RS) {
    const r = await timed(`prepare DR again ${rs.ns}`, () => prepareRealServer(opts, targets[rs.ns]!, vips('DR')));
    assert.is(r.changed, false);
    assert.equal(r.changes, []);
    assert.equal(await inspectRealServer(opts, targets[rs.ns]!, { mode: 'DR', vip: VIP }), { prepared: true, problems: [] });
  }
});

test('DR: cleanup restores the namespace exactly and traffic fails again', async () => {
  for (const rs of RS) {
    const r = await timed(`cleanup DR ${rs.ns}`, () => cleanupRealServer(opts, targets[rs.ns]!));
    assert.ok(r.changed);
    assert.equal(vipsOn(rs.ns, 'lo'), []);
    assert.equal(snapshot(rs.ns), before[rs.ns]);
    assert.is(JSON.parse(nsRun(rs.ns, ['ip', '-j', 'link', 'show', 'dev', 'lo']))[0].ifalias, undefined, 'record cleared');
    assert.is((await cleanupRealServer(opts, targets[rs.ns]!)).changed, false);
    assert.is((await inspectRealServer(opts, targets[rs.ns]!, { mode: 'DR', vip: VIP })).prepared, false);
  }
  assert.is((await client(80, 2, 2000)).errors, 2);
});

test('TUN: with ipip unloaded, preparation loads it; real servers answer over ipip', async () => {
  // Start from a kernel without ipip, so the load-on-demand path runs for real.
  try { run(['rmmod', 'ipip']); } catch (err) { console.log(`# rmmod ipip: ${(err as Error).message}`); }
  const loaded = () => readFileSync('/proc/modules', 'utf8').split('\n').some((l) => l.startsWith('ipip '));
  console.log(`# ipip loaded before TUN preparation: ${loaded()}`);
  assert.is((await client(81, 2, 2000)).errors, 2, 'unprepared: no tunnel endpoint');
  for (const rs of RS) {
    const r = await timed(`prepare TUN ${rs.ns}`, () => prepareRealServer(opts, targets[rs.ns]!, vips('TUN')));
    assert.ok(r.changed);
    const tun = JSON.parse(nsRun(rs.ns, ['ip', '-j', '-d', 'addr', 'show', 'dev', 'tunl0']))[0];
    assert.ok(tun.flags.includes('UP'));
    assert.is(tun.linkinfo.info_kind, 'ipip');
    assert.is(vipsOn(rs.ns, 'tunl0')[0]?.label, 'tunl0:lvsop');
    assert.equal(Object.values(sysctls(rs.ns, ['net.ipv4.conf.tunl0.rp_filter', 'net.ipv4.conf.all.rp_filter'])), ['0', '0']);
  }
  assert.ok(loaded());
  const c0 = await ipvsCounters('director', `${VIP}:81`);
  const res = await client(81, 6);
  assert.is(res.errors, 0, res.firstError);
  assert.equal(res.byId, { rs1: 3, rs2: 3 });
  for (const r of res.replies) assert.is(r.local, `${VIP}:81`, 'decapsulated packet delivered to the VIP as a local address');
  const c1 = await ipvsCounters('director', `${VIP}:81`);
  assert.is(c1.conns - c0.conns, 6);
  assert.ok(c1.inPkts > c0.inPkts);
  // (Before preparation the real servers answered ipip with ICMP errors, which IPVS counts as out.)
  assert.is(c1.outPkts - c0.outPkts, 0, 'TUN replies never pass through the director');
  assert.is(await arpProbe('peer', VIP), undefined, 'still nobody answers ARP for the VIP');
});

test('TUN: idempotent, then cleanup brings tunl0 down and restores rp_filter', async () => {
  for (const rs of RS) {
    assert.is((await prepareRealServer(opts, targets[rs.ns]!, vips('TUN'))).changed, false);
    await cleanupRealServer(opts, targets[rs.ns]!);
    const tun = JSON.parse(nsRun(rs.ns, ['ip', '-j', 'addr', 'show', 'dev', 'tunl0']))[0];
    assert.not.ok(tun.flags.includes('UP'), 'we brought tunl0 up, so cleanup brings it down');
    assert.equal(vipsOn(rs.ns, 'tunl0'), []);
    assert.equal(sysctls(rs.ns, ['net.ipv4.conf.tunl0.rp_filter']), { 'net.ipv4.conf.tunl0.rp_filter': '1' }, 'tunl0 inherited 1 from default');
    assert.equal(snapshot(rs.ns), before[rs.ns]);
  }
  assert.is((await client(81, 2, 2000)).errors, 2);
});

test('an address someone else put on lo is never removed', async () => {
  nsRun('rs1', ['ip', 'addr', 'add', `${VIP}/32`, 'dev', 'lo']);
  const r = await prepareRealServer(opts, targets.rs1!, vips('DR'));
  assert.not.ok(r.changes.some((c) => c.kind === 'address'));
  await cleanupRealServer(opts, targets.rs1!);
  assert.is(vipsOn('rs1', 'lo').length, 1);
});

test.run();
