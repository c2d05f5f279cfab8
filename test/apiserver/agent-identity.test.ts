// A node's agent credentials on the real kube-apiserver: what a stolen agent token can and cannot
// do. The agents authenticate as the chart gives them: one ServiceAccount, and per node a token
// bound to the agent's pod on that node (TokenRequest with a Pod binding, what the kubelet asks
// for), which carries the node in userInfo.extra["authentication.kubernetes.io/node-name"]. The
// rules under test are the shipped files themselves: dataplane/rbac/clusterrole.yaml (RBAC) and
// dataplane/rbac/report-policy.yaml (the ValidatingAdmissionPolicy).
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gated } from '../lib/prereq.ts';
import { apiserverPrereqs, startControlPlane, type ControlPlane, type KubectlResult } from '../../lab/apiserver/harness.ts';

const test = gated(suite('agent identity: own node report only'), apiserverPrereqs());
const NS = 'lvs-system';
let plane: ControlPlane | undefined;
const P = () => { if (!plane) throw new Error('control plane did not start'); return plane; };
/** kubeconfig paths by who: n1, n2 (pod-bound tokens), unbound (a token of the same account bound to nothing) */
const kc: Record<string, string> = {};

async function ok(args: string[], stdin?: string): Promise<string> {
  const r = await P().kubectl(args, stdin === undefined ? {} : { stdin });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function tokenKubeconfig(name: string, token: string): Promise<string> {
  const path = join(P().dir, `agent-${name}.kubeconfig`);
  await writeFile(path, [
    'apiVersion: v1', 'kind: Config',
    'clusters:', '- name: c', '  cluster:', `    server: ${P().url}`, `    certificate-authority: ${P().caCert}`,
    'users:', `- name: ${name}`, '  user:', `    token: ${token}`,
    'contexts:', '- name: c', '  context:', '    cluster: c', `    user: ${name}`, 'current-context: c', '',
  ].join('\n'), { mode: 0o600 });
  return path;
}

const report = (name: string, node = name) => JSON.stringify({
  apiVersion: 'lvs.dev/v1alpha1', kind: 'AgentReport', metadata: { name }, node, syncedResourceVersion: '1',
  nodeErrors: [], failing: [], failingCount: 0, frozen: [], frozenCount: 0, prepared: [],
});

const as = (who: string, args: string[], stdin?: string): Promise<KubectlResult> => P().kubectl(args, { kubeconfig: kc[who]!, ...(stdin === undefined ? {} : { stdin }) });
const can = async (who: string, ...args: string[]) => (await as(who, ['auth', 'can-i', ...args])).stdout.trim();

test.before(async () => {
  try {
    plane = await startControlPlane();
    await plane.installCrds('crds');
    await ok(['apply', '-f', 'dataplane/rbac/clusterrole.yaml', '-f', 'dataplane/rbac/report-policy.yaml']);
    await ok(['create', 'namespace', NS]);
    await ok(['create', 'serviceaccount', 'lvs-agent', '-n', NS]);
    await ok(['create', 'clusterrolebinding', 'lvs-agent', '--clusterrole=lvs-agent', `--serviceaccount=${NS}:lvs-agent`]);
    for (const n of ['n1', 'n2']) {
      await ok(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: n } }));
      await ok(['apply', '-f', '-'], JSON.stringify({
        apiVersion: 'v1', kind: 'Pod', metadata: { name: `agent-${n}`, namespace: NS },
        spec: { nodeName: n, serviceAccountName: 'lvs-agent', containers: [{ name: 'agent', image: 'lvs-operator-agent:dev' }] },
      }));
      const token = (await ok(['create', 'token', 'lvs-agent', '-n', NS, '--bound-object-kind=Pod', `--bound-object-name=agent-${n}`, '--duration=1h'])).trim();
      kc[n] = await tokenKubeconfig(n, token);
    }
    kc.unbound = await tokenKubeconfig('unbound', (await ok(['create', 'token', 'lvs-agent', '-n', NS, '--duration=1h'])).trim());
    // n2's report exists (its agent wrote it), for the overwrite attempts below.
    const r2 = await as('n2', ['create', '-f', '-'], report('n2'));
    if (r2.code !== 0) throw new Error(`agent n2 could not create its own report: ${r2.stderr}`);
  } catch (err) {
    console.error('setup failed:', err);
    throw err;
  }
});
test.after(async () => { await plane?.stop(); });

test('a pod-bound agent token names its node (what the policy keys on)', async () => {
  const who = JSON.parse((await as('n1', ['auth', 'whoami', '-o', 'json'])).stdout) as { status: { userInfo: { username: string; extra?: Record<string, string[]> } } };
  assert.is(who.status.userInfo.username, `system:serviceaccount:${NS}:lvs-agent`);
  assert.equal(who.status.userInfo.extra?.['authentication.kubernetes.io/node-name'], ['n1']);
});

test('agent n1 creates and updates its own report', async () => {
  const c = await as('n1', ['create', '-f', '-'], report('n1'));
  assert.is(c.code, 0, c.stderr);
  const u = await as('n1', ['replace', '-f', '-'], JSON.stringify({ ...JSON.parse(report('n1')), syncedResourceVersion: '42' }));
  assert.is(u.code, 0, u.stderr);
  assert.is((await ok(['get', 'agentreport', 'n1', '-o', 'jsonpath={.syncedResourceVersion}'])).trim(), '42');
});

test('agent n1 cannot create, overwrite or delete node n2\'s report', async () => {
  const before = await ok(['get', 'agentreport', 'n2', '-o', 'jsonpath={.metadata.resourceVersion}']);
  const u = await as('n1', ['replace', '-f', '-'], JSON.stringify({ ...JSON.parse(report('n2')), failing: [{ uid: 'x', virtualServer: 'team-a/web', message: 'forged' }], failingCount: 1 }));
  assert.is.not(u.code, 0, 'overwrite of n2 accepted');
  assert.match(u.stderr, /bound to node n1 may write only the AgentReport named n1, not n2/);
  const c = await as('n1', ['create', '-f', '-'], report('n3'));
  assert.is.not(c.code, 0, 'a report for another node accepted');
  assert.match(c.stderr, /may write only the AgentReport named n1, not n3/);
  const d = await as('n1', ['delete', 'agentreport', 'n2']);
  assert.is.not(d.code, 0, 'delete accepted');
  assert.match(d.stderr, /forbidden/i);
  assert.is(await ok(['get', 'agentreport', 'n2', '-o', 'jsonpath={.metadata.resourceVersion}']), before, 'n2\'s report changed');
});

test('a token of the agent account bound to no node writes no report at all', async () => {
  const c = await as('unbound', ['create', '-f', '-'], report('n4'));
  assert.is.not(c.code, 0);
  assert.match(c.stderr, /this token names no node/);
});

test('agent credentials cannot write any plan or any VirtualServer, nor read pods or secrets', async () => {
  for (const [verb, res] of [['create', 'planslices.lvs.dev'], ['update', 'planslices.lvs.dev'], ['delete', 'planslices.lvs.dev'],
    ['update', 'virtualservers.lvs.dev'], ['get', 'virtualservers.lvs.dev'], ['delete', 'agentreports.lvs.dev']] as const) {
    assert.is(await can('n1', verb, res, '-A'), 'no', `${verb} ${res}`);
  }
  assert.is(await can('n1', 'patch', 'virtualservers.lvs.dev', '--subresource=status', '-n', 'default'), 'no');
  assert.is(await can('n1', 'list', 'pods', '-A'), 'no', 'the agent no longer reads pods');
  assert.is(await can('n1', 'get', 'secrets', '-A'), 'no');
  assert.is(await can('n1', 'watch', 'planslices.lvs.dev'), 'yes');
  assert.is(await can('n1', 'watch', 'agentreports.lvs.dev'), 'yes');
  // Its node's drain state (dataplane/cluster/yielding.ts): read only.
  assert.is(await can('n1', 'watch', 'nodes'), 'yes');
  for (const verb of ['update', 'patch', 'delete'] as const) assert.is(await can('n1', verb, 'nodes'), 'no', `${verb} nodes`);
  // And for real, not only as RBAC says: a forged plan is refused.
  const forged = await as('n1', ['create', '-f', '-'], JSON.stringify({
    apiVersion: 'lvs.dev/v1alpha1', kind: 'PlanSlice', metadata: { name: 'forged-0' },
    owner: { namespace: 'team-a', name: 'web', uid: 'forged', generation: 1 }, revision: 'x', index: 0, count: 1, directors: ['n1'], services: [],
  }));
  assert.is.not(forged.code, 0);
  assert.match(forged.stderr, /forbidden/i);
});

test('people are governed by RBAC alone: an admin may still fix or delete any report', async () => {
  const r = await P().kubectl(['delete', 'agentreport', 'n2']);
  assert.is(r.code, 0, r.stderr);
});

test.run();
