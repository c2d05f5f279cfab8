// npm run demo: the whole chain on real parts. On this host: kube-apiserver + etcd and the
// controller (operator/main.ts, as its least-privilege user); `kubectl apply` of examples/. In a
// qemu VM booting Debian's kernel (the host kernel has no IPVS): namespaces as client, director,
// router and real servers, and `lvs-agent run` on the director reaching the apiserver through
// qemu's guestfwd (demo/guest.ts). It prints how each hop rewrote the packets of one connection
// per forwarding method and how connections were spread, then shuts everything down; exit 0
// when it all worked.
import { execFileSync } from 'node:child_process';
import { binaryPath } from '../scripts/build-apiserver.ts';
import { apiserverPrereqs } from '../lab/apiserver/harness.ts';
import { kernelPrereqs, runInVm, type VmResult } from '../lab/vm/vm.ts';
import { GUEST_API_PORT, NODE_NAME, startHostCluster, type HostCluster } from '../lab/apiserver/host-cluster.ts';

const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0)}s`;
const step = (m: string) => console.log(`[${elapsed()}] ${m}`);
const EXAMPLES = ['examples/nat-seeds.yaml', 'examples/dr.yaml', 'examples/tun.yaml'];

function prerequisites(): void {
  step('provisioning: Debian packages (qemu, ipvsadm, tcpdump, ...) and Debian\'s kernel');
  execFileSync('bash', ['scripts/provision.sh'], { stdio: 'inherit' });
  const kernel = kernelPrereqs();
  if (kernel) throw new Error(`cannot boot the kernel here: ${kernel}`);
  step('kube-apiserver, etcd and kubectl (built from their Go modules on first use, then cached in ~/.cache/lvs-operator)');
  const api = apiserverPrereqs();
  if (api) throw new Error(`no control plane: ${api}`);
}

async function applyExamples(hc: HostCluster): Promise<void> {
  step(`kubectl apply ${EXAMPLES.map((e) => `-f ${e}`).join(' ')}`);
  const r = await hc.cp.kubectl(['apply', ...EXAMPLES.flatMap((e) => ['-f', e])]);
  if (r.code !== 0) throw new Error(`kubectl apply failed: ${r.stderr}`);
  console.log(r.stdout.trim().replace(/^/gm, '  '));
}

async function boot(hc: HostCluster): Promise<VmResult> {
  step('booting Debian\'s kernel under qemu (TCG emulation: expect a few minutes in all)');
  let inDemo = false;
  return runInVm({
    command: 'node_modules/.bin/node demo/guest.ts',
    timeoutMs: 1_800_000,
    memoryMb: 1536,
    echo: false,
    label: 'demo',
    guestfwd: [{ guestPort: GUEST_API_PORT, hostPort: Number(new URL(hc.cp.url).port) }],
    env: { DEMO_ADMIN_KUBECONFIG: hc.guest.admin, DEMO_AGENT_KUBECONFIG: hc.guest.agent, DEMO_NODE: NODE_NAME, DEMO_KUBECTL: binaryPath('kubectl') },
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
    const result = await boot(hc);
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
