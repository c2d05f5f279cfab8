// Guest suite of test/kernel/agent.test.ts: what happens to a programmed director over
// time, with connections held open across each step — rejected input, draining a real server,
// killing and restarting the agent, edits made behind its back with ipvsadm, and cleanup — while
// a foreign IPVS service (added with ipvsadm, on a VIP no manifest names) stays byte for byte as
// it was. The service under test: test/kernel/fixtures/agent-lifecycle/hold.yaml (NAT, rr, socat
// line-echo servers on rs1 and rs2 port 7000), copied to /run and rewritten as the steps need.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseDocument } from 'yaml';
import { ipvsStats, listIpvs } from '../../../lab/guest/ipvsadm.ts';
import { nsSh } from '../../../lab/guest/netns.ts';
import { agent, agentOk, later, opLines, startAgent, timed, type AgentProcess } from './agent/cli.ts';
import { describeViews, readViews, rowsFromIpvsadm, rowsFromShow } from './agent/compare.ts';
import { agentTopology, burst, holdConnection, kernelSnapshot, rulesOf, settledStats, startEchoServer, stopEchoServers, type AgentTopology, type HeldConnection, type KernelSnapshot } from '../../../lab/guest/agent-net.ts';

const uvuSuite = suite('lvs-agent lifecycle: bad input, drain, restart, outside edits, foreign service, cleanup');
const test = timed(uvuSuite);
const FIXTURES = 'test/kernel/fixtures/agent-lifecycle';
const STATE = '/run/lvs-agent/director-lifecycle.json';
const WORK = '/run/agent-lifecycle';
const LIVE = join(WORK, 'manifests'); // the set every apply in this suite uses
const VIP = '203.0.113.70';
const SVC = `TCP/${VIP}:7000`;
const RS = { rs1: '172.16.0.2', rs2: '172.16.0.3' } as const;
const FOREIGN = '198.51.100.99';
const FOREIGN_RULES = [
  `-A -t ${FOREIGN}:8080 -s lc`, `-a -t ${FOREIGN}:8080 -r 172.16.0.2:8080 -m -w 3`, `-a -t ${FOREIGN}:8080 -r 172.16.0.3:8080 -m -w 0`,
  `-A -u ${FOREIGN}:5353 -s sh -b sh-port`, `-a -u ${FOREIGN}:5353 -r 172.16.0.2:5353 -m -w 1`,
];
let topo: AgentTopology | undefined;
let foreign: string[] = [];
const held: HeldConnection[] = [];
const watchers: AgentProcess[] = [];

uvuSuite.after(async () => {
  for (const w of watchers) await w.kill('SIGKILL');
  for (const h of held) await h.reset();
  stopEchoServers();
  topo?.destroy();
});

/** Writes hold.yaml into `dir` with these real servers (the fixture's comments kept). */
function writeHold(dir: string, backends: readonly string[]): void {
  const doc = parseDocument(readFileSync(join(FIXTURES, 'hold.yaml'), 'utf8'));
  doc.setIn(['spec', 'backends', 'static'], backends.map((address) => ({ address })));
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'hold.yaml'), doc.toString());
}

const apply = (dir = LIVE) => agent('director', ['apply', '-f', dir, '--state-file', STATE]);
const summary = (ops: number, extra = '') => `1 service(s) from 1 VirtualServer(s); ${ops} kernel operation(s)${extra}`;
const DRAINING = '; 1 destination(s) draining (weight 0 until their connections end; apply again or use --watch to finish)';
/** Our service as ipvsadm sees it: "addr:port weight active inactive" per destination. */
const ours = () => (listIpvs('director').find((s) => s.address === `${VIP}:7000`)?.dests ?? []).map((d) => `${d.address} ${d.weight} ${d.activeConn} ${d.inactConn}`);
const assertForeignUntouched = (save = kernelSnapshot('director').save) => assert.equal(rulesOf(save, FOREIGN), foreign, 'the foreign service changed');
/** `ipvsadm -Ln` and `lvs-agent show --json --all` read now; resolves with the views once they agree. */
const viewsAgree = async () => {
  const v = await readViews('director', STATE);
  assert.equal(rowsFromShow(v.show), rowsFromIpvsadm(v.ipvsadm), describeViews(v));
  return v;
};

test('setup: topology, line-echo servers on rs1 and rs2, a foreign IPVS service added with ipvsadm', async () => {
  topo = agentTopology({ gateways: 2 });
  await Promise.all([startEchoServer('rs1', 'rs1', 7000), startEchoServer('rs2', 'rs2', 7000)]);
  nsSh('director', FOREIGN_RULES.map((r) => `ipvsadm ${r}`).join('\n') + '\n');
  foreign = rulesOf(kernelSnapshot('director').save, FOREIGN);
  assert.equal([...foreign].sort(), [...FOREIGN_RULES].sort());
});

test('apply programs the manifests and leaves the foreign service alone', async () => {
  writeHold(LIVE, [RS.rs1, RS.rs2]);
  const r = await apply();
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stdout.trim(), summary(3));
  assert.equal(ours(), [`${RS.rs1}:7000 1 0 0`, `${RS.rs2}:7000 1 0 0`]);
  assertForeignUntouched();
});

test('bad input: a set with one invalid document exits 2, names the field, and changes nothing (show runs meanwhile)', async () => {
  const before = kernelSnapshot('director');
  const record = readFileSync(STATE, 'utf8');
  // Schema layer: next to a valid hold.yaml that would drain rs2 if anything were applied.
  const schemaSet = join(WORK, 'bad-schema');
  writeHold(schemaSet, [RS.rs1]);
  copyFileSync(join(FIXTURES, 'invalid.yaml'), join(schemaSet, 'invalid.yaml'));
  // Resolver layer: schema-valid, but a second claim on TCP VIP:7000.
  const conflictSet = join(WORK, 'bad-conflict');
  writeHold(conflictSet, [RS.rs1, RS.rs2]);
  copyFileSync(join(FIXTURES, 'squatter.yaml'), join(conflictSet, 'squatter.yaml'));
  // Nothing here may write to the kernel, so the agent's show of the first apply runs alongside.
  const [schema, conflict, v] = await Promise.all([apply(schemaSet), apply(conflictSet), viewsAgree()]);
  assert.equal(v.ours, [`TCP ${VIP}:7000`]);
  assert.equal(v.show.filter((s) => !s.ours).map((s) => `${s.protocol} ${s.address}:${s.port}`).sort(), [`TCP ${FOREIGN}:8080`, `UDP ${FOREIGN}:5353`]);
  assert.is(schema.code, 2);
  assert.match(schema.stderr, 'lvs-agent: rejected, nothing was changed:');
  assert.match(schema.stderr, `${schemaSet}/invalid.yaml (VirtualServer default/typo): spec.backends.static[0].weight: must be <= 65535`);
  assert.is(conflict.code, 2);
  assert.match(conflict.stderr, `${conflictSet}/squatter.yaml (VirtualServer default/squatter): spec.addresses[0]: Conflict: ${SVC} is already claimed by VirtualServer default/hold`);
  assert.equal(kernelSnapshot('director'), before, 'ipvsadm -S -n, lvs0 or the nft ruleset changed');
  assert.is(readFileSync(STATE, 'utf8'), record, 'the owner record changed');
});

test('doubtful sets are refused and change nothing: empty, a mistyped kind, only other kinds, a duplicate name, a rule only CEL enforced', async () => {
  const before = kernelSnapshot('director');
  const record = readFileSync(STATE, 'utf8');
  const set = (name: string, files: Record<string, string>, hold: readonly string[] | undefined) => {
    const dir = join(WORK, `doubt-${name}`);
    mkdirSync(dir, { recursive: true });
    if (hold) writeHold(dir, hold); // would drain rs2 if anything were applied
    for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
    return dir;
  };
  const holdDoc = readFileSync(join(FIXTURES, 'hold.yaml'), 'utf8');
  const sets = {
    // An empty file once removed every service programmed before ("0 service(s) from 0 VirtualServer(s)").
    empty: set('empty', { 'empty.yaml': '---\n---\n' }, undefined),
    // The seeds' NAT file with its kind mistyped, beside a valid file: it used to be skipped silently.
    kind: set('kind', { 'typo.yaml': holdDoc.replace('kind: VirtualServer', 'kind: VirtualSever').replace(/name: hold\b/, 'name: typo') }, [RS.rs1]),
    other: set('other', { 'cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {}\n' }, undefined),
    duplicate: set('duplicate', { 'again.yaml': holdDoc }, [RS.rs1]),
    cel: set('cel', { 'nat-with-dr.yaml': readFileSync('test/invalid/nat-with-dr.yaml', 'utf8') }, [RS.rs1]),
  };
  const r = Object.fromEntries(await Promise.all(Object.entries(sets).map(async ([k, dir]) => [k, await apply(dir)] as const)));
  for (const [k, run] of Object.entries(r)) assert.is(run.code, 2, `${k}: exit ${run.code}\n${run.stderr}`);
  assert.match(r.empty!.stderr, 'no VirtualServer in the input; applying an empty set removes everything lvs-agent programmed on this host: pass --allow-empty to mean it');
  assert.match(r.kind!.stderr, `${sets.kind}/typo.yaml document 1: kind: "VirtualSever" is not a kind of lvs.dev; expected VirtualServer`);
  assert.match(r.other!.stderr, 'no VirtualServer in the input (1 document(s) of other API groups skipped)');
  assert.match(r.duplicate!.stderr, /metadata\.name: Duplicate value: default\/hold is also defined by/);
  assert.match(r.cel!.stderr, /spec\.nat/);
  assert.equal(kernelSnapshot('director'), before, 'ipvsadm -S -n, lvs0 or the nft ruleset changed');
  assert.is(readFileSync(STATE, 'utf8'), record, 'the owner record changed');
});

let draining = '';
let staying = '';

test('drain: an established connection survives its real server leaving the manifest; new connections avoid it', async () => {
  const h = await holdConnection('client', VIP, 7000);
  held.push(h);
  assert.is(await h.send('before'), 'before');
  const id = h.server as keyof typeof RS;
  assert.ok(id in RS, `unexpected greeting ${JSON.stringify(h.server)}`);
  draining = RS[id];
  staying = id === 'rs1' ? RS.rs2 : RS.rs1;
  writeHold(LIVE, [staying]);
  const r = await apply();
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stdout.trim(), summary(1, DRAINING));
  assert.equal(opLines(r.stderr), [`drain ${draining}:7000 of ${SVC} (weight 0)`]);
  assert.equal(ours().sort(), [`${draining}:7000 0 1 0`, `${staying}:7000 1 0 0`].sort());
  const views = later(viewsAgree()); // weight 0 in both views
  assert.is(await h.send('during'), 'during');
  const fresh = burst('client', Array.from({ length: 6 }, () => ({ host: VIP, port: 7000 })));
  assert.equal(fresh, Array(6).fill(id === 'rs1' ? 'rs2' : 'rs1'), 'a new connection went to the draining server');
  await views;
});

test('drain: while the connection lives, applying again keeps the destination (0 operations, still draining)', async () => {
  const r = await apply();
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stdout.trim(), summary(0, DRAINING));
  assert.ok(ours().includes(`${draining}:7000 0 1 0`), ours().join('\n'));
  assert.is(await held[0]!.send('still'), 'still');
});

test('drain: once the connection has ended, the next apply deletes the destination', async () => {
  // SO_LINGER 0: the client ends with a RST; IPVS keeps the entry 10 s in CLOSE, then frees it.
  await held.shift()!.reset();
  const deadline = Date.now() + 120_000;
  while (!ours().includes(`${draining}:7000 0 0 0`)) {
    if (Date.now() > deadline) assert.unreachable(`connection entry never expired:\n${ours().join('\n')}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  const r = await apply();
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stdout.trim(), summary(1));
  assert.equal(opLines(r.stderr), [`delete ${draining}:7000 from ${SVC} (idle)`]);
  assert.equal(ours().map((d) => d.split(' ')[0]), [`${staying}:7000`]);
  assertForeignUntouched();
});

let beforeKill: KernelSnapshot | undefined;
let statsBeforeKill: ReturnType<typeof ipvsStats> = [];

test('restart: SIGKILL of apply --watch leaves the rules and a live connection in place', async () => {
  writeHold(LIVE, [RS.rs1, RS.rs2]);
  const w = startAgent('director', ['apply', '--watch', '-f', LIVE, '--state-file', STATE]);
  watchers.push(w);
  assert.is(await w.waitForStdout(/kernel operation/), summary(1));
  await w.waitForStderr((e) => opLines(e).length >= 1);
  assert.equal(opLines(w.stderr()), [`add ${draining}:7000 to ${SVC} (weight 1)`]);
  assert.equal(burst('client', Array.from({ length: 4 }, () => ({ host: VIP, port: 7000 }))).sort(), ['rs1', 'rs1', 'rs2', 'rs2']);
  const h = await holdConnection('client', VIP, 7000);
  held.push(h);
  assert.is(await h.send('one'), 'one');
  statsBeforeKill = await settledStats('director');
  beforeKill = kernelSnapshot('director');
  const end = await w.kill('SIGKILL');
  assert.is(end.signal, 'SIGKILL');
  assert.equal(kernelSnapshot('director'), beforeKill, 'rules, lvs0 or nft changed when the agent died');
  assert.is(await h.send('two'), 'two');
});

test('restart: a fresh apply performs zero kernel operations and re-creates nothing (counters keep counting)', async () => {
  const r = await apply();
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stdout.trim(), summary(0));
  assert.equal(opLines(r.stderr), []);
  assert.equal(kernelSnapshot('director'), beforeKill);
  const pick = (s: ReturnType<typeof ipvsStats>) => s.find((x) => x.address === `${VIP}:7000`)!.dests;
  const [before, after] = [pick(statsBeforeKill), pick(ipvsStats('director'))];
  assert.equal(after.map((d) => d.address), before.map((d) => d.address));
  for (const [i, d] of after.entries()) {
    // A re-created destination starts from zero; these keep their totals (no new connection since).
    assert.ok(before[i]!.conns > 0);
    assert.is(d.conns, before[i]!.conns, `${d.address}: Conns reset`);
    assert.ok(d.inPkts >= before[i]!.inPkts, `${d.address}: InPkts went back`);
  }
  const h = held.shift()!;
  assert.is(await h.send('three'), 'three');
  await h.reset();
});

test('outside edits (ipvsadm -e weight, ipvsadm -d) are undone by the next sync of apply --watch', async () => {
  const expected = rowsFromIpvsadm(listIpvs('director'));
  const edit = (weighted: string, deleted: string, weight: number) => nsSh('director',
    `ipvsadm -e -t ${VIP}:7000 -r ${weighted}:7000 -m -w ${weight}\nipvsadm -d -t ${VIP}:7000 -r ${deleted}:7000\n`);
  // Behind the agent's back before it starts: its first sync restores both.
  edit(RS.rs1, RS.rs2, 5);
  assert.equal(ours().map((d) => d.split(' ').slice(0, 2).join(' ')), [`${RS.rs1}:7000 5`]);
  const w = startAgent('director', ['apply', '--watch', '-f', LIVE, '--state-file', STATE]);
  watchers.push(w);
  assert.is(await w.waitForStdout(/kernel operation/), summary(2));
  assert.equal(rowsFromIpvsadm(listIpvs('director')), expected);
  // And while it runs: every sync reads the kernel back (a manifest rewrite triggers one now; the
  // periodic resync, every 60 s, runs the same sync).
  edit(RS.rs2, RS.rs1, 9);
  writeHold(LIVE, [RS.rs1, RS.rs2]);
  assert.is(await w.waitForStdout(/kernel operation/, { count: 2 }), summary(2));
  assert.equal(rowsFromIpvsadm(listIpvs('director')), expected);
  await w.waitForStderr((e) => opLines(e).length >= 4);
  assert.equal(opLines(w.stderr()), [
    `edit ${RS.rs1}:7000 of ${SVC} in place: weight`, `add ${RS.rs2}:7000 to ${SVC} (weight 1)`,
    `add ${RS.rs1}:7000 to ${SVC} (weight 1)`, `edit ${RS.rs2}:7000 of ${SVC} in place: weight`,
  ]);
  const end = await w.kill('SIGTERM');
  assert.is(end.code, 0, w.stderr());
  assert.equal(rowsFromIpvsadm(listIpvs('director')), expected, 'rules must stay when the agent stops');
  assertForeignUntouched();
  await viewsAgree();
});

test('cleanup removes exactly what the agent owns; the foreign service stays byte for byte', async () => {
  const r = await agentOk('director', ['cleanup', '--state-file', STATE]);
  assert.is(r.stdout.trim(), 'removed 1 IPVS service(s) on 1 owned VIP(s), lvs0 and our nft tables');
  const snap = kernelSnapshot('director');
  assert.equal(snap.save.split('\n').filter(Boolean), foreign);
  assert.is(snap.lvs0, '');
  assert.not.match(snap.nft, 'lvs_operator');
});

uvuSuite.run();
