// Director election in cluster mode, on real parts: kube-apiserver + etcd and the controller on
// this host; in a qemu VM with Debian's kernel, two directors (network namespaces d1, d2), each
// running `lvs-agent run` as its own node (lvs-node-1, lvs-node-2, each with a token bound to a
// pod on its node) with --peer-key-file: the agents find each other through their AgentReports
// and elect one announcer for the VIP. Failovers by link down, agent SIGKILL, and link down while
// the apiserver is down (test/ha/guest/cluster-election.guest.ts).
import { apiserverPrereqs } from '../../lab/apiserver/harness.ts';
import { addAgentNode, GUEST_API_PORT, GUEST_CONTROL_PORT, startHostCluster, type HostCluster } from '../../lab/apiserver/host-cluster.ts';
import { kernelPrereqs } from '../../lab/vm/vm.ts';
import { binaryPath } from '../../scripts/build-apiserver.ts';
import { runGuestSuite } from '../kernel/harness/suite.ts';
import { startApiserverControl, type ApiserverControl } from '../system/lib/apiserver-control.ts';
import { suite } from 'uvu';
import { gated } from '../lib/prereq.ts';

const log = (m: string) => console.log(`# ${m}`);
const SECOND_NODE = { name: 'lvs-node-2', ip: '10.0.2.16' };
/** The VIP and its services, in namespace default, directed by both nodes (both carry lvs.dev/director=true). */
const OBJECTS = `apiVersion: lvs.dev/v1alpha1
kind: VIPPool
metadata: {name: ha}
spec:
  addresses: [192.0.2.100/32]
  allocation: {namespaces: [default]}
  forwarding: [DR, TUN]
  staticRealServers: [192.0.2.0/24]
---
apiVersion: lvs.dev/v1alpha1
kind: VirtualServer
metadata: {name: el-dr, namespace: default}
spec:
  addresses: [192.0.2.100]
  ports: [{name: stream, port: 8080, protocol: TCP}]
  forwarding: DR
  scheduler: {name: rr}
  backends: {static: [{address: 192.0.2.21}, {address: 192.0.2.22}]}
---
apiVersion: lvs.dev/v1alpha1
kind: VirtualServer
metadata: {name: el-tun, namespace: default}
spec:
  addresses: [192.0.2.100]
  ports: [{name: stream, port: 8081, protocol: TCP}]
  forwarding: TUN
  scheduler: {name: rr}
  backends: {static: [{address: 192.0.2.21}, {address: 192.0.2.22}]}
`;

const missing = kernelPrereqs() ?? apiserverPrereqs();
if (missing) {
  const test = suite('ha: cluster-mode election');
  gated(test, missing)('runs test/ha/guest/cluster-election.guest.ts in a VM', () => {});
  test.run();
} else {
  let hc: HostCluster | undefined;
  let ctl: ApiserverControl | undefined;
  try {
    hc = await startHostCluster(log);
    const agent2 = await addAgentNode(hc.cp, SECOND_NODE.name, SECOND_NODE.ip);
    const applied = await hc.cp.kubectl(['apply', '-f', '-'], { stdin: OBJECTS });
    if (applied.code !== 0) throw new Error(`kubectl apply: ${applied.stderr}`);
    ctl = await startApiserverControl(hc.cp, { log });
    const api = Number(new URL(hc.cp.url).port);
    await runGuestSuite(import.meta.url, 'test/ha/guest/cluster-election.guest.ts', {
      timeoutMs: 1_800_000,
      memoryMb: 2048,
      guestfwd: [{ guestPort: GUEST_API_PORT, hostPort: api }, { guestPort: GUEST_CONTROL_PORT, hostPort: ctl.port }],
      env: {
        NODE_COMPILE_CACHE: '/run/node-compile-cache',
        LVS_HA_ADMIN_KUBECONFIG: hc.guest.admin, LVS_HA_KUBECTL: binaryPath('kubectl'),
        LVS_HA_AGENT1_KUBECONFIG: hc.guest.agent, LVS_HA_AGENT2_KUBECONFIG: agent2,
        LVS_HA_CONTROL_URL: `http://10.0.2.100:${GUEST_CONTROL_PORT}`,
        ...(process.env.LVS_HA_CYCLES ? { LVS_HA_CYCLES: process.env.LVS_HA_CYCLES } : {}),
      },
    });
    log(`apiserver outages served: ${ctl.state().outages}`);
    if (hc.controller.child.exitCode !== null) { console.log(`# the controller died: ${hc.controller.stderr()}`); process.exitCode = 1; }
  } finally {
    await ctl?.close();
    await hc?.stop();
  }
}
