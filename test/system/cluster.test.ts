// System tier: real kube-apiserver + etcd and the real controller (operator/main.ts, leader
// election on, as its least-privilege user) on this host; the real lvs-agent (`lvs-agent run`)
// inside a qemu VM running Debian's kernel, reaching the apiserver through qemu's guestfwd with
// TLS verified. One VM boot runs test/system/guest/cluster.guest.ts, whose uvu summary reaches
// test/run.ts through the relayed console. The guest can stop and restart the apiserver through a
// small control server on this host (the "apiserver unavailable" scenario).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { apiserverPrereqs } from '../../lab/apiserver/harness.ts';
import { kernelPrereqs, runInVm, type VmResult } from '../../lab/vm/vm.ts';
import { binaryPath } from '../../scripts/build-apiserver.ts';
import { KUBE_PROXY_BINARY_ENV, KUBE_PROXY_MODULES } from '../../lab/guest/kube-proxy.ts';
import { gated } from '../lib/prereq.ts';
import { startApiserverControl, type ApiserverControl } from './lib/apiserver-control.ts';
import { GUEST_API_PORT, GUEST_CONTROL_PORT, NODE_IP, NODE_NAME, startHostCluster, type HostCluster } from '../../lab/apiserver/host-cluster.ts';

const GUEST_SUITE = 'test/system/guest/cluster.guest.ts';
const test = gated(suite('system: host (control plane, controller, VM)'), kernelPrereqs() ?? apiserverPrereqs());
const started = Date.now();
let hc: HostCluster | undefined;
let ctl: ApiserverControl | undefined;
let vm: VmResult | undefined;

const log = (m: string) => console.log(`# ${m}`);
const H = () => { if (!hc) throw new Error('host cluster did not start'); return hc; };

test.before(async () => {
  try {
    hc = await startHostCluster(log);
    log(`host cluster up: ${JSON.stringify(hc.timings)}`);
    ctl = await startApiserverControl(hc.cp, { log });
  } catch (err) {
    console.error('host setup failed:', err);
    throw err;
  }
});

test.after(async () => {
  await ctl?.close();
  const code = await hc?.controller.stop();
  if (code !== undefined && code !== 0) console.log(`# controller exited ${code}: ${hc?.controller.stderr()}`);
  await hc?.cp.stop();
  log(`system tier total ${Date.now() - started} ms${vm ? ` (VM boot ${vm.bootMs} ms, VM total ${vm.totalMs} ms)` : ''}`);
});

test('the agent (a pod-bound service-account token) reads plans and writes reports, nothing more', async () => {
  const can = async (...args: string[]) => (await H().cp.kubectl(['auth', 'can-i', ...args], { kubeconfig: H().agentHost })).stdout.trim();
  assert.is(await can('watch', 'planslices.lvs.dev'), 'yes');
  assert.is(await can('create', 'agentreports.lvs.dev'), 'yes');
  assert.is(await can('create', 'planslices.lvs.dev'), 'no', 'plans are the controller\'s');
  assert.is(await can('watch', 'virtualservers.lvs.dev', '-A'), 'no', 'the agent never reads a spec');
  assert.is(await can('patch', 'virtualservers.lvs.dev', '--subresource=status', '-n', 'shop'), 'no');
  assert.is(await can('list', 'pods', '-A'), 'no');
  assert.is(await can('list', 'endpointslices.discovery.k8s.io', '-A'), 'no', 'the agent never resolves Services');
  assert.is(await can('get', 'secrets', '-n', 'shop'), 'no');
});

test('the guest suite passes in the VM (agent in the VM, controller and apiserver here)', async () => {
  const api = Number(new URL(H().cp.url).port);
  vm = await runInVm({
    command: `node_modules/.bin/node ${GUEST_SUITE}`, // V8 flags and CPU: lab/vm/vm.ts
    timeoutMs: Number(process.env.LVS_SYSTEM_TIMEOUT_MS ?? 2_400_000),
    memoryMb: 2048,
    modules: [...KUBE_PROXY_MODULES], // kube-proxy's rules: nftables, and iptables-nft + ipset for its ipvs mode (the kube-proxy scenarios)
    guestfwd: [{ guestPort: GUEST_API_PORT, hostPort: api }, { guestPort: GUEST_CONTROL_PORT, hostPort: ctl!.port }],
    env: {
      LVS_SYSTEM_ADMIN_KUBECONFIG: H().guest.admin, LVS_SYSTEM_AGENT_KUBECONFIG: H().guest.agent,
      LVS_SYSTEM_KUBE_PROXY_KUBECONFIG: H().guest.kubeProxy, [KUBE_PROXY_BINARY_ENV]: binaryPath('kube-proxy'),
      LVS_SYSTEM_CONTROL_URL: `http://10.0.2.100:${GUEST_CONTROL_PORT}`, LVS_SYSTEM_NODE: NODE_NAME, LVS_SYSTEM_NODE_IP: NODE_IP,
      ...Object.fromEntries(['LVS_SYSTEM_ECHO_AGENT', 'LVS_SYSTEM_ONLY'].flatMap((k) => (process.env[k] ? [[k, process.env[k]!]] : []))),
    },
    label: 'vm',
  });
  log(`VM: exit ${vm.exitCode}, boot ${vm.bootMs} ms, total ${vm.totalMs} ms${vm.timedOut ? ' (TIMED OUT)' : ''}; apiserver outages served: ${ctl!.state().outages}`);
  assert.is(vm.timedOut, false, 'the VM timed out');
  assert.is(vm.exitCode, 0, 'the guest suite failed (its output is above, prefixed [vm])');
  assert.is(H().controller.child.exitCode, null, `the controller died: ${H().controller.stderr()}`);
});

test.run();
