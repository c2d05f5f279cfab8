// Guest suite of test/kernel/smoke.test.ts: runs inside the VM (see lab/vm/vm.ts).
// A NAT virtual service programmed with the stock ipvsadm, weighted round robin 1:2, must split
// 60 sequential connections exactly 20/40 and the real servers must see the client's own address;
// a UDP service with rr must alternate datagrams.
import { readFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { settledStats } from '../../../lab/guest/agent-net.ts';
import { listIpvs } from '../../../lab/guest/ipvsadm.ts';
import { natTopology, nsRun, nsSh, run, type NatTopology } from '../../../lab/guest/netns.ts';
import { runClient, startServer, stopServers } from '../../../lab/guest/traffic.ts';

const test = suite('kernel smoke');
let topo: NatTopology | undefined;

test.after(async () => {
  await stopServers();
  topo?.destroy();
});

test('boots the provisioned Debian kernel', () => {
  assert.is(run(['uname', '-r']).trim(), process.env.LVS_KERNEL_VERSION);
  assert.match(readFileSync('/proc/version', 'utf8'), /Debian/);
});

test('IPVS and every scheduler module are loaded', () => {
  const loaded = new Set(readFileSync('/proc/modules', 'utf8').split('\n').map((l) => l.split(' ')[0]));
  for (const m of ['ip_vs', 'ip_vs_rr', 'ip_vs_wrr', 'ip_vs_mh', 'ip_vs_ovf', 'ipip', 'dummy', 'veth', 'bridge']) {
    assert.ok(loaded.has(m), `module ${m} not loaded`);
  }
});

test('NAT service with wrr 1:2 splits 60 connections 20/40', async () => {
  topo = natTopology({ realServers: 2 });
  const [rs1, rs2] = topo.realServers;
  assert.ok(rs1 && rs2);
  await Promise.all(topo.realServers.map((rs) => startServer(rs.ns, { id: rs.ns, tcp: [80], udp: [53] })));
  nsRun('director', ['ipvsadm', '-A', '-t', `${topo.vip}:80`, '-s', 'wrr']);
  nsRun('director', ['ipvsadm', '-a', '-t', `${topo.vip}:80`, '-r', `${rs1.addr}:80`, '-m', '-w', '1']);
  nsRun('director', ['ipvsadm', '-a', '-t', `${topo.vip}:80`, '-r', `${rs2.addr}:80`, '-m', '-w', '2']);

  const res = await runClient('client', { host: topo.vip, port: 80, count: 60 });
  assert.is(res.errors, 0, res.firstError);
  assert.equal(res.byId, { rs1: 20, rs2: 40 });
  // NAT rewrites only the destination: the real servers see the client itself, at their own address.
  for (const r of res.replies) {
    assert.is(r.peer.split(':')[0], topo.clientAddr);
    assert.is(r.local, `${r.id === 'rs1' ? rs1.addr : rs2.addr}:80`);
  }
});

test('UDP NAT service with rr alternates datagrams from fresh source ports', async () => {
  assert.ok(topo);
  const vip = topo.vip;
  nsSh('director', [`ipvsadm -A -u ${vip}:53 -s rr`, ...topo.realServers.map((rs) => `ipvsadm -a -u ${vip}:53 -r ${rs.addr}:53 -m`)].join('\n'));
  const res = await runClient('client', { proto: 'udp', host: topo.vip, port: 53, count: 10 });
  assert.is(res.errors, 0, res.firstError);
  assert.equal(res.byId, { rs1: 5, rs2: 5 });
  for (const r of res.replies) assert.is(r.peer.split(':')[0], topo.clientAddr);
});

test('ipvsadm -Ln shows the service, its masquerading destinations and their counters', async () => {
  const [svc0, udp] = listIpvs('director');
  // ActiveConn/InActConn are live connection entries, which expire (TIME_WAIT etc.) on a slow VM:
  // the exact counts are asserted on the cumulative --stats counters below instead.
  assert.equal({ ...svc0, dests: svc0?.dests.map(({ address, forward, weight }) => ({ address, forward, weight })) }, {
    proto: 'TCP', address: '198.51.100.10:80', scheduler: 'wrr', flags: '',
    dests: [
      { address: '10.0.0.11:80', forward: 'Masq', weight: 1 },
      { address: '10.0.0.12:80', forward: 'Masq', weight: 2 },
    ],
  });
  assert.equal([udp?.proto, udp?.address, udp?.scheduler, udp?.dests.map((d) => d.weight)], ['UDP', '198.51.100.10:53', 'rr', [1, 1]]);
  // The kernel folds per-CPU counters into the totals every 2 s: read them once they settle (with
  // two vCPUs a read right after the traffic can miss the connections of the other CPU).
  const [svc] = await settledStats('director');
  assert.is(svc?.conns, 60);
  assert.equal(svc?.dests.map((d) => [d.address, d.conns]), [['10.0.0.11:80', 20], ['10.0.0.12:80', 40]]);
  assert.ok((svc?.outPkts ?? 0) > 0, 'NAT replies must pass back through the director');
  // IPVS state is per network namespace: the guest's root namespace has no service.
  assert.equal(listIpvs(), []);
});

test.run();
