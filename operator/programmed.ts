// Programmed, from the agents' AgentReports: pure. A VirtualServer's published plan is
// programmed on a node that directs it when the node's report has no node-wide error, lists the
// VirtualServer neither as failing nor as frozen, and says its last sync read plan slices up to
// a resourceVersion at or past the highest of the plan's slices (so it read every one of them).
// A node that does not direct it matters only when it lists it (preparing DR/TUN real servers
// failed there, or it keeps them frozen).
//
// Relied on from the agent: a plan it could not use (slices of two revisions while the
// controller rewrites them, a field it does not know) is listed as frozen or failing, never left
// out of a report whose syncedResourceVersion is past the plan.
import { compareResourceVersions, type AgentReportObject } from '../api/agent-report.ts';
import type { NodeProgramming } from '../kube/types.ts';
import type { Publication } from './publish.ts';
import type { NodeException } from './reports.ts';

/** CRD bound on status.unprogrammedNodes (crds/virtualserver.yaml). */
export const MAX_STATUS_NODES = 32;
/** CRD bound on the message of one status.unprogrammedNodes entry. */
export const MAX_NODE_MESSAGE = 1024;
/** Nodes named in a Programmed condition message. */
const NAMED = 10;

export interface ReportView {
  get(node: string): AgentReportObject | undefined;
  exceptions(uid: string): ReadonlyMap<string, NodeException>;
}

export type NodeVerdict = { name: string; state: 'Programmed'; message: '' } | NodeProgramming;

export interface ConditionValue {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

export interface ProgrammedSummary {
  condition: ConditionValue;
  /** Nodes not programmed, most severe first (Failing, Frozen, Waiting), then by name; bounded. */
  nodes: NodeProgramming[];
  programmedNodes: number;
}

const cut = (s: string, n = MAX_NODE_MESSAGE) => (s.length > n ? `${s.slice(0, n - 3)}...` : s);

function isTruncated(r: AgentReportObject): boolean {
  return r.failingCount > r.failing.length || r.frozenCount > r.frozen.length;
}

/** One director's state for the plan whose slices' highest resourceVersion is planRv. */
export function directorVerdict(name: string, report: AgentReportObject | undefined, exc: NodeException | undefined, planRv: string): NodeVerdict {
  const v = (state: NodeProgramming['state'], message: string): NodeVerdict => ({ name, state, message: cut(message) });
  if (!report) return v('Waiting', 'no AgentReport from this node yet');
  if (report.nodeErrors.length) return v('Failing', report.nodeErrors.join('; '));
  if (exc?.frozen !== undefined) return v('Frozen', exc.frozen);
  if (exc?.failing !== undefined) return v('Failing', exc.failing);
  const cmp = compareResourceVersions(report.syncedResourceVersion, planRv);
  if (cmp === undefined) return v('Waiting', `synced resourceVersion ${JSON.stringify(report.syncedResourceVersion)} cannot be compared with the plan's ${JSON.stringify(planRv)}`);
  if (cmp < 0) return v('Waiting', 'has not synced this plan yet');
  if (isTruncated(report)) {
    return v('Waiting', `state unknown: the report is truncated (lists ${report.failing.length} of ${report.failingCount} failing, ${report.frozen.length} of ${report.frozenCount} frozen VirtualServers)`);
  }
  return { name, state: 'Programmed', message: '' };
}

/** The state of every node with a part in the plan: its directors, and the other nodes listing it. */
export function nodeVerdicts(pub: Publication, uid: string, reports: ReportView): NodeVerdict[] {
  const exc = reports.exceptions(uid);
  const out = pub.directors.map((d) => directorVerdict(d, reports.get(d), exc.get(d), pub.resourceVersion));
  const directors = new Set(pub.directors);
  for (const [node, e] of exc) {
    if (directors.has(node)) continue;
    if (e.frozen !== undefined) out.push({ name: node, state: 'Frozen', message: cut(e.frozen) });
    else if (e.failing !== undefined) out.push({ name: node, state: 'Failing', message: cut(e.failing) });
  }
  return out;
}

const SEVERITY = { Failing: 0, Frozen: 1, Waiting: 2 } as const;

function named(list: NodeProgramming[]): string {
  const head = list.slice(0, NAMED).map((n) => `node ${n.name}: ${n.message}`).join('; ');
  return list.length > NAMED ? `${head}; and ${list.length - NAMED} more node(s)` : head;
}

/**
 * Programmed for a published plan: True when every director programmed it and no node fails it;
 * False when a node fails or freezes it (the message names the node and the agent's words);
 * Unknown while a director has not caught up. `generation` is the VirtualServer's: a plan of an
 * older one (kept while the spec is invalid) says so.
 */
export function judgeProgrammed(pub: Publication | undefined, uid: string, generation: number, reports: ReportView): ProgrammedSummary {
  const none = (message: string): ProgrammedSummary => ({ condition: { type: 'Programmed', status: 'False', reason: 'NothingToProgram', message }, nodes: [], programmedNodes: 0 });
  if (!pub) return none('no plan is published for this VirtualServer');
  if (pub.directors.length === 0) return none('no director nodes');
  if (pub.services === 0) return none('no virtual service to program');
  const verdicts = nodeVerdicts(pub, uid, reports);
  const bad = verdicts.filter((v): v is NodeProgramming => v.state !== 'Programmed')
    .sort((a, b) => SEVERITY[a.state] - SEVERITY[b.state] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const programmedNodes = verdicts.length - bad.length;
  const nodes = bad.slice(0, MAX_STATUS_NODES);
  const kept = pub.generation !== generation ? ` (the plan of generation ${pub.generation}, kept while the spec is invalid)` : '';
  const failing = bad.filter((n) => n.state === 'Failing'), frozen = bad.filter((n) => n.state === 'Frozen');
  const waiting = bad.filter((n) => n.state === 'Waiting');
  let condition: ConditionValue;
  if (failing.length || frozen.length) {
    condition = { type: 'Programmed', status: 'False', reason: failing.length ? 'ProgrammingFailed' : 'Frozen', message: `${named([...failing, ...frozen])}${kept}` };
  } else if (waiting.length) {
    const names = waiting.slice(0, NAMED).map((n) => n.name).join(', ') + (waiting.length > NAMED ? ', ...' : '');
    condition = { type: 'Programmed', status: 'Unknown', reason: 'AwaitingAgents', message: `waiting for ${waiting.length} of ${pub.directors.length} director(s) to program plan ${pub.revision}: ${names}${kept}` };
  } else {
    condition = { type: 'Programmed', status: 'True', reason: 'Programmed', message: `${pub.directors.length} director(s) programmed plan ${pub.revision}${kept}` };
  }
  return { condition, nodes, programmedNodes };
}
