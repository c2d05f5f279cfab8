// VIPPools and reserved addresses on a real kube-apiserver, seen by a tenant: user "tenant" may
// only create/edit VirtualServers, Services and EndpointSlices in namespace team-a (a Role; no
// virtualservers/status, no vippools), the controller runs as user lvs-operator bound only to
// operator/rbac/clusterrole.yaml. Every way a tenant could make the directors program an address
// that is not theirs is refused: cluster-scoped pools and status are out of reach (Forbidden), the
// nodes', Services', service CIDR's and API server's addresses are AddressReserved even inside a
// pool that (carelessly) admits team-a, addresses outside a pool admitting team-a are
// AddressNotAllowed, static real servers outside the pool are RealServerNotAllowed, and a held
// (VIP, protocol, port) stays with its holder however old the claimant. A refused VIP is in no
// PlanSlice. Pools the CEL cannot judge (overlap, reversed range) get Ready=False naming the field.
import pino from 'pino';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Controller } from '../../operator/controller.ts';
import type { KubeApi } from '../../kube/api.ts';
import { PLAN_SLICES, SERVICES, VIP_POOLS, VIRTUAL_SERVERS, type Condition, type KubeObject, type VirtualServerObject } from '../../kube/types.ts';
import { apiFor, until } from '../lib/apiserver-client.ts';
import { gated } from '../lib/prereq.ts';
import { fetchPlan, planRealServers } from '../lib/published-plan.ts';
import type { OwnerPlan } from '../../api/plan-slice.ts';
import { apiserverPrereqs, startControlPlane, type ControlPlane, type KubeconfigFile } from '../../lab/apiserver/harness.ts';

const test = gated(suite('apiserver: VIP pools and reserved addresses'), apiserverPrereqs());
const NS = 'team-a';
/** The API server advertises a global unicast address (the harness default is loopback, reserved anyway). */
const APISERVER_IP = '198.51.100.250';
const NODE_IP = '192.0.2.1', POD_CIDR = '10.244.1.0/24';
const SERVICE_CIDR6 = 'fd00:10:96::/112';

let cp: ControlPlane | undefined;
let admin: KubeApi;
let tenant: KubeconfigFile;
let controller: Controller | undefined;
const P = () => { if (!cp) throw new Error('control plane did not start'); return cp; };

/** kubectl as admin, or as the tenant; must succeed. */
async function kubectl(args: string[], o: { stdin?: string; as?: KubeconfigFile } = {}): Promise<string> {
  const r = await P().kubectl(args, { ...(o.stdin === undefined ? {} : { stdin: o.stdin }), ...(o.as ? { kubeconfig: o.as } : {}) });
  assert.is(r.code, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}
const asTenant = (args: string[], stdin?: string) => kubectl(args, { as: tenant, ...(stdin === undefined ? {} : { stdin }) });

/** kubectl that must fail; returns stderr. */
async function refused(args: string[], o: { stdin?: string; as?: KubeconfigFile } = {}): Promise<string> {
  const r = await P().kubectl(args, { ...(o.stdin === undefined ? {} : { stdin: o.stdin }), ...(o.as ? { kubeconfig: o.as } : {}) });
  assert.is.not(r.code, 0, `kubectl ${args.join(' ')} succeeded: ${r.stdout}`);
  return r.stderr;
}

type WithConditions = KubeObject & { status?: { observedGeneration?: number; conditions?: Condition[] } };
const condOf = (o: WithConditions | undefined, type: string): Condition | undefined => o?.status?.conditions?.find((c) => c.type === type);

/** Waits until the object's condition has this status (and reason) for its current generation. */
async function waitCond<T extends WithConditions>(get: () => Promise<T>, what: string, type: string, status: string, reason?: string): Promise<T> {
  return until(async () => {
    const o = await get();
    const c = condOf(o, type);
    return c?.status === status && (!reason || c.reason === reason) && o.status?.observedGeneration === o.metadata.generation ? o : undefined;
  }, `${what} ${type}=${status}${reason ? ` (${reason})` : ''}`);
}
const vsCond = (name: string, type: string, status: string, reason?: string) =>
  waitCond(() => admin.get<VirtualServerObject>(VIRTUAL_SERVERS, NS, name), `${NS}/${name}`, type, status, reason);
const poolCond = (name: string, status: string, reason?: string) =>
  waitCond(() => admin.get<WithConditions>(VIP_POOLS, undefined, name), `VIPPool ${name}`, 'Ready', status, reason);

/** The plan published for the VirtualServer's current generation (read as admin, by its uid label). */
async function planOf(vs: VirtualServerObject): Promise<OwnerPlan> {
  return until(async () => {
    const p = await fetchPlan((labelSelector) => admin.list(PLAN_SLICES, { labelSelector }), vs.metadata.uid!);
    return p.owner.generation === vs.metadata.generation ? p : undefined;
  }, `plan of ${vs.metadata.name} generation ${vs.metadata.generation}`);
}
const keysOf = async (vs: VirtualServerObject) => (await planOf(vs)).services.map((s) => s.key);

const vsYaml = (name: string, vip: string, o: { port?: number; statics?: string[] } = {}) => `apiVersion: lvs.dev/v1alpha1
kind: VirtualServer
metadata: {name: ${name}, namespace: ${NS}}
spec:
  addresses: [${vip}]
  ports: [{name: p, port: ${o.port ?? 80}}]
  backends: {static: [${(o.statics ?? ['172.16.0.1']).map((a) => `{address: ${a}}`).join(', ')}]}
`;

const poolYaml = (name: string, addresses: string[], allocation: string, statics: string[] = []) => `apiVersion: lvs.dev/v1alpha1
kind: VIPPool
metadata: {name: ${name}}
spec:
  addresses: [${addresses.map((a) => `'${a}'`).join(', ')}]
  allocation: ${allocation}
  staticRealServers: [${statics.join(', ')}]
`;

/** The tenant creates a VirtualServer that must be refused with `reason`: Ready=False and nothing published for its VIP. */
async function expectRefused(name: string, vip: string, reason: string, message: RegExp, o: { port?: number; extra?: string } = {}): Promise<void> {
  await asTenant(['apply', '-f', '-'], vsYaml(name, vip, o) + (o.extra ?? ''));
  const vs = await vsCond(name, 'Ready', 'False', reason);
  assert.match(condOf(vs, 'Ready')!.message, message, name);
  assert.equal(vs.status!.services, [], `${name}: no service in status`);
  assert.equal(await keysOf(vs), [], `${name}: no service in its PlanSlices`);
}

test.before(async () => {
  try {
    await setup();
  } catch (err) {
    console.error('setup failed:', err); // uvu does not print hook failures
    throw err;
  }
});

async function setup(): Promise<void> {
  // A dual-stack service CIDR (later flags win), so RequireDualStack Services are accepted.
  cp = await startControlPlane({ apiserverArgs: [`--advertise-address=${APISERVER_IP}`, `--service-cluster-ip-range=10.96.0.0/24,${SERVICE_CIDR6}`] });
  await cp.installCrds('crds');
  admin = await apiFor(cp.kubeconfig.path);
  await kubectl(['apply', '-f', 'operator/rbac/clusterrole.yaml', '-f', 'operator/rbac/owned-policy.yaml']);
  await kubectl(['create', 'clusterrolebinding', 'lvs-operator', '--clusterrole=lvs-operator', '--user=lvs-operator']);
  await kubectl(['create', 'namespace', 'lvs-system']);
  await kubectl(['create', 'namespace', NS]);
  await kubectl(['create', 'role', 'tenant', '-n', NS, '--verb=create,get,list,update,patch,delete', '--resource=virtualservers.lvs.dev,services,endpointslices.discovery.k8s.io']);
  await kubectl(['create', 'rolebinding', 'tenant', '-n', NS, '--role=tenant', '--user=tenant']);
  tenant = await cp.userKubeconfig('tenant');
  await kubectl(['apply', '-f', '-'], { stdin: `apiVersion: v1
kind: Node
metadata: {name: node-a}
spec: {podCIDR: ${POD_CIDR}, podCIDRs: [${POD_CIDR}]}
status: {addresses: [{type: InternalIP, address: ${NODE_IP}}]}
` });
  // A cluster DNS Service as an admin would create it (no kube-controller-manager, so no endpoints).
  await kubectl(['apply', '-f', '-'], { stdin: `apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system}
spec: {clusterIP: 10.96.0.10, ports: [{name: dns, port: 53, protocol: UDP}]}
` });
  // A careless pool admitting team-a to the service CIDR, the nodes' network and pod CIDR and the
  // API server's address: reservations must still win. The tenants' pool admits by label.
  await kubectl(['apply', '-f', '-'], { stdin: poolYaml('careless', ['10.96.0.0/24', '192.0.2.0/28', POD_CIDR, APISERVER_IP], `{namespaces: [${NS}]}`, ['172.16.0.0/12']) });
  await kubectl(['apply', '-f', '-'], { stdin: poolYaml('tenants', ['203.0.113.0/24'], '{namespaceSelector: {matchLabels: {lvs.dev/vips: tenants}}}', ['172.16.0.0/12']) });
  await kubectl(['apply', '-f', '-'], { stdin: poolYaml('team-b', ['198.51.100.0/28'], '{namespaces: [team-b]}', ['172.16.0.0/12']) });
  controller = new Controller({
    api: await apiFor((await cp.userKubeconfig('lvs-operator')).path), identity: 'pools-0',
    leaderElection: { namespace: 'lvs-system', name: 'lvs-operator', leaseDurationMs: 4000, renewDeadlineMs: 3000, retryPeriodMs: 500 },
    logger: pino({ level: process.env.LVS_TEST_LOG ?? 'silent' }), http: { port: 0, host: '127.0.0.1' },
  });
  await controller.start();
  for (const p of ['careless', 'tenants', 'team-b']) await poolCond(p, 'True', 'Valid');
}

test.after(async () => {
  await controller?.stop().catch(() => {});
  await cp?.stop();
});

test('the tenant can neither write a VIPPool nor VirtualServer status (can-i and a real attempt: Forbidden)', async () => {
  const can = async (...args: string[]) => (await P().kubectl(['auth', 'can-i', ...args], { kubeconfig: tenant })).stdout.trim();
  assert.is(await can('create', 'virtualservers.lvs.dev', '-n', NS), 'yes');
  assert.is(await can('create', 'virtualservers.lvs.dev', '-n', 'default'), 'no');
  for (const verb of ['create', 'update', 'patch', 'delete']) assert.is(await can(verb, 'vippools.lvs.dev'), 'no', `${verb} vippools`);
  for (const verb of ['update', 'patch']) assert.is(await can(verb, 'virtualservers.lvs.dev', '--subresource=status', '-n', NS), 'no', `${verb} status`);
  assert.match(await refused(['apply', '-f', '-'], { as: tenant, stdin: poolYaml('mine', ['203.0.113.0/24'], `{namespaces: [${NS}]}`) }), /Forbidden/);
  assert.match(await refused(['patch', 'vippool', 'careless', '--type=merge', '-p', '{"spec":{"allocation":{"namespaces":["team-a","team-b"]}}}'], { as: tenant }), /Forbidden/);
  await asTenant(['apply', '-f', '-'], vsYaml('forger', '203.0.113.200'));
  const forged = JSON.stringify({ status: { claims: [{ service: 'TCP/203.0.113.40:80', since: '2000-01-01T00:00:00Z' }] } });
  assert.match(await refused(['patch', 'vs', 'forger', '-n', NS, '--subresource=status', '--type=merge', '-p', forged], { as: tenant }), /Forbidden/);
  assert.match(await refused(['replace', '-f', '-'], { as: tenant, stdin: poolYaml('careless', ['0.0.0.0/0'], `{namespaces: [${NS}]}`) }), /Forbidden/);
});

test('reserved addresses are refused even inside a pool admitting team-a: node, pod CIDR, Services, service CIDR, API server', async () => {
  const kubernetesIP = (await kubectl(['get', 'svc', 'kubernetes', '-n', 'default', '-o', 'jsonpath={.spec.clusterIP}'])).trim();
  assert.is(kubernetesIP, '10.96.0.1');
  assert.is((await kubectl(['get', 'servicecidr', 'kubernetes', '-o', 'jsonpath={.spec.cidrs}'])).trim(), `["10.96.0.0/24","${SERVICE_CIDR6}"]`);
  const apiserverEps = (await kubectl(['get', 'endpointslices', '-n', 'default', '-l', 'kubernetes.io/service-name=kubernetes', '-o', 'jsonpath={.items[*].endpoints[*].addresses[*]}'])).trim();
  assert.is(apiserverEps, APISERVER_IP);
  await expectRefused('on-node', NODE_IP, 'AddressReserved', /192\.0\.2\.1 is reserved: it is the InternalIP of node node-a/);
  await expectRefused('on-pods', '10.244.1.7', 'AddressReserved', /in pod CIDR 10\.244\.1\.0\/24 of node node-a/);
  await expectRefused('on-kubernetes', kubernetesIP, 'AddressReserved', /cluster IP of Service default\/kubernetes/, { port: 443 });
  await expectRefused('on-dns', '10.96.0.10', 'AddressReserved', /cluster IP of Service kube-system\/kube-dns/, { port: 80 });
  await expectRefused('in-service-cidr', '10.96.0.200', 'AddressReserved', /service CIDR 10\.96\.0\.0\/24 \(ServiceCIDR kubernetes\)/);
  await expectRefused('on-apiserver', APISERVER_IP, 'AddressReserved', /an address of the Kubernetes API server/, { port: 443 });
  // The same pool grants its other addresses: only the reservations refused the ones above.
  await asTenant(['apply', '-f', '-'], vsYaml('careless-ok', '192.0.2.9'));
  assert.equal(await keysOf(await vsCond('careless-ok', 'Ready', 'True')), ['TCP/192.0.2.9:80']);
});

test('deny by default: a VIP in no pool or in another namespace\'s pool is AddressNotAllowed; labelling team-a for the selector grants it', async () => {
  await expectRefused('nowhere', '192.0.2.200', 'AddressNotAllowed', /192\.0\.2\.200 is in no VIPPool/);
  await expectRefused('team-b-vip', '198.51.100.5', 'AddressNotAllowed', /VIPPool team-b does not admit namespace team-a/);
  await expectRefused('selected', '203.0.113.10', 'AddressNotAllowed', /VIPPool tenants does not admit namespace team-a/);
  await kubectl(['label', 'namespace', NS, 'lvs.dev/vips=tenants']);
  const vs = await vsCond('selected', 'Ready', 'True');
  assert.equal(await keysOf(vs), ['TCP/203.0.113.10:80']);
  assert.equal(vs.status!.services, ['TCP/203.0.113.10:80']);
});

test('a static real server outside the pool\'s staticRealServers (8.8.8.8) is RealServerNotAllowed and not published', async () => {
  await asTenant(['apply', '-f', '-'], vsYaml('exfil', '203.0.113.11', { statics: ['172.16.0.5', '8.8.8.8'] }));
  const vs = await vsCond('exfil', 'Ready', 'False', 'RealServerNotAllowed');
  assert.match(condOf(vs, 'Ready')!.message, /spec\.backends\.static\[1\]\.address: 8\.8\.8\.8 is not in VIPPool tenants's staticRealServers/);
  assert.is(condOf(vs, 'BackendsResolved')?.reason, 'RealServerNotAllowed');
  const plan = await planOf(vs);
  assert.equal(plan.services.map((s) => s.key), ['TCP/203.0.113.11:80']);
  assert.equal(planRealServers(plan).map((r) => r.address), ['172.16.0.5']);
});

const HELD = 'TCP/203.0.113.40:80';
const claimsOf = (vs: VirtualServerObject) => (vs.status as { claims?: Array<{ service: string; since: string }> } | undefined)?.claims ?? [];

test('the holder keeps its (VIP, protocol, port): an older VirtualServer edited to claim it, and a new one, get Conflict naming the holder', async () => {
  await asTenant(['apply', '-f', '-'], vsYaml('old', '203.0.113.41'));
  await vsCond('old', 'Ready', 'True');
  // creationTimestamp has second precision: old must be strictly older (else "holder" < "old" by name would win anyway).
  await new Promise((r) => setTimeout(r, 1100));
  await asTenant(['apply', '-f', '-'], vsYaml('holder', '203.0.113.40'));
  let holder = await until(async () => {
    const v = await admin.get<VirtualServerObject>(VIRTUAL_SERVERS, NS, 'holder');
    return claimsOf(v).some((c) => c.service === HELD) && condOf(v, 'Ready')?.status === 'True' ? v : undefined;
  }, 'holder lists its claim');
  const since = claimsOf(holder).find((c) => c.service === HELD)!.since;
  assert.match(since, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/, 'RFC 3339');
  assert.ok(Math.abs(Date.parse(since) - Date.now()) < 120_000, since);
  const old = await admin.get<VirtualServerObject>(VIRTUAL_SERVERS, NS, 'old');
  assert.ok(Date.parse(old.metadata.creationTimestamp!) < Date.parse(holder.metadata.creationTimestamp!), 'old is the older object');

  const claimedBy = new RegExp(`${HELD.replace(/[./]/g, '\\$&')} is already claimed by VirtualServer team-a/holder \\(it holds it since ${since} and the holder keeps it\\)`);
  await asTenant(['patch', 'vs', 'old', '-n', NS, '--type=merge', '-p', '{"spec":{"addresses":["203.0.113.40"]}}']);
  const lost = await vsCond('old', 'Conflict', 'True', 'AddressInUse');
  assert.match(condOf(lost, 'Conflict')!.message, claimedBy);
  assert.equal(await keysOf(lost), [], 'the older claimant publishes nothing');
  // A claim written into the object at creation is dropped by the API server (status subresource).
  await expectRefused('newcomer', '203.0.113.40', 'Conflict', claimedBy, { extra: `status: {claims: [{service: '${HELD}', since: '2000-01-01T00:00:00Z'}]}\n` });

  holder = await vsCond('holder', 'Ready', 'True');
  assert.is(condOf(holder, 'Conflict')?.status, 'False');
  assert.equal(await keysOf(holder), [HELD], 'the holder still publishes it');
  // An unrelated spec edit (a second static real server) keeps the claim's time.
  await new Promise((r) => setTimeout(r, 1100));
  await asTenant(['apply', '-f', '-'], vsYaml('holder', '203.0.113.40', { statics: ['172.16.0.1', '172.16.0.2'] }));
  holder = await until(async () => {
    const v = await admin.get<VirtualServerObject>(VIRTUAL_SERVERS, NS, 'holder');
    return v.metadata.generation === 2 && v.status?.observedGeneration === 2 ? v : undefined;
  }, 'holder generation 2 observed');
  assert.equal(claimsOf(holder), [{ service: HELD, since }]);
  assert.equal(planRealServers(await planOf(holder)).map((r) => r.address), ['172.16.0.1', '172.16.0.2']);
  assert.is(condOf(await vsCond('old', 'Conflict', 'True'), 'Conflict')?.reason, 'AddressInUse');
});

test('VIPPool status: an overlapping newer pool and a reversed range are Ready=False naming the field; CEL rejects the rest at admission', async () => {
  await kubectl(['apply', '-f', '-'], { stdin: poolYaml('newer', ['192.0.2.64/26', '203.0.113.128/25'], `{namespaces: [${NS}]}`) });
  const overlap = await poolCond('newer', 'False', 'Overlap');
  assert.match(condOf(overlap, 'Ready')!.message, /^spec\.addresses\[1\]: 203\.0\.113\.128\/25 overlaps 203\.0\.113\.0\/24 of VIPPool tenants \(spec\.addresses\[0\]\)/);
  await poolCond('tenants', 'True', 'Valid');
  // The newer pool grants nothing, not even its addresses that overlap no one.
  await expectRefused('in-newer', '192.0.2.70', 'AddressNotAllowed', /192\.0\.2\.70 is in no VIPPool/);
  await kubectl(['apply', '-f', '-'], { stdin: poolYaml('reversed', ['192.0.2.128/28', '198.51.100.20-198.51.100.16'], `{namespaces: [${NS}]}`) });
  assert.match(condOf(await poolCond('reversed', 'False', 'InvalidAddress'), 'Ready')!.message, /^spec\.addresses\[1\]: /);
  for (const bad of ['203.0.113.1/24', '10.0.0.0/33', '127.0.0.0/8', '224.0.0.1', '10.0.0.1-2001:db8::1']) {
    const err = await refused(['create', '-f', '-'], { stdin: poolYaml('bad', [bad], `{namespaces: [${NS}]}`) });
    assert.match(err, /The VIPPool "bad" is invalid: spec\.addresses\[0\]/, bad);
  }
  // spec.announce: defaulted to l2; exactly one of l2 and none; device names checked.
  assert.is((await kubectl(['get', 'vippool', 'tenants', '-o', 'jsonpath={.spec.announce}'])).trim(), '{"l2":{}}');
  const announce = (a: string) => poolYaml('bad', ['192.0.2.192/28'], `{namespaces: [${NS}]}`) + `  announce: ${a}\n`;
  assert.match(await refused(['create', '-f', '-'], { stdin: announce('{l2: {}, none: {}}') }), /spec\.announce: Invalid value: "object": set exactly one of l2 and none/);
  assert.match(await refused(['create', '-f', '-'], { stdin: announce('{l2: {interfaces: [a/b]}}') }), /spec\.announce\.l2\.interfaces\[0\]/);
  assert.match(await refused(['get', 'vippool', 'bad']), /NotFound/);
});

test('LoadBalancer Services of team-a get addresses from an autoAssign pool (ingress ipMode Proxy, an owned VirtualServer); exhaustion is reported; delete releases', async () => {
  await kubectl(['apply', '-f', '-'], { stdin: poolYaml('lb', ['192.0.2.40-192.0.2.41'], `{namespaces: [${NS}], autoAssign: true}`) });
  const svcYaml = (name: string) => `apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: ${NS}}
spec: {type: LoadBalancer, loadBalancerClass: lvs.dev/ipvs, ports: [{name: http, port: 80, targetPort: 8080}], selector: {app: ${name}}}
`;
  type Svc = KubeObject & { status?: { loadBalancer?: { ingress?: Array<{ ip: string; ipMode?: string }> }; conditions?: Condition[] } };
  const svc = (name: string) => admin.get<Svc>(SERVICES, NS, name);
  const ingress = (name: string) => until(async () => (await svc(name)).status?.loadBalancer?.ingress, `ingress of ${name}`);
  await asTenant(['apply', '-f', '-'], `${svcYaml('web')}---\n${svcYaml('api')}`);
  const got = [...(await ingress('web')), ...(await ingress('api'))];
  assert.equal(got.map((i) => i.ipMode), ['Proxy', 'Proxy'], 'ipMode Proxy: kube-proxy leaves the address to IPVS');
  assert.equal(got.map((i) => i.ip).sort(), ['192.0.2.40', '192.0.2.41'], 'two Services, two addresses of the pool');
  const owned = await admin.get<VirtualServerObject>(VIRTUAL_SERVERS, NS, 'lb-web');
  const web = await svc('web');
  assert.is(owned.metadata.labels?.['lvs.dev/load-balancer-service'], 'web');
  assert.equal((owned.metadata as { ownerReferences?: Array<{ kind: string; uid: string }> }).ownerReferences?.map((o) => `${o.kind}/${o.uid}`), [`Service/${web.metadata.uid}`]);
  assert.equal(owned.status?.services, [`TCP/${web.status!.loadBalancer!.ingress![0]!.ip}:80`]);
  // The pool is exhausted: the third Service is told so, in a condition and an Event.
  await asTenant(['apply', '-f', '-'], svcYaml('more'));
  const more = await until(async () => {
    const o = await svc('more');
    return o.status?.conditions?.find((c) => c.type === 'lvs.dev/AddressAllocated' && c.status === 'False') ? o : undefined;
  }, 'AllocationFailed on more');
  assert.match(more.status!.conditions!.find((c) => c.type === 'lvs.dev/AddressAllocated')!.message, /have no free IPv4 address/);
  assert.match(await kubectl(['get', 'events.events.k8s.io', '-n', NS, '--field-selector', 'regarding.name=more', '-o', 'jsonpath={.items[*].reason}']), /AllocationFailed/);
  // Deleting web releases its address to more; its owned VirtualServer goes with it.
  const freed = web.status!.loadBalancer!.ingress![0]!.ip;
  await asTenant(['delete', 'service', 'web', '-n', NS]);
  await until(async () => (await admin.list(VIRTUAL_SERVERS)).items.every((o) => o.metadata.name !== 'lb-web') || undefined, 'lb-web deleted');
  assert.equal(await until(async () => ((await svc('more')).status?.loadBalancer?.ingress ?? []).length > 0 && (await svc('more')).status!.loadBalancer!.ingress, 'more gets an address'), [{ ip: freed, ipMode: 'Proxy' }]);
  await asTenant(['delete', 'service', 'api', 'more', '-n', NS]);
  await kubectl(['delete', 'vippool', 'lb']);
});

test('a RequireDualStack LoadBalancer Service gets one address per family from a dual-stack pool; turned SingleStack it keeps its IPv4 address', async () => {
  await kubectl(['apply', '-f', '-'], { stdin: poolYaml('lb-dual', ['192.0.2.42/32', '2001:db8:42::1-2001:db8:42::2'], `{namespaces: [${NS}], autoAssign: true}`) });
  await asTenant(['apply', '-f', '-'], `apiVersion: v1
kind: Service
metadata: {name: dual, namespace: ${NS}}
spec: {type: LoadBalancer, loadBalancerClass: lvs.dev/ipvs, ipFamilyPolicy: RequireDualStack, ports: [{name: http, port: 80, targetPort: 8080}], selector: {app: dual}}
`);
  type Svc = KubeObject & { spec?: { ipFamilies?: string[] }; status?: { loadBalancer?: { ingress?: Array<{ ip: string; ipMode?: string }> } } };
  const svc = () => admin.get<Svc>(SERVICES, NS, 'dual');
  assert.equal((await svc()).spec?.ipFamilies, ['IPv4', 'IPv6'], 'the API server made it dual-stack');
  const both = await until(async () => { const i = (await svc()).status?.loadBalancer?.ingress; return i?.length === 2 ? i : undefined; }, 'two ingress addresses');
  assert.equal(both, [{ ip: '192.0.2.42', ipMode: 'Proxy' }, { ip: '2001:db8:42::1', ipMode: 'Proxy' }]);
  const owned = await admin.get<VirtualServerObject>(VIRTUAL_SERVERS, NS, 'lb-dual');
  assert.equal(owned.spec?.addresses, ['192.0.2.42', '2001:db8:42::1']);
  assert.equal(owned.status?.services, ['TCP/192.0.2.42:80', 'TCP/[2001:db8:42::1]:80']);
  await asTenant(['patch', 'service', 'dual', '-n', NS, '--type=merge', '-p', '{"spec":{"ipFamilyPolicy":"SingleStack","ipFamilies":["IPv4"]}}']);
  const single = await until(async () => { const i = (await svc()).status?.loadBalancer?.ingress; return i?.length === 1 ? i : undefined; }, 'IPv6 address released');
  assert.equal(single, [{ ip: '192.0.2.42', ipMode: 'Proxy' }]);
  await asTenant(['delete', 'service', 'dual', '-n', NS]);
  await until(async () => (await admin.list(VIRTUAL_SERVERS)).items.every((o) => o.metadata.name !== 'lb-dual') || undefined, 'lb-dual deleted');
  await kubectl(['delete', 'vippool', 'lb-dual']);
});

test('deleting the pool withdraws its VIPs: AddressNotAllowed and an empty plan', async () => {
  const before = await vsCond('selected', 'Ready', 'True');
  assert.equal(await keysOf(before), ['TCP/203.0.113.10:80']);
  await kubectl(['delete', 'vippool', 'tenants']);
  for (const name of ['selected', 'holder']) {
    const vs = await vsCond(name, 'Ready', 'False', 'AddressNotAllowed');
    assert.match(condOf(vs, 'Ready')!.message, /is in no VIPPool/);
    assert.equal(vs.status!.services, [], name);
    assert.equal(await keysOf(vs), [], `${name}: plan withdrawn`);
  }
});

test.run();
