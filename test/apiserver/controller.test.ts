// The controller against a real kube-apiserver + etcd, running as a user bound only to
// operator/rbac/clusterrole.yaml: examples applied with kubectl get a status and a published plan;
// a Service-backed VirtualServer follows its EndpointSlices; 10,000 endpoints x 2 ports publish
// ~20 PlanSlices with a small status, deleted with the VirtualServer; (VIP, protocol, port)
// conflicts; two replicas with Lease leader election; a restart that converges without writing.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import pino from 'pino';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Controller } from '../../operator/controller.ts';
import type { KubeApi } from '../../kube/api.ts';
import { isNotFound } from '../../kube/errors.ts';
import { ENDPOINT_SLICES, LEASES, PLAN_SLICES, VIP_POOLS, VIRTUAL_SERVERS, type Condition, type KubeObject, type VirtualServerObject } from '../../kube/types.ts';
import { CHANGE_TIME_ANNOTATION, TRIGGER_TIME_ANNOTATION, type OwnerPlan, type PlanSliceObject } from '../../api/plan-slice.ts';
import { apiFor, until } from '../lib/apiserver-client.ts';
import { gated } from '../lib/prereq.ts';
import { fetchPlan, ownerSelector, planRealServers } from '../lib/published-plan.ts';
import { apiserverPrereqs, startControlPlane, type ControlPlane, type KubeconfigFile } from '../../lab/apiserver/harness.ts';

const test = gated(suite('apiserver: controller'), apiserverPrereqs());
const LEASE_NS = 'lvs-system';
// Short but proportionate to the defaults (15/10/2 s), so hand-over is observable in seconds.
/** Namespaces the tests below create (each its own; the examples use default). */
const TEST_NAMESPACES = ['follow', 'big', 'conflict', 'ha', 'proc'];
const ELECTION = { namespace: LEASE_NS, name: 'lvs-operator', leaseDurationMs: 4000, renewDeadlineMs: 3000, retryPeriodMs: 500 };

let cp: ControlPlane | undefined;
let operatorKc: KubeconfigFile;
let admin: KubeApi;
const running = new Set<Controller>();
const P = () => { if (!cp) throw new Error('control plane did not start'); return cp; };

async function kubectl(args: string[], stdin?: string): Promise<string> {
  const r = await P().kubectl(args, stdin === undefined ? {} : { stdin });
  assert.is(r.code, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function startController(identity: string): Promise<Controller> {
  const c = new Controller({
    api: await apiFor(operatorKc.path), identity, leaderElection: ELECTION,
    logger: pino({ level: process.env.LVS_TEST_LOG ?? 'silent' }), http: { port: 0, host: '127.0.0.1' },
  });
  running.add(c);
  await c.start();
  return c;
}

async function stopController(c: Controller): Promise<void> {
  running.delete(c);
  await c.stop();
}

async function getVs(ns: string, name: string): Promise<VirtualServerObject | undefined> {
  try { return await admin.get<VirtualServerObject>(VIRTUAL_SERVERS, ns, name); } catch (err) { if (isNotFound(err)) return undefined; throw err; }
}

/** The plan published for a VirtualServer, listed by its uid label and assembled as an agent would. */
async function planOf(vs: VirtualServerObject): Promise<OwnerPlan> {
  return fetchPlan((labelSelector) => admin.list(PLAN_SLICES, { labelSelector }), vs.metadata.uid!);
}
const rsOf = async (vs: VirtualServerObject) => planRealServers(await planOf(vs)).map(({ key: _key, ...r }) => r);

async function getPool(name: string): Promise<KubeObject & { status?: { conditions?: Condition[] } }> {
  return admin.get(VIP_POOLS, undefined, name);
}

const condOf = (vs: { status?: { conditions?: Condition[] } } | undefined, type: string): Condition | undefined => vs?.status?.conditions?.find((c) => c.type === type);

async function waitCond(ns: string, name: string, type: string, status: string, reason?: string): Promise<VirtualServerObject> {
  return until(async () => {
    const vs = await getVs(ns, name);
    const c = condOf(vs, type);
    return c?.status === status && (!reason || c.reason === reason) && vs?.status?.observedGeneration === vs?.metadata.generation ? vs : undefined;
  }, `${ns}/${name} ${type}=${status}${reason ? ` (${reason})` : ''}`);
}

async function idle(c: Controller): Promise<void> {
  await until(async () => c.idle(), 'controller idle');
  await new Promise((r) => setTimeout(r, 300));
  await until(async () => c.idle(), 'controller idle');
}

const nodeYaml = (name: string, director: boolean, ip: string) => `apiVersion: v1
kind: Node
metadata: {name: ${name}, labels: {lvs.dev/director: "${director}"}}
status: {addresses: [{type: InternalIP, address: ${ip}}]}
`;

function sliceObj(ns: string, eps: Array<{ ip: string; pod: string; ready: boolean; terminating?: boolean }>, triggerTime?: string): KubeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { name: 'web-abc12', namespace: ns, labels: { 'kubernetes.io/service-name': 'web' }, ...(triggerTime ? { annotations: { [TRIGGER_TIME_ANNOTATION]: triggerTime } } : {}) },
    addressType: 'IPv4', ports: [{ name: 'web', port: 8080, protocol: 'TCP' }],
    endpoints: eps.map((e) => ({
      addresses: [e.ip], nodeName: 'node-a', targetRef: { kind: 'Pod', namespace: ns, name: e.pod },
      conditions: { ready: e.ready, serving: e.ready || !!e.terminating, terminating: !!e.terminating },
    })),
  } as KubeObject;
}

async function putSlice(ns: string, obj: KubeObject): Promise<void> {
  try {
    const cur = await admin.get(ENDPOINT_SLICES, ns, obj.metadata.name);
    await admin.replace(ENDPOINT_SLICES, ns, obj.metadata.name, { ...obj, metadata: { ...obj.metadata, resourceVersion: cur.metadata.resourceVersion } });
  } catch (err) {
    if (!isNotFound(err)) throw err;
    await admin.create(ENDPOINT_SLICES, ns, obj);
  }
}

test.before(async () => {
  try {
    await setup();
  } catch (err) {
    // uvu does not print hook failures; every test would then fail without a word.
    console.error('setup failed:', err);
    throw err;
  }
});

async function setup(): Promise<void> {
  cp = await startControlPlane();
  await cp.installCrds('crds');
  await kubectl(['apply', '-f', 'operator/rbac/clusterrole.yaml', '-f', 'operator/rbac/owned-policy.yaml']);
  await kubectl(['create', 'clusterrolebinding', 'lvs-operator', '--clusterrole=lvs-operator', '--user=lvs-operator']);
  await kubectl(['create', 'namespace', LEASE_NS]);
  operatorKc = await cp.userKubeconfig('lvs-operator');
  admin = await apiFor(cp.kubeconfig.path);
  for (const [n, d, ip] of [['node-a', true, '192.0.2.1'], ['node-b', true, '192.0.2.2'], ['node-c', false, '192.0.2.3']] as const) {
    await kubectl(['apply', '-f', '-'], nodeYaml(n, d, ip));
  }
  // Deny by default: the examples' VIPs are granted to namespace default by the example pool. The
  // other tests' VIPs lie in its 203.0.113.0/24 too (pools never overlap), so the admin adds their
  // namespaces to it, and node-c's address as a static real server (the ha test's second backend).
  await kubectl(['apply', '-f', 'examples/cluster/pool.yaml']);
  const grants = [...TEST_NAMESPACES.map((ns) => ({ op: 'add', path: '/spec/allocation/namespaces/-', value: ns })), { op: 'add', path: '/spec/staticRealServers/-', value: '192.0.2.3/32' }];
  await kubectl(['patch', 'vippool', 'examples', '--type=json', '-p', JSON.stringify(grants)]);
}

test.after(async () => {
  for (const c of [...running]) await stopController(c).catch(() => {});
  await cp?.stop();
});

test('the ClusterRole grants what the controller needs and nothing more', async () => {
  const can = async (...args: string[]) => (await P().kubectl(['auth', 'can-i', ...args], { kubeconfig: operatorKc })).stdout.trim();
  assert.is(await can('watch', 'virtualservers.lvs.dev', '-A'), 'yes');
  assert.is(await can('patch', 'virtualservers.lvs.dev', '--subresource=status', '-n', 'default'), 'yes');
  assert.is(await can('create', 'events.events.k8s.io', '-n', 'default'), 'yes');
  assert.is(await can('update', 'leases.coordination.k8s.io/lvs-operator', '-n', LEASE_NS), 'yes');
  assert.is(await can('update', 'leases.coordination.k8s.io/kube-scheduler', '-n', 'kube-system'), 'no');
  // RBAC lets it write VirtualServers (those it owns for LoadBalancer Services); the admission
  // policy operator/rbac/owned-policy.yaml keeps it off everyone else's (next test).
  assert.is(await can('update', 'virtualservers.lvs.dev', '-n', 'default'), 'yes');
  assert.is(await can('patch', 'services', '--subresource=status', '-n', 'default'), 'yes');
  assert.is(await can('update', 'services', '-n', 'default'), 'no');
  assert.is(await can('get', 'secrets', '-n', 'default'), 'no');
  assert.is(await can('get', 'services', '-n', 'default'), 'no', 'informers only list and watch');
  assert.is(await can('patch', 'nodes'), 'no');
  for (const verb of ['list', 'watch', 'create', 'update', 'delete']) assert.is(await can(verb, 'planslices.lvs.dev'), 'yes', `${verb} planslices`);
  assert.is(await can('watch', 'agentreports.lvs.dev'), 'yes');
  assert.is(await can('update', 'agentreports.lvs.dev'), 'no', 'reports are the agents\' own');
  // Admission: pools, namespaces' labels and service CIDRs are read; only a pool's status is written.
  for (const res of ['vippools.lvs.dev', 'namespaces', 'servicecidrs.networking.k8s.io']) {
    for (const verb of ['list', 'watch']) assert.is(await can(verb, res), 'yes', `${verb} ${res}`);
    for (const verb of ['create', 'update', 'patch', 'delete']) assert.is(await can(verb, res), 'no', `${verb} ${res}`);
  }
  assert.is(await can('patch', 'vippools.lvs.dev', '--subresource=status'), 'yes');
  assert.is(await can('update', 'vippools.lvs.dev', '--subresource=status'), 'no');
  assert.is(await can('get', 'namespaces'), 'no', 'informers only list and watch');
});

test('as the controller: a user\'s VirtualServer cannot be created, edited or deleted; one it owns for a Service can', async () => {
  const as = (args: string[], stdin?: string) => P().kubectl(args, { kubeconfig: operatorKc, ...(stdin === undefined ? {} : { stdin }) });
  const doc = (name: string, owned: boolean) => `apiVersion: lvs.dev/v1alpha1
kind: VirtualServer
metadata: {name: ${name}, namespace: default${owned ? ', labels: {lvs.dev/load-balancer-service: x}' : ''}}
spec: {addresses: [203.0.113.201], ports: [{name: http, port: 80}], backends: {service: {name: x}}}
`;
  await kubectl(['apply', '-f', '-'], doc('users-own', false));
  // kubectl replace is an update (the verb RBAC grants the controller; it has no patch).
  const edit = await as(['replace', '-f', '-'], doc('users-own', false).replace('port: 80}', 'port: 81}'));
  assert.is.not(edit.code, 0, 'the controller edited a user\'s VirtualServer');
  assert.match(edit.stderr, /writes only the VirtualServers it owns/);
  const del = await as(['delete', 'vs', 'users-own', '-n', 'default']);
  assert.is.not(del.code, 0, 'deleted a user\'s VirtualServer');
  assert.match(del.stderr, /writes only the VirtualServers it owns/);
  const create = await as(['create', '-f', '-'], doc('not-labelled', false));
  assert.is.not(create.code, 0, 'created an unlabelled VirtualServer');
  assert.match(create.stderr, /writes only the VirtualServers it owns/);
  const take = await as(['replace', '-f', '-'], doc('users-own', true));
  assert.is.not(take.code, 0, 'took a user\'s VirtualServer over by labelling it');
  assert.match(take.stderr, /writes only the VirtualServers it owns/);
  assert.equal((await admin.get<VirtualServerObject>(VIRTUAL_SERVERS, 'default', 'users-own')).spec?.ports, [{ name: 'http', port: 80, protocol: 'TCP' }], 'the user\'s spec is as written');
  const mine = await as(['create', '-f', '-'], doc('lb-x', true));
  assert.is(mine.code, 0, mine.stderr);
  assert.is((await as(['delete', 'vs', 'lb-x', '-n', 'default'])).code, 0);
  await kubectl(['delete', 'vs', 'users-own', '-n', 'default']);
});

test('kubectl apply of every example: each VirtualServer gets a status for its generation', async () => {
  const c = await startController('replica-0');
  const files = readdirSync('examples').filter((f) => f.endsWith('.yaml')).sort();
  assert.ok(files.length >= 4, `examples: ${files.join(', ')}`);
  const names: string[] = [];
  for (const f of files) {
    const out = await kubectl(['apply', '-f', `examples/${f}`]);
    for (const m of out.matchAll(/^virtualserver\.lvs\.dev\/(\S+) /gm)) names.push(m[1]!);
  }
  assert.ok(names.length >= 4, `applied: ${names.join(', ')}`);
  for (const n of names) {
    const vs = await waitCond('default', n, 'InvalidSpec', 'False');
    assert.is(condOf(vs, 'Programmed')?.reason, 'AwaitingAgents', n);
    assert.is(condOf(vs, 'Conflict')?.status, 'False', n);
    assert.is(vs.status!.observedGeneration, vs.metadata.generation, n);
    // The example pool grants every example's VIPs, forwarding and static real servers.
    const refused = vs.status!.conditions!.filter((x) => /NotAllowed|Reserved/.test(x.reason)).map((x) => `${x.type}=${x.reason}: ${x.message}`);
    assert.equal(refused, [], n);
  }
  await until(async () => condOf(await getPool('examples'), 'Ready')?.status === 'True', 'the example pool Ready=True');
  // The NAT seeds example: two static real servers, on directors = every node (no selector).
  const seeds = await waitCond('default', 'seeds-web', 'Ready', 'True');
  assert.equal(seeds.status!.directors, ['node-a', 'node-b', 'node-c']);
  assert.equal((await rsOf(seeds)).map((r) => `${r.address}:${r.port}/${r.weight}`), ['172.16.0.2:80/1', '172.16.0.3:8000/2']);
  assert.is(seeds.status!.readyRealServers, 2);
  const seedSlices = (await admin.list(PLAN_SLICES, { labelSelector: ownerSelector(seeds.metadata.uid!) })).items as Array<KubeObject & { revision: string }>;
  assert.equal(seeds.status!.plan, { revision: seedSlices[0]!.revision, slices: 1, generation: seeds.metadata.generation });
  // The Service example has no endpoints here (no kube-controller-manager): not ready, and says why.
  const web = await waitCond('default', 'web', 'Ready', 'False', 'NoReadyEndpoints');
  assert.equal(web.status!.directors, ['node-a', 'node-b'], 'directors from the nodeSelector');
  const printed = await kubectl(['get', 'vs', 'seeds-web', '--no-headers']);
  assert.match(printed, /seeds-web\s+\["203\.0\.113\.5"\]\s+80\s+NAT\s+wrr\s+2\s+True/);
  await stopController(c);
});

test('a Service-backed VirtualServer follows its EndpointSlices: ready, terminating, removed', async () => {
  const ns = 'follow';
  await kubectl(['create', 'namespace', ns]);
  await kubectl(['apply', '-n', ns, '-f', '-'], `apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{name: web, port: 8080, targetPort: 8080}]}
---
apiVersion: lvs.dev/v1alpha1
kind: VirtualServer
metadata: {name: web}
spec:
  addresses: [203.0.113.90]
  ports: [{name: web, port: 80}]
  backends: {service: {name: web}}
`);
  const c = await startController('replica-0');
  // A failure must not leave this controller holding the lease: the tests after it need it.
  try {
    await waitCond(ns, 'web', 'Ready', 'False', 'NoReadyEndpoints');
    await putSlice(ns, sliceObj(ns, [{ ip: '10.244.1.5', pod: 'web-1', ready: true }, { ip: '10.244.1.6', pod: 'web-2', ready: true }]));
    let vs = await until(async () => ((await getVs(ns, 'web'))?.status?.readyRealServers === 2 ? getVs(ns, 'web') : undefined), 'two ready');
    assert.equal(await rsOf(vs!), [
      { portName: 'web', address: '10.244.1.5', port: 8080, weight: 1, state: 'Ready', node: 'node-a', pod: { namespace: ns, name: 'web-1' } },
      { portName: 'web', address: '10.244.1.6', port: 8080, weight: 1, state: 'Ready', node: 'node-a', pod: { namespace: ns, name: 'web-2' } },
    ]);
    assert.is(condOf(vs, 'Ready')?.status, 'True');
    // The plan carries when its change happened: no trigger time on the EndpointSlice, so when it was resolved.
    const changeTimes = async () => (await admin.list(PLAN_SLICES)).items.filter((p) => (p as unknown as PlanSliceObject).owner.namespace === ns).map((p) => p.metadata.annotations?.[CHANGE_TIME_ANNOTATION]);
    const [resolvedAt] = await changeTimes();
    assert.ok(resolvedAt && Math.abs(Date.parse(resolvedAt) - Date.now()) < 60_000, `change time of a resolve: ${resolvedAt}`);
    // The EndpointSlice controller's trigger time (the Pod's change) is newer than the last revision's
    // change time: it becomes the plan's change time.
    const trigger = new Date().toISOString();
    await putSlice(ns, sliceObj(ns, [{ ip: '10.244.1.5', pod: 'web-1', ready: true }, { ip: '10.244.1.6', pod: 'web-2', ready: false, terminating: true }], trigger));
    vs = await until(async () => ((await getVs(ns, 'web'))?.status?.readyRealServers === 1 ? getVs(ns, 'web') : undefined), 'one ready, one draining');
    assert.equal(await changeTimes(), [trigger]);
    // A VirtualServer created now over the same Service: its change is its creation, not the Pods' older trigger.
    await new Promise((r) => setTimeout(r, 1_100)); // creationTimestamp has whole seconds
    await kubectl(['apply', '-n', ns, '-f', '-'], 'apiVersion: lvs.dev/v1alpha1\nkind: VirtualServer\nmetadata: {name: web2}\nspec: {addresses: [203.0.113.91], ports: [{name: web, port: 80}], backends: {service: {name: web}}}\n');
    const created = Date.parse((await getVs(ns, 'web2'))!.metadata.creationTimestamp!);
    const stamp = await until(async () => (await admin.list(PLAN_SLICES)).items.find((p) => (p as unknown as PlanSliceObject).owner.name === 'web2')?.metadata.annotations?.[CHANGE_TIME_ANNOTATION], 'web2 plan');
    assert.ok(Date.parse(stamp) >= created && Date.parse(stamp) > Date.parse(trigger), `web2 change time ${stamp}: not before its creation ${new Date(created).toISOString()}`);
    await kubectl(['delete', '-n', ns, 'virtualserver/web2']);
    assert.equal((await rsOf(vs!)).map((r) => `${r.address} ${r.state} ${r.weight}`), ['10.244.1.5 Ready 1', '10.244.1.6 Draining 0']);
    await putSlice(ns, sliceObj(ns, [{ ip: '10.244.1.5', pod: 'web-1', ready: true }]));
    vs = await until(async () => ((await getVs(ns, 'web'))?.status?.realServerCount === 1 ? getVs(ns, 'web') : undefined), 'terminated endpoint gone');
    assert.equal((await rsOf(vs!)).map((r) => r.address), ['10.244.1.5']);
    await idle(c);
    assert.is(c.statusWrites.get(`${ns}/web`), 4, 'one write per change: initial, ready, draining, removed');
  } finally { await stopController(c); }
});

/** n endpoints x the ports web (8080) and metrics (9090), in EndpointSlices of at most 100 as Kubernetes writes them. */
function bigSlices(ns: string, n: number): KubeObject[] {
  const out: KubeObject[] = [];
  for (let i = 0; i * 100 < n; i++) {
    out.push({
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
      metadata: { name: `big-${String(i).padStart(3, '0')}`, namespace: ns, labels: { 'kubernetes.io/service-name': 'big' } },
      addressType: 'IPv4', ports: [{ name: 'web', port: 8080, protocol: 'TCP' }, { name: 'metrics', port: 9090, protocol: 'TCP' }],
      endpoints: Array.from({ length: Math.min(100, n - i * 100) }, (_, j) => {
        const k = i * 100 + j;
        return {
          addresses: [`10.${64 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}`], nodeName: k % 2 ? 'node-b' : 'node-a',
          targetRef: { kind: 'Pod', namespace: ns, name: `big-${k}` }, conditions: { ready: true, serving: true, terminating: false },
        };
      }),
    } as KubeObject);
  }
  return out;
}

test('10,000 endpoints x 2 ports behind a NAT VirtualServer: ~20 PlanSlices accepted, a small Ready status; deleted with it', async () => {
  const ns = 'big';
  await kubectl(['create', 'namespace', ns]);
  await kubectl(['apply', '-n', ns, '-f', '-'], `apiVersion: v1
kind: Service
metadata: {name: big}
spec: {ports: [{name: web, port: 8080, targetPort: 8080}, {name: metrics, port: 9090, targetPort: 9090}]}
`);
  for (const sl of bigSlices(ns, 10_000)) await admin.create(ENDPOINT_SLICES, ns, sl);
  await kubectl(['apply', '-n', ns, '-f', '-'], `apiVersion: lvs.dev/v1alpha1
kind: VirtualServer
metadata: {name: big}
spec:
  addresses: [203.0.113.99]
  ports: [{name: web, port: 80}, {name: metrics, port: 9090}]
  forwarding: NAT
  backends: {service: {name: big}}
`);
  const c = await startController('replica-0');
  const t0 = Date.now();
  const vs = await until(async () => {
    const v = await getVs(ns, 'big');
    return v?.status?.readyRealServers === 10_000 && condOf(v, 'Ready')?.status === 'True' ? v : undefined;
  }, 'Ready with 10,000 real servers', 120_000);
  console.log(`# 10,000 endpoints x 2 ports: Ready and published in ${Date.now() - t0} ms`);
  const slices = (await admin.list(PLAN_SLICES, { labelSelector: ownerSelector(vs.metadata.uid!) })).items;
  assert.ok(slices.length >= 20, `${slices.length} slices`);
  assert.equal(vs.status!.plan, { revision: (slices[0] as KubeObject & { revision: string }).revision, slices: slices.length, generation: vs.metadata.generation });
  const plan = await planOf(vs);
  assert.equal(plan.services.map((x) => [x.key, x.realServers.length]), [['TCP/203.0.113.99:80', 10_000], ['TCP/203.0.113.99:9090', 10_000]]);
  assert.ok(plan.services[0]!.realServers.every((r) => r.port === 8080 && r.weight === 1), 'NAT to each endpoint\'s port');
  const size = JSON.stringify(vs).length;
  console.log(`# VirtualServer object: ${size} bytes with ${slices.length} PlanSlices of ${Math.max(...slices.map((x) => JSON.stringify(x).length))} bytes at most`);
  assert.ok(size < 16 * 1024, `the VirtualServer is ${size} bytes`);
  assert.equal([vs.status!.realServerCount, vs.status!.directorCount, vs.status!.services], [10_000, 3, ['TCP/203.0.113.99:80', 'TCP/203.0.113.99:9090']]);
  await idle(c);
  await kubectl(['delete', 'vs', 'big', '-n', ns]);
  await until(async () => (await admin.list(PLAN_SLICES, { labelSelector: ownerSelector(vs.metadata.uid!) })).items.length === 0, 'slices deleted with the VirtualServer');
  await stopController(c);
});

test('same (VIP, protocol, port) twice: Conflict on the later only, with a Warning event; cleared when the first is deleted', async () => {
  const ns = 'conflict';
  await kubectl(['create', 'namespace', ns]);
  const c = await startController('replica-0');
  const vsYaml = (name: string) => `apiVersion: lvs.dev/v1alpha1
kind: VirtualServer
metadata: {name: ${name}}
spec:
  addresses: [203.0.113.77]
  ports: [{name: dns, port: 53, protocol: UDP}]
  backends: {static: [{address: 172.16.9.1}]}
`;
  await kubectl(['apply', '-n', ns, '-f', '-'], vsYaml('a-first'));
  await waitCond(ns, 'a-first', 'Ready', 'True');
  await kubectl(['apply', '-n', ns, '-f', '-'], vsYaml('b-second'));
  const later = await waitCond(ns, 'b-second', 'Conflict', 'True', 'AddressInUse');
  assert.match(condOf(later, 'Conflict')!.message, /UDP\/203\.0\.113\.77:53 is already claimed by VirtualServer conflict\/a-first/);
  assert.is(condOf(later, 'Ready')?.status, 'False');
  assert.is(condOf(await getVs(ns, 'a-first'), 'Conflict')?.status, 'False');
  const events = await until(async () => {
    const out = await kubectl(['get', 'events.events.k8s.io', '-n', ns, '-o', 'json']);
    const items = (JSON.parse(out) as { items: Array<{ type: string; reason: string; regarding: { name: string }; reportingController: string }> }).items;
    return items.some((e) => e.regarding.name === 'b-second' && e.type === 'Warning') ? items : undefined;
  }, 'Warning event');
  assert.ok(events.every((e) => e.reportingController === 'lvs.dev/operator'));
  assert.equal(events.filter((e) => e.regarding.name === 'b-second' && e.type === 'Warning').map((e) => e.reason), ['AddressInUse']);
  await kubectl(['delete', 'vs', 'a-first', '-n', ns]);
  const freed = await waitCond(ns, 'b-second', 'Conflict', 'False');
  assert.is(condOf(freed, 'Ready')?.status, 'True');
  await stopController(c);
});

async function leaseHolder(): Promise<string | undefined> {
  const l = await admin.get<KubeObject & { spec?: { holderIdentity?: string } }>(LEASES, LEASE_NS, 'lvs-operator');
  return l.spec?.holderIdentity;
}

test('two replicas: exactly one writes; stopping the leader hands over within the lease duration; a restart writes nothing', async () => {
  const ns = 'ha';
  await kubectl(['create', 'namespace', ns]);
  const r1 = await startController('replica-1');
  await until(async () => r1.isLeader(), 'replica-1 leads');
  const r2 = await startController('replica-2');
  await until(async () => r2.synced(), 'replica-2 synced');
  const vs = (name: string, vip: string) => `apiVersion: lvs.dev/v1alpha1
kind: VirtualServer
metadata: {name: ${name}}
spec:
  addresses: [${vip}]
  ports: [{name: http, port: 80}]
  backends: {static: [{address: 172.16.8.1}, {address: 192.0.2.3}]}
`;
  await kubectl(['apply', '-n', ns, '-f', '-'], vs('one', '203.0.113.61'));
  await waitCond(ns, 'one', 'Ready', 'True');
  await idle(r1);
  assert.is(r2.isLeader(), false);
  assert.is(await leaseHolder(), 'replica-1');
  assert.is(r2.statusWrites.size, 0, 'the standby wrote nothing');
  assert.ok((r1.statusWrites.get(`${ns}/one`) ?? 0) >= 1);
  const metrics = await (await fetch(`http://127.0.0.1:${r2.httpPort}/metrics`)).text();
  assert.match(metrics, /lvs_operator_leader 0/);
  assert.is((await fetch(`http://127.0.0.1:${r2.httpPort}/readyz`)).status, 200, 'a synced standby is ready');

  const stoppedAt = Date.now();
  await stopController(r1);
  await until(async () => r2.isLeader(), 'replica-2 takes over', ELECTION.leaseDurationMs);
  const handover = Date.now() - stoppedAt;
  assert.ok(handover < ELECTION.leaseDurationMs, `hand-over took ${handover} ms`);
  assert.is(await leaseHolder(), 'replica-2');
  // The new leader converges without rewriting what replica-1 wrote.
  await idle(r2);
  assert.is(r2.statusWrites.size, 0, 'nothing to rewrite after the hand-over');
  await kubectl(['apply', '-n', ns, '-f', '-'], vs('two', '203.0.113.62'));
  const two = await waitCond(ns, 'two', 'Ready', 'True');
  assert.equal((await rsOf(two)).map((r) => [r.address, r.node ?? null]), [['172.16.8.1', null], ['192.0.2.3', 'node-c']]);
  await idle(r2);
  assert.is(r2.statusWrites.get(`${ns}/two`), 1);

  // Restart: a fresh replica converges on the same objects without a single status write.
  const before = new Map<string, string | undefined>();
  const all = [...(await admin.list(VIRTUAL_SERVERS)).items, ...(await admin.list(PLAN_SLICES)).items];
  for (const o of all) before.set(`${o.metadata.namespace ?? ''}/${o.metadata.name}`, o.metadata.resourceVersion);
  await stopController(r2);
  const r3 = await startController('replica-3');
  await until(async () => r3.isLeader() && r3.synced(), 'replica-3 leads');
  await idle(r3);
  await new Promise((r) => setTimeout(r, 1000));
  assert.is(r3.statusWrites.size, 0, `writes after restart: ${JSON.stringify([...r3.statusWrites])}`);
  const after = [...(await admin.list(VIRTUAL_SERVERS)).items, ...(await admin.list(PLAN_SLICES)).items];
  assert.is(after.length, before.size);
  for (const o of after) {
    const k = `${o.metadata.namespace ?? ''}/${o.metadata.name}`;
    assert.is(o.metadata.resourceVersion, before.get(k), `${k} untouched (status and plan slices)`);
  }
  await stopController(r3);
});

test('operator/main.ts as a process: leads, writes status, serves /readyz, and on SIGTERM releases the lease and exits 0', async () => {
  const ns = 'proc';
  await kubectl(['create', 'namespace', ns]);
  const child = spawn(process.execPath, ['operator/main.ts', '--metrics-port=0', '--lease-duration=4', '--renew-deadline=3', '--retry-period=0.5'], {
    env: { ...process.env, KUBECONFIG: operatorKc.path, POD_NAME: 'proc-1', POD_NAMESPACE: LEASE_NS, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const logs: Array<Record<string, unknown>> = [];
  createInterface(child.stdout).on('line', (l) => { try { logs.push(JSON.parse(l) as Record<string, unknown>); } catch { /* not a log line */ } });
  try {
    const port = await until(async () => logs.find((l) => typeof l.metricsPort === 'number')?.metricsPort as number | undefined, `metrics port in the logs (stderr: ${stderr})`);
    assert.ok(logs.every((l) => l.component === 'lvs-operator' && l.identity === 'proc-1'), 'structured logs with fixed keys');
    await until(async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200, '/readyz');
    await until(async () => (await leaseHolder()) === 'proc-1', 'the process holds the lease');
    await kubectl(['apply', '-n', ns, '-f', '-'], `apiVersion: lvs.dev/v1alpha1
kind: VirtualServer
metadata: {name: solo}
spec:
  addresses: [203.0.113.95]
  ports: [{name: http, port: 80}]
  backends: {static: [{address: 172.16.7.1}]}
`);
    await waitCond(ns, 'solo', 'Ready', 'True');
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(metrics, /lvs_operator_status_writes_total [1-9]/);
    assert.match(metrics, /process_cpu_seconds_total/, 'default process metrics in the real entry point');
    const t0 = Date.now();
    child.kill('SIGTERM');
    assert.is(await exited, 0, stderr);
    assert.ok(Date.now() - t0 < 5000, `graceful stop took ${Date.now() - t0} ms`);
    assert.is(await leaseHolder(), undefined, 'lease released on SIGTERM');
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

test.run();
