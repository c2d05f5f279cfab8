// The return path of DR/TUN pods on their own director node (dataplane/agent/return-path.ts): which
// root-namespace interfaces their replies arrive on (from `ip -j link show` on both sides), and
// which sysctls make the node forward replies whose source is one of its local addresses. The
// kernel truth (replies dropped as martians without it, forwarded with it) is in the system tier.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { Runner } from '../../dataplane/exec.ts';
import { planReturnPath, podUplinks, readRecord, syncReturnPath, type RawIpLink } from '../../dataplane/agent/return-path.ts';

const test = suite('agent: return path of pods on the director node');

// Root namespace: eth0, bridge cni0 with veth-a (peer ifindex 2 in pod a), veth-b without a bridge
// (peer ifindex 2 in pod b; same ifindex, other namespace), and a veth whose peer is elsewhere.
const HOST: RawIpLink[] = [
  { ifindex: 1, ifname: 'lo' },
  { ifindex: 2, ifname: 'eth0' },
  { ifindex: 3, ifname: 'cni0' },
  { ifindex: 7, ifname: 'veth-a', link_index: 2, link_netnsid: 0, master: 'cni0' },
  { ifindex: 8, ifname: 'veth-b', link_index: 2, link_netnsid: 1 },
  { ifindex: 9, ifname: 'veth-x', link_index: 5, link_netnsid: 2, master: 'br-x' },
];
const POD_A: RawIpLink[] = [{ ifindex: 1, ifname: 'lo' }, { ifindex: 2, ifname: 'eth0', link_index: 7, link_netnsid: 0 }, { ifindex: 3, ifname: 'tunl0' }];
const POD_B: RawIpLink[] = [{ ifindex: 1, ifname: 'lo' }, { ifindex: 2, ifname: 'eth0', link_index: 8, link_netnsid: 0 }];

test('podUplinks: a bridged veth gives its bridge, a plain veth itself; lo and tunl0 give nothing', () => {
  assert.equal(podUplinks(HOST, POD_A), ['cni0']);
  assert.equal(podUplinks(HOST, POD_B), ['veth-b']);
});

test('podUplinks: the peer relation must hold both ways (ifindexes are per namespace)', () => {
  // eth0 points at host ifindex 9, but veth-x's peer is ifindex 5, not this eth0 (2).
  assert.equal(podUplinks(HOST, [{ ifindex: 2, ifname: 'eth0', link_index: 9, link_netnsid: 0 }]), []);
  // A link_index without link_netnsid is a link in the pod's own namespace (vlan, macvlan on eth0).
  assert.equal(podUplinks(HOST, [{ ifindex: 4, ifname: 'eth0.5', link_index: 7 }]), []);
  assert.equal(podUplinks([], POD_A), []);
});

const sys = (o: Record<string, string>) => new Map(Object.entries(o).map(([k, v]) => [`net.ipv4.conf.${k}`, v]));

test('planReturnPath: accept_local=1 on the interface, never on conf.all; rp_filter only where strict', () => {
  const p = planReturnPath(['cni0'], sys({ 'all.rp_filter': '0', 'cni0.accept_local': '0', 'cni0.rp_filter': '0' }), {});
  assert.equal(p.steps, [{ key: 'net.ipv4.conf.cni0.accept_local', from: '0', to: '1', op: 'set' }]);
  assert.equal(p.record, { cni0: { accept_local: '0', rp_filter: '' } });
  assert.ok(p.steps.every((s) => !s.key.includes('.all.')));
});

test('planReturnPath: strict rp_filter (from conf.all or the interface) becomes loose on the interface only', () => {
  for (const [all, dev] of [['1', '0'], ['0', '1'], ['1', '1']]) {
    const p = planReturnPath(['cni0'], sys({ 'all.rp_filter': all!, 'cni0.accept_local': '1', 'cni0.rp_filter': dev! }), {});
    assert.equal(p.steps, [{ key: 'net.ipv4.conf.cni0.rp_filter', from: dev!, to: '2', op: 'set' }], `all=${all} dev=${dev}`);
  }
  // Loose already (max(all, dev) = 2): nothing to do.
  assert.equal(planReturnPath(['cni0'], sys({ 'all.rp_filter': '2', 'cni0.accept_local': '1', 'cni0.rp_filter': '1' }), {}).steps, []);
});

test('planReturnPath: a prepared interface keeps its record; one found prepared by someone else is not ours', () => {
  const rec = { cni0: { accept_local: '0', rp_filter: '1' } };
  const p = planReturnPath(['cni0'], sys({ 'all.rp_filter': '0', 'cni0.accept_local': '1', 'cni0.rp_filter': '2' }), rec);
  assert.equal(p, { steps: [], record: rec });
  assert.equal(planReturnPath(['veth-b'], sys({ 'all.rp_filter': '0', 'veth-b.accept_local': '1', 'veth-b.rp_filter': '0' }), {}), { steps: [], record: {} });
});

test('planReturnPath: an interface no longer needed gets its previous values back, unless changed since or gone', () => {
  const rec = { cni0: { accept_local: '0', rp_filter: '1' }, 'veth-b': { accept_local: '0', rp_filter: '' }, gone: { accept_local: '0', rp_filter: '' } };
  const p = planReturnPath([], sys({ 'all.rp_filter': '0', 'cni0.accept_local': '1', 'cni0.rp_filter': '0', 'veth-b.accept_local': '1', 'veth-b.rp_filter': '0' }), rec);
  assert.equal(p.steps, [
    { key: 'net.ipv4.conf.cni0.accept_local', from: '1', to: '0', op: 'restore' },
    // cni0.rp_filter is 0, not our 2: someone changed it since; left alone.
    { key: 'net.ipv4.conf.veth-b.accept_local', from: '1', to: '0', op: 'restore' },
  ]);
  assert.equal(p.record, {});
});

/** A runner with `ip -j link show` per namespace and a sysctl table shaped like procps' output. */
function fakeRunner(values: Map<string, string>, calls: string[]): Runner {
  return async (cmd, args) => {
    const argv = cmd === 'nsenter' ? args.slice(2) : args;
    const ns = cmd === 'nsenter' ? args[0]! : 'host';
    const tool = cmd === 'nsenter' ? args[1] === '--' ? args[2]! : args[1]! : cmd;
    const rest = cmd === 'nsenter' ? argv.slice(1) : argv;
    calls.push(`${ns} ${tool} ${rest.join(' ')}`);
    if (tool === 'ip') {
      const links = ns === 'host' ? HOST : ns.endsWith('/pod-a') ? POD_A : POD_B;
      return { stdout: JSON.stringify(links), stderr: '', code: 0 };
    }
    if (tool === 'sysctl' && rest.includes('-w')) {
      for (const kv of rest.filter((a) => a.includes('='))) values.set(kv.split('=')[0]!, kv.split('=')[1]!);
      return { stdout: '', stderr: '', code: 0 };
    }
    if (tool === 'sysctl') {
      return { stdout: rest.filter((k) => values.has(k)).map((k) => `${k} = ${values.get(k)}`).join('\n'), stderr: '', code: 0 };
    }
    throw new Error(`unexpected ${cmd} ${args.join(' ')}`);
  };
}

test('syncReturnPath: prepares, is idempotent (a restarted agent changes nothing), and undoes from its record', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'return-path-'));
  const recordPath = join(dir, 'return-path.json');
  const values = sys({ 'all.rp_filter': '1', 'cni0.accept_local': '0', 'cni0.rp_filter': '0', 'veth-b.accept_local': '0', 'veth-b.rp_filter': '2' });
  const calls: string[] = [];
  const log = pino({ level: 'silent' });
  const opts = { run: fakeRunner(values, calls), log, recordPath };
  try {
    const targets = [{ kind: 'host' as const }, { kind: 'path' as const, path: '/x/pod-a' }, { kind: 'path' as const, path: '/x/pod-b' }];
    assert.equal(await syncReturnPath(opts, targets), ['cni0', 'veth-b']);
    assert.is(values.get('net.ipv4.conf.cni0.accept_local'), '1');
    assert.is(values.get('net.ipv4.conf.cni0.rp_filter'), '2');
    assert.is(values.get('net.ipv4.conf.veth-b.accept_local'), '1');
    assert.is(values.get('net.ipv4.conf.veth-b.rp_filter'), '2', 'loose already: untouched');
    assert.is(values.get('net.ipv4.conf.all.rp_filter'), '1', 'conf.all untouched');
    assert.equal(readRecord(recordPath), { cni0: { accept_local: '0', rp_filter: '0' }, 'veth-b': { accept_local: '0', rp_filter: '' } });

    calls.length = 0;
    assert.equal(await syncReturnPath(opts, targets), ['cni0', 'veth-b']);
    assert.equal(calls.filter((c) => c.includes(' -w ')), [], 'second pass writes nothing');

    // Pod b no longer serves a VIP of this node: veth-b goes back, cni0 stays.
    await syncReturnPath(opts, targets.slice(0, 2));
    assert.is(values.get('net.ipv4.conf.veth-b.accept_local'), '0');
    assert.is(values.get('net.ipv4.conf.cni0.accept_local'), '1');
    await syncReturnPath(opts, []);
    assert.is(values.get('net.ipv4.conf.cni0.accept_local'), '0');
    assert.is(values.get('net.ipv4.conf.cni0.rp_filter'), '0');
    assert.equal(readRecord(recordPath), {});
    calls.length = 0;
    assert.equal(await syncReturnPath(opts, []), []);
    assert.equal(calls, [], 'nothing recorded, nothing needed: no command at all');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
