// IPVS sync daemons: the codec against ipvsadm's and the kernel's bytes (test/fixtures/netlink/
// daemon-genl.txt, seen on Linux 6.1), the fake kernel's failures, and planDaemons/syncDaemons.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CMD, CMD_ATTR } from '../../dataplane/ipvs/codec.ts';
import { DAEMON_ATTR, decodeDaemon, encodeDaemon, encodeDaemonState } from '../../dataplane/ipvs/daemon-codec.ts';
import { planDaemons, syncDaemons } from '../../dataplane/ipvs/daemon.ts';
import { IpvsError } from '../../dataplane/ipvs/errors.ts';
import { Attrs, AttrWriter, NetlinkCodecError } from '../../dataplane/ipvs/nla.ts';
import { FakeIpvsKernel } from '../../dataplane/ipvs/testing/fake.ts';
import type { IpvsService, SyncDaemon } from '../../dataplane/ipvs/types.ts';

const file = join(dirname(fileURLToPath(import.meta.url)), '../fixtures/netlink/daemon-genl.txt');
const fixture = new Map(readFileSync(file, 'utf8').split('\n').filter((l) => l && !l.startsWith('#'))
  .map((l) => { const [name, hex] = l.split(' '); return [name!, Buffer.from(hex!, 'hex')]; }));
const genl = (name: string): { cmd: number; attrs: Buffer } => {
  const b = fixture.get(name);
  if (!b) throw new Error(`no ${name} in daemon-genl.txt`);
  return { cmd: b[0]!, attrs: b.subarray(4) };
};
const decoded = (attrs: Buffer) => decodeDaemon(new Attrs(attrs, 'reply'));

const codec = suite('ipvs sync daemon codec');

codec('NEW_DAEMON bytes equal ipvsadm\'s, byte for byte (minimal, all options IPv4, IPv6 group)', () => {
  const cases: Array<[string, SyncDaemon]> = [
    ['req-master-d0-5', { state: 'master', interface: 'd0', syncId: 5 }],
    ['req-master-nosuch0-5', { state: 'master', interface: 'nosuch0', syncId: 5 }],
    ['req-master-d0-7-full', { state: 'master', interface: 'd0', syncId: 7, maxLen: 1400, group: '239.1.2.3', port: 8849, ttl: 3 }],
    ['req-master-d0-7-v6', { state: 'master', interface: 'd0', syncId: 7, group: 'ff02::1:2', port: 8849, ttl: 3 }],
  ];
  for (const [name, d] of cases) {
    const ipvsadm = genl(name);
    assert.is(ipvsadm.cmd, CMD.NEW_DAEMON, `${name} is a NEW_DAEMON`);
    assert.is(encodeDaemon(d).toString('hex'), ipvsadm.attrs.toString('hex'), name);
  }
});

codec('DEL_DAEMON carries STATE alone; ipvsadm\'s request has the same STATE', () => {
  const ours = encodeDaemonState('master');
  assert.is(ours.toString('hex'), '0c000380' + '0800010001000000');
  const theirs = genl('req-del-master');
  assert.is(theirs.cmd, CMD.DEL_DAEMON);
  const state = (b: Buffer) => new Attrs(b, 't').nested(CMD_ATTR.DAEMON, 'd')!.u32(DAEMON_ATTR.STATE, 'state');
  assert.is(state(theirs.attrs), state(ours));
  assert.is(new Attrs(encodeDaemonState('backup'), 't').nested(CMD_ATTR.DAEMON, 'd')!.u32(DAEMON_ATTR.STATE, 'state'), 2);
  assert.is(genl('req-get').cmd, CMD.GET_DAEMON);
});

codec('the kernel\'s GET_DAEMON dump decodes to what ipvsadm -L --daemon printed', () => {
  assert.equal(decoded(genl('dump-master').attrs),
    { state: 'master', interface: 'd0', syncId: 7, maxLen: 1400, group: '239.1.2.3', port: 8849, ttl: 3 });
  assert.equal(decoded(genl('dump-backup').attrs),
    { state: 'backup', interface: 'd1', syncId: 6, maxLen: 8972, group: '224.0.0.81', port: 8848, ttl: 1 });
});

codec('round trip: what we encode decodes back to the same daemon (IPv6 group canonicalised)', () => {
  const daemons: SyncDaemon[] = [
    { state: 'backup', interface: 'eth0', syncId: 0 },
    { state: 'master', interface: 'bond0.100', syncId: 255, maxLen: 65000, group: 'FF05:0::00:1', port: 1, ttl: 255 },
  ];
  assert.equal(daemons.map((d) => decoded(encodeDaemon(d))), [
    daemons[0],
    { state: 'master', interface: 'bond0.100', syncId: 255, maxLen: 65000, group: 'ff05::1', port: 1, ttl: 255 },
  ]);
});

codec('decoding tolerates the attributes a kernel before 4.3 omits, and refuses what it must have', () => {
  const old = new AttrWriter().nested(CMD_ATTR.DAEMON, (w) => {
    w.u32(DAEMON_ATTR.STATE, 2).str(DAEMON_ATTR.MCAST_IFN, 'eth1').u32(DAEMON_ATTR.SYNC_ID, 9);
  }).bytes();
  assert.equal(decoded(old), { state: 'backup', interface: 'eth1', syncId: 9 });
  const noIfn = new AttrWriter().nested(CMD_ATTR.DAEMON, (w) => { w.u32(DAEMON_ATTR.STATE, 1).u32(DAEMON_ATTR.SYNC_ID, 9); }).bytes();
  assert.throws(() => decoded(noIfn), (e: unknown) => e instanceof NetlinkCodecError && e.field === 'reply.daemon.mcast_ifn');
  const badState = new AttrWriter().nested(CMD_ATTR.DAEMON, (w) => {
    w.u32(DAEMON_ATTR.STATE, 3).str(DAEMON_ATTR.MCAST_IFN, 'eth1').u32(DAEMON_ATTR.SYNC_ID, 9);
  }).bytes();
  assert.throws(() => decoded(badState), /neither master \(1\) nor backup \(2\)/);
});

codec('encoding refuses what the kernel could not take, naming the field', () => {
  const base: SyncDaemon = { state: 'master', interface: 'd0', syncId: 1 };
  const refused: Array<[Record<string, unknown>, string]> = [
    [{ interface: 'sixteen-bytes-xx' }, 'daemon.interface'],
    [{ interface: '' }, 'daemon.interface'],
    [{ syncId: 256 }, 'daemon.syncId'],
    [{ maxLen: 70000 }, 'daemon.maxLen'],
    [{ port: -1 }, 'daemon.port'],
    [{ ttl: 256 }, 'daemon.ttl'],
    [{ group: 'not-an-ip' }, 'daemon.group'],
    [{ state: 'primary' }, 'daemon.state'],
  ];
  for (const [over, field] of refused) {
    assert.throws(() => encodeDaemon({ ...base, ...over } as unknown as SyncDaemon), (e: unknown) => e instanceof NetlinkCodecError && e.field === field, field);
  }
  assert.ok(encodeDaemon({ ...base, interface: 'fifteen-bytes-x' }).length > 0, '15 bytes fit');
});

codec.run();

async function failure(p: Promise<unknown>): Promise<IpvsError> {
  try { await p; } catch (err) { assert.instance(err, IpvsError); return err as IpvsError; }
  throw new Error('expected an IpvsError');
}

const fake = suite('fake kernel: sync daemons fail like Linux 6.1');

fake('master and backup together; EEXIST on a second start; ESRCH when stopping one not running', async () => {
  const k = new FakeIpvsKernel({ links: { d0: 1500, d1: 9000 } });
  assert.equal(await k.listDaemons(), []);
  await k.startDaemon({ state: 'backup', interface: 'd1', syncId: 6 });
  await k.startDaemon({ state: 'master', interface: 'd0', syncId: 5 });
  // As the kernel reported them in the VM: defaults filled in, the backup's maxLen from d1's MTU.
  assert.equal(await k.listDaemons(), [
    { state: 'master', interface: 'd0', syncId: 5, maxLen: 1472, group: '224.0.0.81', port: 8848, ttl: 1 },
    { state: 'backup', interface: 'd1', syncId: 6, maxLen: 8972, group: '224.0.0.81', port: 8848, ttl: 1 },
  ]);
  const again = await failure(k.startDaemon({ state: 'master', interface: 'd0', syncId: 9 }));
  assert.equal([again.op, again.code], ['startDaemon', 'EEXIST']);
  await k.stopDaemon('master');
  assert.equal((await k.listDaemons()).map((d) => d.state), ['backup']);
  const gone = await failure(k.stopDaemon('master'));
  assert.equal([gone.op, gone.code], ['stopDaemon', 'ESRCH']);
});

fake('ENODEV for an unknown interface, checked before EEXIST; EINVAL for what the client refuses or the kernel rejects', async () => {
  const k = new FakeIpvsKernel({ links: { d0: 1500 } });
  await k.startDaemon({ state: 'master', interface: 'd0', syncId: 5 });
  assert.is((await failure(k.startDaemon({ state: 'master', interface: 'nosuch0', syncId: 5 }))).code, 'ENODEV');
  assert.is((await failure(k.startDaemon({ state: 'backup', interface: 'sixteen-bytes-xx', syncId: 5 }))).code, 'EINVAL');
  assert.is((await failure(k.startDaemon({ state: 'backup', interface: 'd0', syncId: 5, group: '192.0.2.1' }))).code, 'EINVAL');
  assert.is((await failure(k.startDaemon({ state: 'backup', interface: 'd0', syncId: 5, group: '2001:db8::1' }))).code, 'EINVAL');
  await k.startDaemon({ state: 'backup', interface: 'd0', syncId: 5, group: 'ff02::1:2', maxLen: 100 });
  // A backup's maxLen is clamped to at least 1024; IPv6 headers are 48 bytes.
  assert.equal((await k.listDaemons())[1], { state: 'backup', interface: 'd0', syncId: 5, maxLen: 1024, group: 'ff02::1:2', port: 8848, ttl: 1 });
});

fake('EINVAL while a destination has another family than its service (the sync protocol cannot carry it)', async () => {
  const k = new FakeIpvsKernel({ links: { d0: 1500 } });
  const svc: IpvsService = { family: 6, protocol: 'TCP', address: '2001:db8::10', port: 80, scheduler: 'rr', flags: 0, timeout: 0, netmask: '128' };
  await k.addService(svc);
  await k.addDestination(svc, { family: 4, address: '10.0.0.6', port: 80, forward: 'tunnel', weight: 1, upperThreshold: 0, lowerThreshold: 0 });
  assert.is((await failure(k.startDaemon({ state: 'master', interface: 'd0', syncId: 1 }))).code, 'EINVAL');
  await k.deleteService(svc);
  await k.startDaemon({ state: 'master', interface: 'd0', syncId: 1 });
});

fake.run();

const m = (over: Partial<SyncDaemon> = {}): SyncDaemon => ({ state: 'master', interface: 'd0', syncId: 5, ...over });
const b = (over: Partial<SyncDaemon> = {}): SyncDaemon => ({ state: 'backup', interface: 'd0', syncId: 5, ...over });
/** As the kernel reports a daemon started with `d`'s settings and no options. */
const running = (d: SyncDaemon): SyncDaemon => ({ maxLen: 1472, group: '224.0.0.81', port: 8848, ttl: 1, ...d });

const plan = suite('planDaemons / syncDaemons');

plan('nothing running: start both; equal ones (kernel defaults filled in) untouched', () => {
  assert.equal(planDaemons([m(), b()], []), [{ op: 'start', daemon: m() }, { op: 'start', daemon: b() }]);
  assert.equal(planDaemons([m(), b()], [running(m()), running(b())]), []);
  // A kernel before 4.3 reports no group/port/ttl/maxLen: the defaults are meant.
  assert.equal(planDaemons([m({ group: '224.0.0.81', port: 8848, ttl: 1 })], [m()]), []);
  assert.equal(planDaemons([m({ group: 'FF02:0::1:2' })], [running(m({ group: 'ff02::1:2', maxLen: 1452 }))]), [], 'IPv6 group text canonicalised');
});

plan('a running daemon with another interface, syncId, group, port or ttl is stopped, then started', () => {
  for (const change of [{ interface: 'd1' }, { syncId: 6 }, { group: '239.1.2.3' }, { port: 8849 }, { ttl: 2 }]) {
    assert.equal(planDaemons([m(change)], [running(m())]), [{ op: 'stop', daemon: running(m()) }, { op: 'start', daemon: m(change) }], JSON.stringify(change));
  }
});

plan('maxLen: compared as the kernel clamps it, only when wanted', () => {
  assert.equal(planDaemons([b({ maxLen: 100 })], [running(b({ maxLen: 1024 }))]), [], 'a backup keeps at least 1024');
  assert.equal(planDaemons([m({ maxLen: 100 })], [running(m({ maxLen: 100 }))]), [], 'a master keeps 100');
  assert.equal(planDaemons([m({ maxLen: 1400 })], [running(m())]).map((s) => s.op), ['stop', 'start']);
  assert.equal(planDaemons([m()], [running(m({ maxLen: 9000 }))]), [], 'no wanted maxLen: any is fine');
});

plan('running daemons not wanted are stopped; two daemons of one state wanted is refused', () => {
  assert.equal(planDaemons([b()], [running(m()), running(b())]), [{ op: 'stop', daemon: running(m()) }]);
  assert.equal(planDaemons([], [running(b())]), [{ op: 'stop', daemon: running(b()) }]);
  assert.throws(() => planDaemons([m(), m({ syncId: 6 })], []), /2 master daemons wanted/);
});

plan('syncDaemons against the fake: converges, then does nothing; errors keep their code', async () => {
  const k = new FakeIpvsKernel({ links: { d0: 1500, d1: 1500 } });
  await k.startDaemon(m({ syncId: 1 }));
  const steps = await syncDaemons(k, [m({ syncId: 2 }), b({ interface: 'd1' })]);
  assert.equal(steps.map((s) => `${s.op} ${s.daemon.state} ${s.daemon.syncId}`), ['stop master 1', 'start master 2', 'start backup 5']);
  assert.equal((await k.listDaemons()).map((d) => [d.state, d.interface, d.syncId]), [['master', 'd0', 2], ['backup', 'd1', 5]]);
  assert.equal(await syncDaemons(k, [m({ syncId: 2 }), b({ interface: 'd1' })]), []);
  assert.is((await failure(syncDaemons(k, [m({ syncId: 2 }), b({ interface: 'nosuch' })]))).code, 'ENODEV');
  assert.equal((await k.listDaemons()).map((d) => d.state), ['master'], 'the backup was stopped before the failed start');
  await syncDaemons(k, []);
  assert.equal(await k.listDaemons(), []);
});

plan('syncDaemons: a stop answered ESRCH (stopped meanwhile) counts as done; other failures are thrown', async () => {
  const k = new FakeIpvsKernel({ links: { d0: 1500 } });
  await k.startDaemon(m());
  k.fail('stopDaemon', 'ESRCH', { times: 1 });
  assert.equal((await syncDaemons(k, [])).map((s) => s.op), ['stop']);
  k.fail('listDaemons', 'EPERM', { times: 1 });
  assert.is((await failure(syncDaemons(k, []))).code, 'EPERM');
});

plan.run();
