#!/usr/bin/env node
// Lab tool: what a real kube-proxy (v1.34.4, scripts/build-apiserver.ts) does on a node where our
// agent's IPVS services, lvs0 VIPs and nft tables already are, for a LoadBalancer Service of class
// lvs.dev/ipvs whose ingress ipMode is VIP, then Proxy, in each kube-proxy mode. One VM boot;
// the host runs kube-apiserver + etcd (lab/apiserver/harness.ts) with the system tier's Node
// lvs-node-1, the guest (lab/guest/kube-proxy-probe.guest.ts) does the rest. Results: lab/KUBE-PROXY.md.
//
//   node_modules/.bin/node lab/kube-proxy-probe.ts [out-file]     (default /tmp/kube-proxy-probe.log)
//   LVS_PROBE_MODES=nftables,ipvs   only these modes (default: all, iptables/ipvs need iptables + ipset)
import { writeFileSync } from 'node:fs';
import { apiserverPrereqs, startControlPlane } from './apiserver/harness.ts';
import { GUEST_API_PORT, guestKubeconfig, KUBE_PROXY_USER, kubeProxyIdentity, registerNode } from './apiserver/host-cluster.ts';
import { KUBE_PROXY_BINARY_ENV, KUBE_PROXY_MODULES } from './guest/kube-proxy.ts';
import { kernelPrereqs, runInVm } from './vm/vm.ts';
import { binaryPath } from '../scripts/build-apiserver.ts';
import { join } from 'node:path';

const out = process.argv[2] ?? '/tmp/kube-proxy-probe.log';
const missing = kernelPrereqs() ?? apiserverPrereqs();
if (missing) { console.error(`cannot run: ${missing}`); process.exit(2); }

const cp = await startControlPlane({ log: (m) => console.log(`# ${m}`) });
let code = 1;
try {
  await registerNode(cp);
  const kp = await kubeProxyIdentity(cp);
  for (const args of [['list', 'endpointslices.discovery.k8s.io', '-A'], ['watch', 'services', '-A'], ['get', 'nodes'], ['create', 'events.events.k8s.io'], ['update', 'services/status'], ['list', 'pods', '-A']]) {
    const r = await cp.kubectl(['auth', 'can-i', ...args], { kubeconfig: kp.host });
    console.log(`# ${KUBE_PROXY_USER} can-i ${args.join(' ')}: ${r.stdout.trim()}`);
  }
  const admin = join(cp.dir, 'guest-admin.kubeconfig');
  writeFileSync(admin, guestKubeconfig(cp.kubeconfig.contents, GUEST_API_PORT), { mode: 0o600 });
  const lines: string[] = [];
  const vm = await runInVm({
    command: 'node_modules/.bin/node lab/guest/kube-proxy-probe.guest.ts',
    timeoutMs: 30 * 60_000, memoryMb: 1536, modules: [...KUBE_PROXY_MODULES],
    guestfwd: [{ guestPort: GUEST_API_PORT, hostPort: Number(new URL(cp.url).port) }],
    env: {
      LVS_KUBECTL: binaryPath('kubectl'), LVS_ADMIN_KUBECONFIG: admin, LVS_KUBE_PROXY_KUBECONFIG: kp.guest,
      [KUBE_PROXY_BINARY_ENV]: binaryPath('kube-proxy'), ...(process.env.LVS_PROBE_MODES ? { LVS_PROBE_MODES: process.env.LVS_PROBE_MODES } : {}),
    },
    echo: false, label: 'probe',
    onOutput: (l) => { lines.push(l); if (/^(#|RESULT|===|probe failed)/.test(l)) console.log(l.length > 400 ? `${l.slice(0, 400)}…` : l); },
  });
  writeFileSync(out, lines.join('\n') + '\n' + vm.kernelLog.split('\n').slice(-80).join('\n'));
  console.log(`# VM exit ${vm.exitCode}, boot ${vm.bootMs} ms, total ${vm.totalMs} ms${vm.timedOut ? ' (TIMED OUT)' : ''}; full output in ${out}`);
  code = vm.exitCode;
} finally {
  await cp.stop();
}
process.exit(code);
