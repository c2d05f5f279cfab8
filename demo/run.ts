// npm run demo: the whole chain on real parts. On this host: kube-apiserver + etcd and the
// controller (operator/main.ts, as its least-privilege user); `kubectl apply` of examples/. In a
// qemu VM booting Debian's kernel (the host kernel has no IPVS): namespaces as client, director,
// router and real servers, and `lvs-agent run` on the director reaching the apiserver through
// qemu's guestfwd (demo/guest.ts). It prints how each hop rewrote the packets of one connection
// per forwarding method, how connections were spread, and a weight change reaching the kernel;
// last, one director failover between two standalone `lvs-agent apply --watch --peer` directors
// (demo/failover.ts: the active one's link goes down, the client's streams go on, the measured
// gap is printed). Then it shuts everything down; exit 0 when it all worked.
import { execFileSync } from 'node:child_process';
import { binaryPath } from '../scripts/build-apiserver.ts';
import { apiserverPrereqs } from '../lab/apiserver/harness.ts';
import { kernelPrereqs, runInVm, type VmResult } from '../lab/vm/vm.ts';
import { GUEST_API_PORT, NODE_NAME, startHostCluster, type HostCluster } from '../lab/apiserver/host-cluster.ts';

const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0)}s`;
const step = (m: string) => console.log(`[${elapsed()}] ${m}`);
const EXAMPLES = ['examples/nat-seeds.yaml', 'examples/dr.yaml', 'examples/tun.yaml'];
const POOL = 'examples/cluster/pool.yaml';
const LB_SERVICE = 'examples/cluster/loadbalancer-service.yaml';
/**
 * The demo has no kube-controller-manager: the EndpointSlice its EndpointSlice controller would
 * write for web-lb is written here, with the NAT real server 172.16.0.2:80 (a host, not a pod, so
 * the pool's staticRealServers must admit it, and examples/cluster/pool.yaml does).
 */
const LB_SLICE = `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-lb-demo, namespace: default, labels: {kubernetes.io/service-name: web-lb}}
addressType: IPv4
ports: [{name: http, port: 80, protocol: TCP}]
endpoints: [{addresses: [172.16.0.2], conditions: {ready: true}}]
`;

/** A LoadBalancer Service: the controller allocates its address from the pool; returns it. */
async function loadBalancer(hc: HostCluster): Promise<string> {
  step(`kubectl apply -f ${LB_SERVICE} (type LoadBalancer, loadBalancerClass lvs.dev/ipvs), and its EndpointSlice`);
  console.log((await kubectlOk(hc, ['apply', '-f', LB_SERVICE])).replace(/^/gm, '  '));
  await kubectlOk(hc, ['apply', '-f', '-'], LB_SLICE);
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ip = await kubectlOk(hc, ['get', 'svc', 'web-lb', '-n', 'default', '-o', 'jsonpath={.status.loadBalancer.ingress[0].ip}']);
    if (ip) {
      console.log((await kubectlOk(hc, ['get', 'svc', 'web-lb', '-n', 'default'])).replace(/^/gm, '  '));
      const mode = await kubectlOk(hc, ['get', 'svc', 'web-lb', '-n', 'default', '-o', 'jsonpath={.status.loadBalancer.ingress[0].ipMode}']);
      console.log(`  EXTERNAL-IP ${ip} allocated from VIPPool examples (ipMode ${mode}), served by VirtualServer lb-web-lb that the controller owns`);
      return ip;
    }
    if (Date.now() > deadline) throw new Error('web-lb got no address in 30 s');
    await new Promise((r) => setTimeout(r, 300));
  }
}

function prerequisites(): void {
  step('provisioning: Debian packages (qemu, ipvsadm, tcpdump, ...) and Debian\'s kernel');
  execFileSync('bash', ['scripts/provision.sh'], { stdio: 'inherit' });
  const kernel = kernelPrereqs();
  if (kernel) throw new Error(`cannot boot the kernel here: ${kernel}`);
  step('kube-apiserver, etcd and kubectl (built from their Go modules on first use, then cached in ~/.cache/lvs-operator)');
  const api = apiserverPrereqs();
  if (api) throw new Error(`no control plane: ${api}`);
}

async function kubectlOk(hc: HostCluster, args: string[], stdin?: string): Promise<string> {
  const r = await hc.cp.kubectl(args, stdin === undefined ? {} : { stdin });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout.trim();
}

async function applyExamples(hc: HostCluster): Promise<void> {
  step(`as the cluster admin: kubectl apply -f ${POOL} (the addresses namespace default may use)`);
  console.log((await kubectlOk(hc, ['apply', '-f', POOL])).replace(/^/gm, '  '));
  step(`kubectl apply ${EXAMPLES.map((e) => `-f ${e}`).join(' ')}`);
  console.log((await kubectlOk(hc, ['apply', ...EXAMPLES.flatMap((e) => ['-f', e])])).replace(/^/gm, '  '));
}

/** Two VirtualServers the controller must refuse: an address no pool grants, and the node's own. */
async function showRefusals(hc: HostCluster): Promise<void> {
  step('two VirtualServers nobody granted: 198.51.100.99 (outside the pool) and 10.0.2.15 (the node\'s own InternalIP)');
  const vs = (name: string, vip: string) => `apiVersion: lvs.dev/v1alpha1
kind: VirtualServer
metadata: {name: ${name}, namespace: default}
spec:
  addresses: [${vip}]
  ports: [{name: http, port: 80}]
  backends: {static: [{address: 172.16.0.2}]}
`;
  await kubectlOk(hc, ['apply', '-f', '-'], vs('not-granted', '198.51.100.99') + '---\n' + vs('node-address', '10.0.2.15'));
  const reasons = new Set(['AddressNotAllowed', 'AddressReserved']);
  const jsonpath = '{range .items[*]}{.metadata.name}{"\\t"}{.status.conditions[?(@.type=="Ready")].reason}{"\\t"}{.status.conditions[?(@.type=="Ready")].message}{"\\n"}{end}';
  const deadline = Date.now() + 30_000;
  let lines: string[] = [];
  for (;;) {
    const out = await kubectlOk(hc, ['get', 'vs', '-n', 'default', 'not-granted', 'node-address', '-o', `jsonpath=${jsonpath}`]);
    lines = out.split('\n').filter(Boolean);
    if (lines.length === 2 && lines.every((l) => reasons.has(l.split('\t')[1] ?? ''))) break;
    if (Date.now() > deadline) throw new Error(`the controller did not refuse them in 30 s:\n${out}`);
    await new Promise((r) => setTimeout(r, 300));
  }
  for (const l of lines) {
    const [name, reason, message] = l.split('\t');
    console.log(`  ${name}: Ready=False ${reason}: ${message}`);
  }
  const slices = await kubectlOk(hc, ['get', 'planslices', '-o', 'jsonpath={range .items[*]}{.owner.name}={.services}{"\\n"}{end}']);
  const theirs = slices.split('\n').filter((l) => /^(not-granted|node-address)=/.test(l));
  if (theirs.some((l) => !/=(\[\])?$/.test(l))) throw new Error(`a refused VirtualServer has a plan with services:\n${theirs.join('\n')}`);
  console.log(`  their published plans hold no service (${theirs.length} PlanSlice(s), empty): no node programs either address`);
  await kubectlOk(hc, ['delete', 'vs', '-n', 'default', 'not-granted', 'node-address']);
}

async function boot(hc: HostCluster, lbAddress: string): Promise<VmResult> {
  step('booting Debian\'s kernel under qemu (TCG emulation: expect a few minutes in all)');
  let inDemo = false;
  return runInVm({
    command: 'node_modules/.bin/node demo/guest.ts',
    timeoutMs: 1_800_000,
    memoryMb: 1536,
    echo: false,
    label: 'demo',
    guestfwd: [{ guestPort: GUEST_API_PORT, hostPort: Number(new URL(hc.cp.url).port) }],
    env: { DEMO_ADMIN_KUBECONFIG: hc.guest.admin, DEMO_AGENT_KUBECONFIG: hc.guest.agent, DEMO_NODE: NODE_NAME, DEMO_KUBECTL: binaryPath('kubectl'), DEMO_LB_ADDRESS: lbAddress },
    onOutput: (line) => {
      if (!inDemo) {
        if (line.includes('LVS-VM-START')) { inDemo = true; step('kernel up; running the demo inside it\n'); }
        return;
      }
      if (!line.startsWith('LVS-VM-')) console.log(line);
    },
  });
}

async function main(): Promise<number> {
  console.log('lvs-operator demo: IPVS NAT, DR and TUN on a real Linux kernel, driven through a real apiserver\n');
  prerequisites();
  step('starting kube-apiserver + etcd, the VirtualServer CRD, RBAC and the controller (leader election on)');
  const hc = await startHostCluster(() => {});
  try {
    step(`control plane at ${hc.cp.url}, controller is leader; Node ${NODE_NAME} registered`);
    await applyExamples(hc);
    await showRefusals(hc);
    const lbAddress = await loadBalancer(hc);
    const result = await boot(hc, lbAddress);
    step(`VM: boot ${(result.bootMs / 1000).toFixed(1)} s, total ${(result.totalMs / 1000).toFixed(1)} s, exit ${result.exitCode}${result.timedOut ? ' (timed out)' : ''}`);
    if (result.exitCode !== 0) {
      console.log(result.kernelLog.split('\n').slice(-40).join('\n'));
      console.log(`controller log (last lines):\n${hc.controller.logs.slice(-10).map((l) => JSON.stringify(l)).join('\n')}`);
      return 1;
    }
    return 0;
  } finally {
    step('stopping the controller, kube-apiserver and etcd');
    await hc.stop();
  }
}

try {
  process.exitCode = await main();
} catch (err) {
  console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
}
