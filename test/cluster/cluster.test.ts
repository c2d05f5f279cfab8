// Cluster tier: the chart and the images on a real cluster. Here: etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler (lab/cluster/host.ts); in a qemu VM booting Debian's
// kernel: a real node (lab/cluster/node-up.sh: containerd with runc, CNI bridge, kube-proxy,
// kubelet) with the images built from the Dockerfile (npm run images) imported, and the guest
// suite test/cluster/guest/cluster.guest.ts, which installs the chart with helm and sends traffic.
import { existsSync, mkdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { apiserverPrereqs } from '../../lab/apiserver/harness.ts';
import { NODE_IP, NODE_NAME, startRealCluster, type RealCluster } from '../../lab/cluster/host.ts';
import { KUBE_PROXY_MODULES } from '../../lab/guest/kube-proxy.ts';
import { kernelPrereqs, REPO_ROOT, runInVm } from '../../lab/vm/vm.ts';
import { binaryPath, cacheRoot } from '../../scripts/build-apiserver.ts';
import { gated } from '../lib/prereq.ts';

const IMAGES = join(cacheRoot(), 'images');
const ARCHIVES = ['pause', 'lvs-operator-controller', 'lvs-operator-agent'].map((n) => join(IMAGES, `${n}.oci.tar`));

/** Builds what is missing (images: minutes when cold); returns why the tier cannot run, or undefined. */
function clusterPrereqs(): string | undefined {
  const why = kernelPrereqs() ?? apiserverPrereqs();
  if (why) return why;
  if (process.getuid?.() !== 0) return 'needs root (buildah, containerd in the VM)';
  // The agent's DaemonSet mounts the node's /lib/modules (type Directory); the VM's root is this
  // host's /, and node-up.sh binds the guest kernel's modules over it. Every Linux host has the
  // folder; a container (like this machine) may not.
  if (!existsSync('/lib/modules')) mkdirSync('/lib/modules');
  for (const [what, cmd] of [['images', 'scripts/images.sh'], ['pause image', 'scripts/pause-image.sh'], ['helm', 'scripts/build-helm.sh']] as const) {
    const r = spawnSync('bash', [join(REPO_ROOT, cmd)], { stdio: ['ignore', 'inherit', 'inherit'] });
    if (r.status !== 0) return `${what}: bash ${cmd} exited ${r.status ?? r.signal}`;
  }
  const missing = ARCHIVES.filter((a) => !existsSync(a));
  return missing.length ? `missing after the builds: ${missing.join(', ')}` : undefined;
}

function helmPath(): string {
  const r = spawnSync('bash', [join(REPO_ROOT, 'scripts/build-helm.sh'), '--path'], { encoding: 'utf8' });
  return r.stdout.trim().split('\n').pop()!;
}

const test = gated(suite('cluster: host (control plane) and VM (a real node)'), clusterPrereqs());
let rc: RealCluster | undefined;

test.before(async () => {
  rc = await startRealCluster((m) => console.log(`# ${m}`));
});

test.after(async () => { await rc?.stop(); });

/** Boots the node against `cluster` and runs the guest suite in it. */
function runNode(cluster: RealCluster) {
  const img = ARCHIVES.join(' ');
  return runInVm({
    command: 'bash lab/cluster/node-up.sh && node_modules/.bin/node test/cluster/guest/cluster.guest.ts; rc=$?; '
      + 'if [ $rc -ne 0 ]; then $KUBECTL get pods -A -o wide; $KUBECTL get events -A --sort-by=.lastTimestamp | tail -40; for f in /run/cluster/*.log; do echo "== $f"; tail -40 "$f"; done; '
      + 'for f in /var/log/pods/*/*/*.log; do echo "== $f"; tail -30 "$f"; done; fi; exit $rc',
    timeoutMs: Number(process.env.LVS_CLUSTER_TIMEOUT_MS ?? 2_400_000),
    memoryMb: 4096,
    modules: [...KUBE_PROXY_MODULES, 'overlay'],
    guestfwd: [{ guestPort: cluster.apiPort, hostPort: cluster.apiPort }],
    hostfwd: [cluster.kubeletForward],
    env: {
      LVS_NODE_FILES: cluster.node.dir, LVS_NODE_NAME: NODE_NAME, LVS_NODE_IP: NODE_IP,
      LVS_KUBELET: binaryPath('kubelet'), LVS_KUBE_PROXY: binaryPath('kube-proxy'), LVS_IMAGES: img,
      KUBECONFIG: cluster.node.admin, KUBECTL: binaryPath('kubectl'), HELM: helmPath(),
    },
    label: 'node',
  });
}

test('the guest suite passes on the node (chart installed with helm, real kubelet and containerd)', async () => {
  let vm = await runNode(rc!);
  // A guest whose kernel stopped scheduling (lab/vm/vm.ts HUNG_AFTER_S) tells nothing about the
  // suite: the whole tier runs once more, on a fresh control plane (the first node's objects and
  // the helm release are in the old one's etcd). A second hang fails the tier.
  if (vm.hung) {
    console.log(`# the node's kernel hung after ${Math.round(vm.totalMs / 1000)} s (${vm.hung}); the tier runs once more on a fresh control plane`);
    await rc!.stop();
    rc = undefined;
    rc = await startRealCluster((m) => console.log(`# ${m}`));
    vm = await runNode(rc);
  }
  console.log(`# VM: exit ${vm.exitCode}, boot ${vm.bootMs} ms, total ${vm.totalMs} ms${vm.timedOut ? ' (TIMED OUT)' : ''}${vm.hung ? ' (HUNG)' : ''}`);
  assert.is(vm.hung, undefined, 'the node\'s kernel hung twice');
  assert.is(vm.timedOut, false, 'the VM timed out');
  assert.is(vm.exitCode, 0, 'the guest suite failed (its output is above, prefixed [node])');
});

test.run();
