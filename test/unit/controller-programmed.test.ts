// Programmed from the agents' AgentReports: each node state (no report, node-wide error, frozen,
// failing, not yet synced, truncated report, programmed), the condition they add up to, the
// bounded node summary; which VirtualServers a report change marks; the published-slices view.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { buildAgentReport, type AgentReportObject, type ReportException } from '../../api/agent-report.ts';
import { directorVerdict, judgeProgrammed, MAX_STATUS_NODES } from '../../operator/programmed.ts';
import { keysToMark, reportChange, Reports } from '../../operator/reports.ts';
import { PublishedSlices } from '../../operator/slices.ts';
import { publishedSlice, type Publication, type PublishedSlice } from '../../operator/publish.ts';

const test = suite('controller: programmed');
const UID = 'u1';
const PUB: Publication = { revision: 'r1', slices: 2, generation: 4, directors: ['n1', 'n2'], services: 1, resourceVersion: '100' };

function report(node: string, synced: string, o: { nodeErrors?: string[]; failing?: ReportException[]; frozen?: ReportException[] } = {}): AgentReportObject {
  return buildAgentReport(node, { syncedResourceVersion: synced, nodeErrors: o.nodeErrors ?? [], failing: o.failing ?? [], frozen: o.frozen ?? [], prepared: [] });
}
const exc = (uid: string, message: string): ReportException => ({ uid, virtualServer: `ns/${uid}`, message });

function view(...reports: AgentReportObject[]): Reports {
  const r = new Reports();
  for (const x of reports) r.set(x.node, x);
  return r;
}

const judge = (...reports: AgentReportObject[]) => judgeProgrammed(PUB, UID, 4, view(...reports));
const cond = (s: ReturnType<typeof judge>) => [s.condition.status, s.condition.reason, s.condition.message];

test('one director, each state of its report', () => {
  const v = (r: AgentReportObject | undefined, e?: { failing?: string; frozen?: string }) => { const x = directorVerdict('n1', r, e, '100'); return `${x.state}: ${x.message}`; };
  assert.is(v(undefined), 'Waiting: no AgentReport from this node yet');
  assert.is(v(report('n1', '120', { nodeErrors: ['kernel read-back failed: EPERM'] })), 'Failing: kernel read-back failed: EPERM');
  assert.is(v(report('n1', '120'), { frozen: 'slices of two revisions' }), 'Frozen: slices of two revisions');
  assert.is(v(report('n1', '120'), { failing: 'TCP/203.0.113.1:80: netlink newDest failed: EINVAL' }), 'Failing: TCP/203.0.113.1:80: netlink newDest failed: EINVAL');
  assert.is(v(report('n1', '99')), 'Waiting: has not synced this plan yet');
  assert.is(v(report('n1', '100')), 'Programmed: ', 'synced exactly to the highest slice');
  assert.is(v(report('n1', '1000')), 'Programmed: ', 'compared as numbers, not strings');
  assert.match(v(report('n1', 'abc')), /^Waiting: synced resourceVersion "abc" cannot be compared/);
  const truncated = { ...report('n1', '120'), failingCount: 150, failing: [exc('other', 'x')] };
  assert.match(v(truncated), /^Waiting: state unknown: the report is truncated \(lists 1 of 150 failing/);
});

test('Programmed=True only when every director programmed the plan', () => {
  assert.equal(cond(judge(report('n1', '100'), report('n2', '101'))), ['True', 'Programmed', '2 director(s) programmed plan r1']);
  const s = judge(report('n1', '100'), report('n2', '101'));
  assert.equal([s.nodes, s.programmedNodes], [[], 2]);
});

test('Unknown while a director has not reported or not synced the plan; the summary says which and why', () => {
  const s = judge(report('n1', '100'));
  assert.equal(cond(s), ['Unknown', 'AwaitingAgents', 'waiting for 1 of 2 director(s) to program plan r1: n2']);
  assert.equal(s.nodes, [{ name: 'n2', state: 'Waiting', message: 'no AgentReport from this node yet' }]);
  assert.is(s.programmedNodes, 1);
  assert.is(judge(report('n1', '100'), report('n2', '50')).condition.status, 'Unknown');
});

test('False naming the node and the failing step: node-wide errors, this VirtualServer failing, frozen', () => {
  const kernel = judge(report('n1', '120', { nodeErrors: ['kernel read-back failed: EPERM'] }), report('n2', '120'));
  assert.equal(cond(kernel), ['False', 'ProgrammingFailed', 'node n1: kernel read-back failed: EPERM']);
  const failing = judge(report('n1', '120', { failing: [exc(UID, 'TCP/203.0.113.1:80: netlink newDest failed: EINVAL')] }), report('n2', '120'));
  assert.equal(cond(failing), ['False', 'ProgrammingFailed', 'node n1: TCP/203.0.113.1:80: netlink newDest failed: EINVAL']);
  const frozen = judge(report('n1', '120', { frozen: [exc(UID, 'a field this agent does not know: services[0].foo')] }), report('n2', '120'));
  assert.equal(cond(frozen), ['False', 'Frozen', 'node n1: a field this agent does not know: services[0].foo']);
  assert.equal(frozen.nodes, [{ name: 'n1', state: 'Frozen', message: 'a field this agent does not know: services[0].foo' }]);
  // Another VirtualServer failing on the node does not make this one fail.
  assert.is(judge(report('n1', '120', { failing: [exc('u9', 'x')] }), report('n2', '120')).condition.status, 'True');
  // Failing outranks frozen, and is listed first.
  const both = judge(report('n1', '120', { frozen: [exc(UID, 'held')] }), report('n2', '120', { nodeErrors: ['director setup (lvs0, sysctls, nft) failed: nft: EPERM'] }));
  assert.equal(cond(both), ['False', 'ProgrammingFailed', 'node n2: director setup (lvs0, sysctls, nft) failed: nft: EPERM; node n1: held']);
});

test('a node that does not direct it matters when it lists it: real-server preparation failed there', () => {
  const prep = judge(report('n1', '120'), report('n2', '120'), report('n3', '120', { failing: [exc(UID, 'real-server preparation failed: pid 42: EPERM')] }));
  assert.equal(cond(prep), ['False', 'ProgrammingFailed', 'node n3: real-server preparation failed: pid 42: EPERM']);
  assert.is(prep.programmedNodes, 2);
  // Not listing it, or behind, a non-director is no part of it.
  assert.is(judge(report('n1', '120'), report('n2', '120'), report('n3', '1')).condition.status, 'True');
});

test('nothing to program: no plan, no director, no service; a kept plan of an older generation says so', () => {
  assert.equal(cond(judgeProgrammed(undefined, UID, 4, view())).slice(0, 2), ['False', 'NothingToProgram']);
  assert.equal(judgeProgrammed({ ...PUB, directors: [] }, UID, 4, view()).condition.message, 'no director nodes');
  assert.equal(judgeProgrammed({ ...PUB, services: 0 }, UID, 4, view()).condition.message, 'no virtual service to program');
  const kept = judgeProgrammed({ ...PUB, generation: 3 }, UID, 4, view(report('n1', '100'), report('n2', '100')));
  assert.equal(cond(kept), ['True', 'Programmed', '2 director(s) programmed plan r1 (the plan of generation 3, kept while the spec is invalid)']);
});

test('the node summary is bounded: most severe first, then by name; programmedNodes counts the rest', () => {
  const directors = Array.from({ length: 100 }, (_, i) => `n${String(i).padStart(3, '0')}`);
  const reports = directors.slice(0, 60).map((d, i) => report(d, i < 20 ? '100' : '1'));
  reports.push(report('n099', '100', { nodeErrors: ['kernel read-back failed: EPERM'] }));
  const s = judgeProgrammed({ ...PUB, directors }, UID, 4, view(...reports));
  assert.is(s.nodes.length, MAX_STATUS_NODES);
  assert.equal(s.nodes[0], { name: 'n099', state: 'Failing', message: 'kernel read-back failed: EPERM' });
  assert.equal(s.nodes.slice(1, 3).map((n) => n.name), ['n020', 'n021']);
  assert.is(s.programmedNodes, 20);
  assert.match(s.condition.message, /^node n099: kernel read-back failed: EPERM$/);
});

function slice(owner: string, index: number, rv: string, directors = ['n1', 'n2']): PublishedSlice {
  const [namespace, name] = owner.split('/') as [string, string];
  return publishedSlice({
    apiVersion: 'lvs.dev/v1alpha1', kind: 'PlanSlice', metadata: { name: `${name}-uid-${index}`, resourceVersion: rv },
    owner: { namespace, name, uid: `${name}-uid`, generation: 1 }, revision: 'r', index, count: 1, directors, services: [],
  });
}

test('published slices: our writes count before the watch delivers them, and their echo is not news', () => {
  const p = new PublishedSlices();
  p.observe(slice('ns/a', 0, '10'), false);
  assert.is(p.observe(slice('ns/b', 0, '11'), false), false, 'someone else\'s slice: news');
  p.wrote(slice('ns/a', 0, '20'));
  assert.equal(p.current('ns/a').map((s) => s.metadata.resourceVersion), ['20'], 'the write, not the older cached copy');
  assert.is(p.observe(slice('ns/a', 0, '15'), false), true, 'an older version than ours is no news');
  assert.is(p.observe(slice('ns/a', 0, '20'), false), true, 'the echo of our write');
  assert.is(p.observe(slice('ns/a', 0, '25'), false), false, 'a newer version (someone edited it): news');
  p.deleted('ns/a', 'a-uid-0');
  assert.equal(p.current('ns/a'), [], 'our deletion counts at once');
  assert.is(p.observe(slice('ns/a', 0, '26'), true), true, 'the echo of our deletion');
  assert.is(p.observe(slice('ns/b', 0, '27'), true), false, 'someone deleted a slice: news');
  assert.equal(p.owners(), []);
});

test('published slices: a write whose echo came before its response leaves nothing pending', () => {
  const p = new PublishedSlices();
  p.observe(slice('ns/a', 0, '10'), false);
  p.wrote(slice('ns/a', 0, '20'));
  assert.is(p.pending, 1);
  assert.is(p.observe(slice('ns/a', 0, '20'), false), true, 'the echo after the response');
  assert.is(p.pending, 0);
  assert.is(p.observe(slice('ns/a', 0, '30'), false), false, 'someone else\'s edit, seen before our write returns');
  p.wrote(slice('ns/a', 0, '30'));
  assert.is(p.pending, 0, 'the cache already holds that version: nothing to wait for');
  assert.equal(p.current('ns/a').map((s) => s.metadata.resourceVersion), ['30']);
  p.observe(slice('ns/a', 0, '40'), false);
  p.wrote(slice('ns/a', 0, '35'));
  assert.is(p.pending, 0, 'a newer version is cached already');
  assert.equal(p.current('ns/a').map((s) => s.metadata.resourceVersion), ['40']);
  assert.is(p.observe(slice('ns/a', 0, '41'), false), false, 'news as before');
});

test('a report change marks only the VirtualServers it can affect', () => {
  const p = new PublishedSlices();
  p.observe(slice('ns/a', 0, '10'), false);
  p.observe(slice('ns/b', 0, '20'), false);
  p.observe(slice('ns/c', 0, '30', ['n2']), false);
  p.observe(slice('ns/d', 0, '40'), false);
  const plans = { ownersBetween: (lo: bigint, hi: bigint) => p.ownersBetween(lo, hi), owners: () => p.owners(), directors: (o: string) => p.directors(o), keyOfUid: (u: string) => (u === 'u-x' ? 'ns/x' : undefined) };
  const marks = (prev: AgentReportObject | undefined, next: AgentReportObject | undefined) => keysToMark(reportChange('n1', prev, next), plans).sort();
  assert.equal(marks(report('n1', '15'), report('n1', '35')), ['ns/b'], '(15, 35]: b, and c is not directed by n1');
  assert.equal(marks(report('n1', '35'), report('n1', '15')), ['ns/b'], 'a synced resourceVersion going back marks the same range');
  assert.equal(marks(report('n1', '15'), report('n1', '15')), [], 'nothing changed');
  assert.equal(marks(undefined, report('n1', '15')), ['ns/a', 'ns/b', 'ns/d'], 'a new report: every VirtualServer the node directs');
  assert.equal(marks(report('n1', '15'), report('n1', '15', { nodeErrors: ['kernel read-back failed: EPERM'] })), ['ns/a', 'ns/b', 'ns/d']);
  assert.equal(marks(report('n1', '15'), report('n1', '15', { failing: [exc('u-x', 'boom'), exc('u-y', 'bang')] })), ['ns/u-y', 'ns/x'], 'exceptions by uid (else the name the agent gives)');
  assert.equal(marks(report('n1', '15', { failing: [exc('u-x', 'boom')] }), report('n1', '15', { failing: [exc('u-x', 'boom')] })), [], 'the same exception again');
});

test.run();
