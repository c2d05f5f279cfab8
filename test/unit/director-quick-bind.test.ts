// Binding VIPs without reading the node back (dataplane/director/quick-bind.ts through
// dataplane/agent/lvs-device.ts set()), against the in-memory kernel model: new quiet VIPs cost a
// drop rule each and one `ip -batch`, in that order; the director check that follows finds nothing
// to do (appended rules compare equal in any order); announced VIPs, SNAT services and a first VIP
// of a family take the full sync; a failed quick step is repaired by the full sync it falls back to.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { PlanService } from '../../api/plan.ts';
import { createLvsDevice } from '../../dataplane/agent/lvs-device.ts';
import { planQuickBind } from '../../dataplane/director/quick-bind.ts';
import { normalizeSpec } from '../../dataplane/director/plan.ts';
import type { Runner } from '../../dataplane/exec.ts';
import { FakeKernel } from '../../dataplane/realserver/testing/fake-netns.ts';
import { IP_BATCH_LINES, ipBatch } from '../../dataplane/realserver/iproute.ts';

const test = suite('director: quick VIP binding');
const A = '192.0.2.10', B = '192.0.2.20', C = '192.0.2.5', D = '192.0.2.30';

const svc = (vip: string, over: Partial<PlanService> = {}): PlanService => ({
  key: `TCP/${vip.includes(':') ? `[${vip}]` : vip}:80`, owner: { namespace: 'default', name: 'web', generation: 1 }, portName: 'http',
  vip, family: vip.includes(':') ? 6 : 4, protocol: 'TCP', port: 80, forwarding: 'NAT', natReturnPath: 'Gateway', scheduler: { name: 'rr', flags: [] },
  prepareRealServers: false, realServers: [], directors: ['d1'], ...over,
});

function setup() {
  const k = new FakeKernel({ ipvs: true });
  const ns = k.ns('/run/netns/director');
  ns.addLink('eth0', 'veth', true).addrs.push({ address: '192.0.2.2', prefixLen: 24, scope: 'global', label: 'eth0' }, { address: '2001:db8::2', prefixLen: 64, scope: 'global' });
  const calls: Array<{ cmd: string; input: string }> = [];
  const inner = k.runner();
  const run: Runner = (cmd, args, o) => {
    calls.push({ cmd: args.slice(args.indexOf('--') + 1).join(' '), input: o?.input ?? '' });
    return inner(cmd, args, o);
  };
  const plan: PlanService[] = [];
  const on = new Set<string>();
  const device = createLvsDevice({
    run, node: 'd1', plan: () => plan, target: { kind: 'named', name: 'director' }, kernelRelease: '6.1.0-56-amd64', announce: (v) => on.has(v),
  });
  const lvs0 = () => (ns.links.get('lvs0')?.addrs ?? []).map((a) => `${a.address}/${a.prefixLen}`).sort();
  const arp = () => ns.nft.get('arp lvs_operator') ?? '';
  const since = (n: number) => calls.slice(n);
  return { k, ns, calls, plan, on, device, lvs0, arp, since };
}

/** A quick bind reads nothing: no `show`, no `list`, no sysctl. */
const readBack = (cs: Array<{ cmd: string }>) => cs.filter((c) => /\bshow\b|\blist\b|^sysctl/.test(c.cmd));

test('new quiet VIPs: a drop rule each, then one ip -batch; the director check then changes nothing', async () => {
  const t = setup();
  t.plan.push(svc(A), svc(B));
  await t.device.set([A, B]); // the first bind is a full sync
  assert.equal(t.lvs0(), [`${A}/32`, `${B}/32`]);
  const n = t.calls.length;
  t.plan.push(svc(C), svc(D));
  await t.device.set([A, B, C, D]);
  const cs = t.since(n);
  assert.equal(cs.map((c) => c.cmd), ['nft -f -', 'ip -batch -'], 'two commands, the drop rules first');
  assert.equal(cs[0]!.input.trim().split('\n'), [
    `add rule arp lvs_operator input arp operation request arp daddr ip ${C} drop`,
    `add rule arp lvs_operator input arp operation request arp daddr ip ${D} drop`,
  ]);
  assert.equal(cs[1]!.input.trim().split('\n'), [`addr add ${C}/32 dev lvs0`, `addr add ${D}/32 dev lvs0`]);
  assert.equal(t.lvs0(), [`${A}/32`, `${B}/32`, `${C}/32`, `${D}/32`].sort());
  for (const v of [A, B, C, D]) assert.match(t.arp(), `arp daddr ip ${v} drop`);
  // C's rule was appended after A's and B's: the full check reads everything and writes nothing.
  const m = t.calls.length;
  assert.equal(await t.device.list(), [A, B, C, D]);
  const check = t.since(m);
  assert.ok(readBack(check).length > 0, 'the director check reads the node back');
  assert.equal(check.filter((c) => /^(nft -f|ip -batch|sysctl -q -w)/.test(c.cmd)), [], 'nothing to change');
});

test('a removed quiet VIP: its address goes in one ip -batch, its drop rule stays until the next full sync', async () => {
  const t = setup();
  t.plan.push(svc(A), svc(B), svc(C));
  await t.device.set([A, B, C]);
  t.plan.splice(1, 1);
  const n = t.calls.length;
  await t.device.set([A, C]);
  assert.equal(t.since(n).map((c) => [c.cmd, c.input.trim()]), [['ip -batch -', `addr del ${B}/32 dev lvs0`]]);
  assert.equal(t.lvs0(), [`${A}/32`, `${C}/32`].sort());
  assert.match(t.arp(), `arp daddr ip ${B} drop`);
  await t.device.list();
  assert.not.match(t.arp(), `arp daddr ip ${B} drop`);
  // Bound again quickly: the rule is added back once.
  t.plan.push(svc(B));
  await t.device.set([A, B, C]);
  assert.is(t.arp().split(`daddr ip ${B} drop`).length - 1, 1);
});

test('a removed VIP whose rule is still there is bound again without a second rule', async () => {
  const t = setup();
  t.plan.push(svc(A), svc(B));
  await t.device.set([A, B]);
  await t.device.set([A]);
  const n = t.calls.length;
  await t.device.set([A, B]);
  assert.equal(t.since(n).map((c) => c.cmd), ['ip -batch -'], 'no nft: the rule was kept');
  assert.is(t.arp().split(`daddr ip ${B} drop`).length - 1, 1);
});

test('what the quick path leaves to a full sync: announced VIPs, SNAT, a first VIP of a family or NAT family', () => {
  const last = normalizeSpec({ vips: [{ address: A, announce: false }], snat: [], natFamilies: [4], kernelRelease: '6.1.0' });
  const base = { last, quiet: new Set([A]), bound: [A], before: last.vips, announce: () => false, services: [svc(A), svc(C)] };
  assert.equal(planQuickBind({ ...base, want: [A, C] }), { rules: [`add rule arp lvs_operator input arp operation request arp daddr ip ${C} drop`], add: [C], remove: [] });
  assert.equal(planQuickBind({ ...base, want: [A, C], announce: (v) => v === C }), { full: `${C} is announced` });
  assert.equal(planQuickBind({ ...base, want: [A, C], services: [svc(A), svc(C, { natReturnPath: 'SNAT' })] }), { full: `TCP/${C}:80 needs an SNAT rule` });
  assert.equal(planQuickBind({ ...base, want: [A, '2001:db8::5'], services: [svc('2001:db8::5', { forwarding: 'DR' })] }), { full: 'no quiet IPv6 VIP yet' });
  const dual = normalizeSpec({ ...last, vips: [...last.vips, { address: '2001:db8::9', announce: false }] });
  assert.equal(planQuickBind({ ...base, last: dual, want: [A, '2001:db8::5'], services: [svc('2001:db8::5')] }), { full: 'the first IPv6 NAT service' });
  const withSnat = normalizeSpec({ ...last, snat: [{ family: 4, protocol: 'TCP', vip: A, port: 80 }] });
  assert.equal(planQuickBind({ ...base, last: withSnat, want: [] }), { full: `${A} has an SNAT rule` });
  assert.equal(planQuickBind({ ...base, before: [{ address: A, announce: true }], want: [] }), { full: `${A} is announced` });
  assert.equal(planQuickBind({ ...base, want: [A] }), { full: 'nothing to add or remove' });
  assert.equal(planQuickBind({ ...base, want: [] }), { full: `${A} is the last quiet IPv4 VIP` });
  assert.equal(planQuickBind({ ...base, bound: [A, C], want: [C] }), { rules: [], add: [], remove: [A] });
});

test('an announced VIP or an SNAT service is bound by a full sync (the node is read back)', async () => {
  const t = setup();
  t.plan.push(svc(A));
  await t.device.set([A]);
  t.plan.push(svc(C));
  t.on.add(C);
  let n = t.calls.length;
  await t.device.set([A, C]);
  assert.ok(readBack(t.since(n)).length > 0, 'announced: full sync');
  assert.not.match(t.arp(), `daddr ip ${C} drop`);
  t.plan.push(svc(D, { natReturnPath: 'SNAT' }));
  n = t.calls.length;
  await t.device.set([A, C, D]);
  assert.ok(readBack(t.since(n)).length > 0, 'SNAT: full sync');
  assert.match(t.ns.nft.get('inet lvs_operator') ?? '', `ip daddr ${D}`);
});

test('a quick step that fails (the address is there already) falls back to a full sync that repairs', async () => {
  const t = setup();
  t.plan.push(svc(A));
  await t.device.set([A]);
  t.ns.links.get('lvs0')!.addrs.push({ address: C, prefixLen: 32, scope: 'global', label: 'lvs0' }); // someone else
  t.plan.push(svc(C), svc(D));
  await t.device.set([A, C, D]);
  assert.equal(t.lvs0(), [`${A}/32`, `${C}/32`, `${D}/32`].sort());
  for (const v of [C, D]) assert.is(t.arp().split(`daddr ip ${v} drop`).length - 1, 1, `one drop rule for ${v}`);
  // The full sync wrote the sorted table; the next quick bind works again.
  const n = t.calls.length;
  t.plan.push(svc(B));
  await t.device.set([A, B, C, D]);
  assert.equal(t.since(n).map((c) => c.cmd), ['nft -f -', 'ip -batch -']);
});

test('a quickly bound VIP that becomes announced: one full sync finds its uplink and announces it', async () => {
  const t = setup();
  t.plan.push(svc(A));
  await t.device.set([A]);
  t.plan.push(svc(C));
  await t.device.set([A, C]);
  t.on.add(C);
  await t.device.reannounce();
  await new Promise((r) => setImmediate(r));
  assert.not.match(t.arp(), `daddr ip ${C} drop`);
  assert.ok(t.ns.announced.includes(`${C}%eth0`), `announced: ${t.ns.announced.join(', ')}`);
  assert.equal(t.device.announced(), [C]);
});

test('ip -batch in chunks of IP_BATCH_LINES, in order, stopping at the first failed chunk', async () => {
  const seen: string[][] = [];
  const lines = Array.from({ length: 2 * IP_BATCH_LINES + 500 }, (_, i) => `addr add 10.0.${i >> 8}.${i & 255}/32 dev lvs0`);
  await ipBatch(async (_cmd, _args, o) => { seen.push(o!.input!.trim().split('\n')); return { stdout: '', stderr: '' }; }, lines);
  assert.equal(seen.map((c) => c.length), [IP_BATCH_LINES, IP_BATCH_LINES, 500]);
  assert.equal(seen.flat(), lines);
  let calls = 0;
  const failing = ipBatch(async () => { if (++calls === 2) throw new Error('RTNETLINK answers: File exists'); return { stdout: '', stderr: '' }; }, lines);
  await failing.then(() => assert.unreachable('must fail'), (err: Error) => assert.match(err.message, 'File exists'));
  assert.is(calls, 2);
});

test('a listing asked for while a bind waits its turn lists the VIPs the bind left (the director check runs beside the syncs)', async () => {
  const t = setup();
  t.plan.push(svc(A));
  await t.device.set([A]);
  t.plan.push(svc(B));
  const binding = t.device.set([A, B]);
  const listing = t.device.list();
  await binding;
  assert.equal(await listing, [A, B], 'the listing runs after the bind, with its VIPs');
  assert.equal(t.lvs0(), [`${A}/32`, `${B}/32`], 'the bind is not undone');
});

test.run();
