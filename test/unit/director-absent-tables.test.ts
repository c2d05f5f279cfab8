// The director check does not list our nft tables it knows are absent and the spec does not want
// (dataplane/director/setup.ts absentTables, dataplane/agent/lvs-device.ts): an `nft` start each,
// ~270 ms of CPU under emulation. Every LIST_ALL_EVERY-th full sync lists them all, so a table of
// ours made from outside is still removed; the quick paths, which write tables, forget what was known.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FakeKernel } from '../../dataplane/realserver/testing/fake-netns.ts';
import { createLvsDevice, LIST_ALL_EVERY } from '../../dataplane/agent/lvs-device.ts';
import { syncDirector, unlistedTables } from '../../dataplane/director/setup.ts';
import type { DirectorSpec } from '../../dataplane/director/plan.ts';
import type { PlanService } from '../../api/plan.ts';

const test = suite('director: absent nft tables');
const A = '198.51.100.1';
const B = '198.51.100.2';

const svc = (vip: string, over: Partial<PlanService> = {}): PlanService => ({
  key: `TCP/${vip}:80`, owner: { namespace: 'default', name: 'web', generation: 1 }, portName: 'http',
  vip, family: 4, protocol: 'TCP', port: 80, forwarding: 'NAT', natReturnPath: 'Gateway', scheduler: { name: 'rr', flags: [] },
  prepareRealServers: false, realServers: [], directors: ['d1'], ...over,
});

function node() {
  const k = new FakeKernel({ ipvs: true });
  const ns = k.ns('/run/netns/director');
  ns.addLink('eth0', 'veth', true).addrs.push({ address: '192.0.2.2', prefixLen: 24, scope: 'global', label: 'eth0' });
  /** The nft families listed since the last call. */
  const listed = () => {
    const out = k.calls.filter((c) => c.includes('nft') && c.includes('list')).map((c) => c[c.indexOf('table') + 1]!);
    k.calls.length = 0;
    return out.sort();
  };
  return { k, ns, listed };
}

test('unlistedTables(): only absent families the spec has no rule for, and never inet while SNAT rules are held', () => {
  const spec: DirectorSpec = { vips: [{ address: A, announce: false }], snat: [], natFamilies: [4], kernelRelease: '6.1.0' };
  assert.equal(unlistedTables(spec, ['inet', 'arp', 'ip6']), ['inet', 'ip6'], 'the quiet VIP wants the arp table');
  assert.equal(unlistedTables({ ...spec, snat: [{ family: 4, protocol: 'TCP', vip: A, port: 80 }] }, ['inet', 'ip6']), ['ip6']);
  assert.equal(unlistedTables({ ...spec, keepSnat: [{ family: 4, protocol: 'TCP', vip: A, port: 80 }] }, ['inet', 'ip6']), ['ip6']);
  assert.equal(unlistedTables(spec), []);
});

test('syncDirector skips an absent table at its first read, and reads every table back when it changed something', async () => {
  const { k, ns, listed } = node();
  const opts = { run: k.runner(), target: { kind: 'named', name: 'director' } as const, absentTables: ['inet', 'ip6'] as const };
  const spec: DirectorSpec = { vips: [{ address: A, announce: false }], snat: [], natFamilies: [4], kernelRelease: '6.1.0' };
  const r = await syncDirector(opts, spec);
  assert.ok(r.changed);
  assert.equal(listed(), ['arp', 'arp', 'inet', 'ip6'], 'first read: arp only; after the changes: all three');
  const again = await syncDirector(opts, spec);
  assert.not.ok(again.changed);
  assert.equal(listed(), ['arp']);
  assert.equal(ns.nft.get('arp lvs_operator')?.includes(A), true);
});

test('the device\'s checks skip the absent tables, list all every LIST_ALL_EVERY-th one, and remove a table of ours made from outside', async () => {
  const { ns, listed, k } = node();
  const plan = [svc(A), svc(B)];
  const device = createLvsDevice({ run: k.runner(), node: 'd1', plan: () => plan, target: { kind: 'named', name: 'director' }, kernelRelease: '6.1.0-56-amd64' });
  await device.set([A, B]); // the first full sync (lists all)
  assert.equal(listed(), ['arp', 'arp', 'inet', 'inet', 'ip6', 'ip6'], 'the first sync read everything, twice (it changed things)');
  await device.list();
  assert.equal(listed(), ['arp'], 'a check lists only the table it wants');
  // A table of ours made from outside: found at the next check that lists all.
  ns.nft.set('ip6 lvs_operator', 'table ip6 lvs_operator {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ticmpv6 type nd-neighbor-solicit drop\n\t}\n}\n');
  let checks = 0;
  while (ns.nft.has('ip6 lvs_operator') && checks < 2 * LIST_ALL_EVERY) { await device.list(); checks++; }
  assert.not.ok(ns.nft.has('ip6 lvs_operator'), 'the outside table was never removed');
  assert.ok(checks <= LIST_ALL_EVERY, `removed after ${checks} checks`);
  listed();
  await device.list();
  assert.equal(listed(), ['arp']);
});

test('after a quick bind the next check lists every table', async () => {
  const { listed, k } = node();
  let plan = [svc(A)];
  const device = createLvsDevice({ run: k.runner(), node: 'd1', plan: () => plan, target: { kind: 'named', name: 'director' }, kernelRelease: '6.1.0-56-amd64' });
  await device.set([A]);
  await device.list();
  listed();
  plan = [svc(A), svc(B)];
  await device.set([A, B]); // quick: no read back
  assert.equal(listed(), []);
  await device.list();
  assert.equal(listed(), ['arp', 'inet', 'ip6']);
});

test.run();
