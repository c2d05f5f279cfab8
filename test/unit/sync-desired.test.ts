import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { PlanService } from '../../api/plan.ts';
import { desiredState, type DesiredMemo } from '../../dataplane/sync/desired.ts';
import { ipvsServiceKey } from '../../dataplane/sync/keys.ts';
import { planService, rs } from '../lib/sync-fixtures.ts';

const test = suite('sync: desired state');

test('only services this node directs; VIPs owned; forwarding and weights mapped', () => {
  const d = desiredState([
    planService({ realServers: [rs('10.0.0.2', 8080, { weight: 3 }), rs('10.0.0.1', 8080, { state: 'Draining', weight: 5 })] }),
    planService({ vip: '198.51.100.7', forwarding: 'DR', directors: ['node-b'] }),
    planService({ vip: '198.51.100.8', port: 53, protocol: 'UDP', forwarding: 'DR', directors: ['node-a', 'node-b'], realServers: [rs('10.0.0.9', 53)] }),
  ], 'node-a');
  assert.equal(d.ownedVips, ['198.51.100.8', '203.0.113.10']);
  assert.equal(d.services.map((s) => `${s.service.protocol}/${s.service.address}:${s.service.port}`), ['TCP/203.0.113.10:80', 'UDP/198.51.100.8:53']);
  const web = d.services[0]!;
  assert.equal(web.service, { family: 4, protocol: 'TCP', address: '203.0.113.10', port: 80, scheduler: 'wlc', flags: 0, timeout: 0, netmask: '255.255.255.255' });
  assert.equal(web.destinations.map((x) => [x.address, x.weight, x.forward]), [['10.0.0.1', 0, 'masq'], ['10.0.0.2', 3, 'masq']], 'sorted; Draining → 0');
  assert.is(d.services[1]!.destinations[0]!.forward, 'droute');
  assert.is(d.owners.get('TCP/203.0.113.10:80'), 'default/web');
  assert.equal(d.problems, []);
});

test('scheduler flags and persistence become IP_VS_SVC_F_* bits, timeout and netmask', () => {
  const [sh] = desiredState([planService({
    scheduler: { name: 'sh', flags: ['sh-fallback', 'sh-port'] },
    persistence: { timeoutSeconds: 300, netmask: '255.255.255.0' },
  })], 'node-a').services;
  assert.is(sh!.service.flags, 0x1 | 0x8 | 0x10);
  assert.is(sh!.service.timeout, 300);
  assert.is(sh!.service.netmask, '255.255.255.0');
  const [mh] = desiredState([planService({ scheduler: { name: 'mh', flags: ['mh-port'] } })], 'node-a').services;
  assert.is(mh!.service.flags, 0x10);
  const [v6] = desiredState([planService({
    vip: '2001:DB8::0:10', family: 6, persistence: { timeoutSeconds: 60, netmask: '64' }, realServers: [rs('2001:db8::2', 80)],
  })], 'node-a').services;
  assert.is(v6!.service.address, '2001:db8::10');
  assert.is(v6!.service.netmask, '64');
  const [v6plain] = desiredState([planService({ vip: '2001:db8::10', family: 6, realServers: [] })], 'node-a').services;
  assert.is(v6plain!.service.netmask, '128', 'the kernel refuses IPv6 netmask 0');
});

test('TUN: tunnel type, port and checksum flags on every destination; mixed family allowed', () => {
  const d = desiredState([planService({
    forwarding: 'TUN',
    tunnel: { type: 'gue', port: 5555, flags: ['csum', 'remcsum'] },
    realServers: [rs('10.0.0.1', 80), rs('2001:db8::7', 80)],
    port: 80,
  })], 'node-a');
  assert.equal(d.problems, []);
  assert.equal(d.services[0]!.destinations.map((x) => [x.family, x.forward, x.tunnelType, x.tunnelPort, x.tunnelFlags]), [
    [4, 'tunnel', 'gue', 5555, 3],
    [6, 'tunnel', 'gue', 5555, 3],
  ]);
  const [ipip] = desiredState([planService({ forwarding: 'TUN' })], 'node-a').services;
  assert.equal([ipip!.destinations[0]!.tunnelType, ipip!.destinations[0]!.tunnelPort, ipip!.destinations[0]!.tunnelFlags], ['ipip', 0, 0]);
});

test('a bad real server is skipped and named; the service stays', () => {
  const d = desiredState([planService({
    realServers: [rs('10.0.0.1', 8080), rs('2001:db8::1', 8080), rs('nope', 1), rs('10.0.0.3', 70000), rs('10.0.0.1', 8080)],
  })], 'node-a');
  assert.equal(d.services[0]!.destinations.map((x) => x.address), ['10.0.0.1']);
  assert.equal(d.problems.map((p) => p.field), ['realServers[1].address', 'realServers[2].address', 'realServers[3].port', 'realServers[4].address']);
  assert.match(d.problems[0]!.message, /needs TUN/);
  assert.equal(d.frozen, []);
});

test('a bad service is frozen, not dropped: its VIP stays owned and the field is named', () => {
  const d = desiredState([
    planService({ scheduler: { name: 'rr', flags: ['sh-port'] } }),
    planService({ port: 443, persistence: { timeoutSeconds: 0, netmask: '255.0.255.0' } }),
    planService({ vip: '198.51.100.1', forwarding: 'TUN', tunnel: { type: 'gue' } }),
    planService({ vip: 'not-an-ip' }),
  ], 'node-a');
  assert.equal(d.services, []);
  assert.equal(d.frozen, ['TCP/198.51.100.1:80', 'TCP/203.0.113.10:443', 'TCP/203.0.113.10:80']);
  assert.equal(d.ownedVips, ['198.51.100.1', '203.0.113.10']);
  assert.equal(d.problems.map((p) => `${p.key} ${p.field}`).sort(), [
    'TCP/198.51.100.1:80 tunnel.port',
    'TCP/203.0.113.10:443 persistence.netmask',
    'TCP/203.0.113.10:443 persistence.timeoutSeconds',
    'TCP/203.0.113.10:80 scheduler.flags[0]',
    'TCP/not-an-ip:80 vip',
  ]);
});

test('with the syncer\'s memo the result is the same through added, removed, reordered and renamed services', () => {
  const memo = {};
  const svc = (port: number) => planService({ port, realServers: [rs('10.0.0.5', port)] });
  const plans = [
    [svc(80), svc(443), svc(8080)],
    [svc(8080), svc(80), svc(443)], // same keys, other order: the memo's order is reused
    [svc(8080), svc(80)], // one gone
    [svc(8080), svc(80), svc(9090)], // one more
    [svc(8080), svc(81), svc(9090)], // same count, one key renamed
    [],
  ];
  for (const [i, p] of plans.entries()) {
    const got = desiredState(p, 'node-a', [], memo);
    assert.equal(got, desiredState(p, 'node-a'), `plan ${i}`);
  }
});

test('input order does not matter', () => {
  const a = planService({ vip: '198.51.100.1', realServers: [rs('10.0.0.5', 1), rs('10.0.0.4', 2), rs('10.0.0.40', 1)] });
  const b = planService({ port: 443 });
  const c = planService({ vip: '2001:db8::1', family: 6, realServers: [rs('2001:db8::20', 80), rs('2001:db8::3', 80)] });
  const one = desiredState([a, b, c], 'node-a');
  const two = desiredState([c, b, { ...a, realServers: [...a.realServers].reverse() }], 'node-a');
  assert.equal(two.services, one.services);
  assert.equal(two.ownedVips, one.ownedVips);
});

test('an unchanged plan entry builds the same state object (partial syncs compare by identity); a changed entry builds anew; problems repeat', () => {
  const a = planService({ vip: '203.0.113.10' });
  const bad = planService({ vip: '203.0.113.11', realServers: [rs('10.0.0.9', 8080), rs('not-an-ip', 8080)] });
  const first = desiredState([a, bad], 'node-a');
  const again = desiredState([a, bad], 'node-a');
  assert.ok(again.services[0] === first.services[0] && again.services[1] === first.services[1], 'same objects');
  assert.equal(again.problems, first.problems, 'a cached entry still reports its problems');
  assert.is(again.problems.length, 1);
  const changed = { ...a, realServers: [rs('10.0.0.7', 8080)] };
  const next = desiredState([changed, bad], 'node-a');
  assert.ok(next.services[0] !== first.services[0]);
  assert.equal(next.services[0]!.destinations.map((d) => d.address), ['10.0.0.7']);
  assert.equal(desiredState([a], 'node-b').services, [], 'the node is checked on every call, not cached');
});

test('with the memo, a plan that only replaced entries is patched, and equals a whole build', () => {
  // Deterministic pseudo-random rounds over 30 entries: real servers moved (the patched case), and
  // what a patch must hand to a whole build: an entry gone or back, a bad real server, another
  // director, a duplicate key, a held key; and duplicates that stay while entries move.
  let seed = 11;
  const r = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const entry = (i: number, gen: number, over: Partial<PlanService> = {}) => planService({
    port: 1000 + i, owner: { namespace: 'default', name: `web-${i}`, generation: gen },
    realServers: [rs(`10.0.${i}.1`, 8080), rs(`10.0.${i}.${2 + (gen % 50)}`, 8080)], ...over,
  });
  // `base` only has real servers moved; each other change lasts one round, so patches resume.
  let base = Array.from({ length: 30 }, (_, i) => entry(i, 1));
  const memo: DesiredMemo = {};
  // Told where each plan changed (the cluster agent's planDelta): the same states.
  const told: DesiredMemo = {};
  let last = desiredState(base, 'node-a', [], memo);
  let lastPlan = base;
  desiredState(base, 'node-a', [], told);
  let patched = 0, built = 0;
  for (let round = 0; round < 300; round++) {
    const i = Math.floor(r() * base.length), x = r(), gen = round + 2;
    let plan = base.slice();
    let held: string[] = [];
    if (x < 0.7) { plan[i] = entry(Number(plan[i]!.port) - 1000, gen); base = plan; }
    else if (x < 0.75) plan[i] = entry(i, gen, { realServers: [rs('not-an-ip', 8080)] });
    else if (x < 0.8) plan[i] = entry(i, gen, { directors: ['node-b'] });
    else if (x < 0.85) plan[i] = entry((i + 1) % base.length, gen);
    else if (x < 0.9) plan = r() < 0.5 ? plan.filter((_, j) => j !== i) : [...plan, entry(plan.length, gen)];
    else if (x < 0.95) held = [`TCP/203.0.113.10:${1000 + i}`];
    else { plan.push(plan[i]!); base = plan; } // a duplicate that stays: moves of either are patched
    const got = desiredState(plan, 'node-a', held, memo);
    const at = plan.length === lastPlan.length ? plan.flatMap((s, j) => (s === lastPlan[j] ? [] : [j])) : [];
    assert.equal(desiredState(plan, 'node-a', held, told, { from: lastPlan, at }).services, got.services, `round ${round}: with the delta`);
    lastPlan = plan;
    const { delta, ...rest } = got;
    assert.equal(rest, desiredState(plan, 'node-a', held), `round ${round}`);
    if (delta) {
      patched++;
      assert.ok(delta.from === last.services, `round ${round}: patched from the last call's services`);
      const differ = got.services.flatMap((s, j) => (s === last.services[j] ? [] : [ipvsServiceKey(s.service)]));
      assert.equal(delta.keys, differ, `round ${round}: the delta names exactly the replaced states`);
      assert.ok(got.index === last.index && got.ownedVips === last.ownedVips, 'the rest is passed on by identity');
    } else built++;
    last = got;
  }
  assert.ok(patched > 100 && built > 20, `both paths taken (patched ${patched}, built ${built})`);
});

test('with a delta for the last plan, a patch looks only at its positions', () => {
  const entry = (port: number, last: string) => planService({ port, realServers: [rs(`10.0.0.${last}`, 8080)] });
  const memo: DesiredMemo = {};
  const one = [entry(80, '1'), entry(81, '1'), entry(82, '1')];
  desiredState(one, 'node-a', [], memo);
  const two = [one[0]!, entry(81, '2'), entry(82, '2')];
  // The delta names position 1 only: position 2 is not looked at (the source vouches for the rest).
  const d = desiredState(two, 'node-a', [], memo, { from: one, at: [1] });
  assert.equal(d.services.map((s) => s.destinations[0]!.address), ['10.0.0.1', '10.0.0.2', '10.0.0.1']);
  assert.equal(d.delta!.keys, ['TCP/203.0.113.10:81']);
  // A delta from another plan than the last one is not used: every entry is compared.
  const three = [one[0]!, two[1]!, entry(82, '3')];
  const e = desiredState(three, 'node-a', [], memo, { from: one, at: [] });
  assert.equal(e.services.map((s) => s.destinations[0]!.address), ['10.0.0.1', '10.0.0.2', '10.0.0.3']);
});

test.run();
