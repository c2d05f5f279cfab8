// Host side of the cluster tier: a real control plane for a real node. etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler run here (native speed); the node (containerd, runc,
// CNI, kubelet, kube-proxy: lab/cluster/node-up.sh) runs inside the VM booting Debian's kernel and
// reaches the apiserver through qemu's guestfwd at https://10.0.2.100:<port>, the same port the
// apiserver listens on here, so the `kubernetes` Service's endpoint (advertise address 10.0.2.100)
// is right for pods too. Everything the node needs (kubeconfigs, kubelet and containerd
// configuration, CNI network) is written into one folder before the VM boots; the VM sees this
// host's / read-only, so the guest reads it at the same path.
//
// Identities: the kubelet has a client certificate for system:node:<node> in system:nodes (the
// Node authorizer and NodeRestriction apply to it, as in a kubeadm cluster); kube-proxy the
// built-in system:kube-proxy user; the guest's test driver is the admin. The controller manager
// and the scheduler use the admin's credentials here (not what is under test; a kubeadm cluster
// gives them their own users).
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { binaryPath } from '../../scripts/build-apiserver.ts';
import { clientCert, kubeconfigYaml } from '../apiserver/certs.ts';
import { freePorts, startControlPlane, type ControlPlane } from '../apiserver/harness.ts';
import { startProc, type Proc } from '../apiserver/procs.ts';
import { kubeProxyConfig } from '../guest/kube-proxy.ts';
import { KUBELET_PORT, startKubeletTunnel } from './kubelet-tunnel.ts';

export const NODE_NAME = 'lvs-node-1';
/** The VM's address on qemu's user network (eth0): the Node's InternalIP. */
export const NODE_IP = '10.0.2.15';
/** Where the guest reaches this host (qemu user network). */
export const HOST_FROM_GUEST = '10.0.2.100';
export const SERVICE_CIDR = '10.96.0.0/24';
/** The `kubernetes` Service's ClusterIP (the first address of SERVICE_CIDR): pods dial it. */
export const KUBERNETES_CLUSTER_IP = '10.96.0.1';
/** Pods of the node: one CNI bridge (cni0, the node's address .1), host-local addresses. */
export const POD_CIDR = '10.244.0.0/24';
export const POD_GATEWAY = '10.244.0.1';
/** The sandbox image lab/cluster/node-up.sh imports (scripts/pause-image.sh builds it). */
export const PAUSE_IMAGE = 'localhost/lvs-test/pause:3.10.1';

export interface NodeFiles {
  /** the folder holding all of them (the guest reads it at the same path) */
  dir: string;
  kubeletKubeconfig: string;
  kubeletConfig: string;
  containerdConfig: string;
  cniConfDir: string;
  kubeProxyKubeconfig: string;
  /** admin kubeconfig for the guest's test driver (server = the guestfwd address) */
  admin: string;
}

export interface RealCluster {
  cp: ControlPlane;
  /** the apiserver's port, here and (through guestfwd) in the guest */
  apiPort: number;
  node: NodeFiles;
  /** the VM must forward this host port (127.0.0.1) to the kubelet's port: the apiserver's way in */
  kubeletForward: { hostPort: number; guestPort: number };
  controllers: Proc[];
  stop(): Promise<void>;
}

/** The kubeconfig's server, as the guest dials it (10.0.2.100 is a SAN of the serving certificate). */
function forGuest(kubeconfig: string, apiPort: number): string {
  const out = kubeconfig.replace(/server: https:\/\/127\.0\.0\.1:\d+/, `server: https://${HOST_FROM_GUEST}:${apiPort}`);
  if (out === kubeconfig) throw new Error('kubeconfig: no "server: https://127.0.0.1:<port>" line');
  return out;
}

function kubeletConfig(clientCa: string): string {
  // JSON is YAML: the kubelet reads either.
  return JSON.stringify({
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    // No systemd in the VM: the kubelet and containerd (SystemdCgroup = false) use cgroupfs.
    cgroupDriver: 'cgroupfs',
    containerRuntimeEndpoint: 'unix:///run/containerd/containerd.sock',
    failSwapOn: false,
    // As a kubeadm node: no anonymous requests; client certificates of the cluster's client CA, and
    // bearer tokens checked with the apiserver (TokenReview); every request authorized by the
    // apiserver (SubjectAccessReview: nodes/proxy, nodes/log, ...). The Node authorizer lets the
    // kubelet's system:node identity create both reviews. test/cluster/guest checks all three answers.
    authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: clientCa } },
    authorization: { mode: 'Webhook' },
    readOnlyPort: 0,
    healthzBindAddress: '127.0.0.1',
    clusterDomain: 'cluster.local',
    clusterDNS: ['10.96.0.10'],
    resolvConf: '/etc/resolv.conf',
    // The node's disks are the VM's memory (tmpfs): evict on memory only, never on "disk" use.
    evictionHard: { 'memory.available': '64Mi', 'nodefs.available': '0%', 'imagefs.available': '0%', 'nodefs.inodesFree': '0%' },
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    serializeImagePulls: false,
    // A terminated pod's containers are removed promptly, so a test sees real termination.
    shutdownGracePeriod: '0s',
  }, null, 2) + '\n';
}

function containerdConfig(cniConfDir: string): string {
  return `# containerd 1.6 (Debian 12) for the cluster tier's node: CRI with runc (cgroupfs), overlayfs on tmpfs.
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    # Debian's containernetworking-plugins
    bin_dir = "/usr/lib/cni"
    conf_dir = "${cniConfDir}"
`;
}

function cniConflist(): string {
  return JSON.stringify({
    cniVersion: '1.0.0',
    name: 'lvs-test-pods',
    plugins: [
      {
        type: 'bridge', bridge: 'cni0', isGateway: true, ipMasq: true, hairpinMode: true,
        ipam: { type: 'host-local', ranges: [[{ subnet: POD_CIDR, gateway: POD_GATEWAY }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: '/run/cni/ipam' },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  }, null, 2) + '\n';
}

async function writeNodeFiles(cp: ControlPlane, apiPort: number): Promise<NodeFiles> {
  const dir = join(cp.dir, 'node');
  await mkdir(join(dir, 'cni'), { recursive: true });
  const pair = await clientCert(cp.pki, 'kubelet', `system:node:${NODE_NAME}`, ['system:nodes']);
  const files: NodeFiles = {
    dir,
    kubeletKubeconfig: join(dir, 'kubelet.kubeconfig'),
    kubeletConfig: join(dir, 'kubelet.yaml'),
    containerdConfig: join(dir, 'containerd.toml'),
    cniConfDir: join(dir, 'cni'),
    kubeProxyKubeconfig: join(dir, 'kube-proxy.kubeconfig'),
    admin: join(dir, 'admin.kubeconfig'),
  };
  const guestUrl = `https://${HOST_FROM_GUEST}:${apiPort}`;
  await writeFile(files.kubeletKubeconfig, await kubeconfigYaml(guestUrl, cp.caCert, pair, `system:node:${NODE_NAME}`), { mode: 0o600 });
  await writeFile(files.kubeletConfig, kubeletConfig(cp.pki.clientCa.cert));
  await writeFile(files.containerdConfig, containerdConfig(files.cniConfDir));
  await writeFile(join(files.cniConfDir, '10-lvs-test.conflist'), cniConflist());
  const kp = await cp.userKubeconfig('system:kube-proxy');
  await writeFile(files.kubeProxyKubeconfig, forGuest(kp.contents, apiPort), { mode: 0o600 });
  // nftables mode: what a cluster leaving kube-proxy's ipvs mode moves to.
  await writeFile(join(dir, 'kube-proxy.yaml'), kubeProxyConfig({ kubeconfig: files.kubeProxyKubeconfig, node: NODE_NAME, mode: 'nftables', clusterCidr: POD_CIDR }));
  await writeFile(files.admin, forGuest(cp.kubeconfig.contents, apiPort), { mode: 0o600 });
  return files;
}

let clusters = 0;

/** The control plane, its controllers and scheduler, and the node's files; ready for the VM to boot. */
export async function startRealCluster(log: (m: string) => void): Promise<RealCluster> {
  const [hostPort = 0] = await freePorts(1);
  const egressSocket = join(tmpdir(), `lvs-kubelet-tunnel-${process.pid}-${++clusters}.sock`);
  const tunnel = await startKubeletTunnel(egressSocket, NODE_IP, hostPort, log);
  const cp = await startControlPlane({
    log,
    cluster: { advertiseAddress: HOST_FROM_GUEST, servingSans: [`IP:${HOST_FROM_GUEST}`, `IP:${KUBERNETES_CLUSTER_IP}`, 'DNS:kubernetes.default.svc'], egressSocket },
  }).catch(async (e: unknown) => { await tunnel.close(); throw e; });
  const controllers: Proc[] = [];
  const stop = async () => {
    for (const p of controllers.reverse()) await p.stop();
    controllers.length = 0;
    await cp.stop();
    const { joined, refused } = tunnel.counts();
    await tunnel.close();
    log(`kubelet tunnel: ${joined} connection(s) to the kubelet, ${refused} refused`);
  };
  try {
    const apiPort = Number(new URL(cp.url).port);
    const kc = cp.kubeconfig.path;
    // What kubeadm grants its apiserver-kubelet-client: the kubelet's whole API (logs, exec, ...).
    const grant = await cp.kubectl(['create', 'clusterrolebinding', 'lvs-test:apiserver-kubelet-client', '--clusterrole=system:kubelet-api-admin', '--user=kube-apiserver-kubelet-client']);
    if (grant.code !== 0) throw new Error(`kubectl create clusterrolebinding: ${grant.stderr}`);
    controllers.push(startProc('kube-controller-manager', binaryPath('kube-controller-manager'), [
      `--kubeconfig=${kc}`, '--leader-elect=false', '--secure-port=0',
      // kube-root-ca.crt in every namespace (the pods' projected ca.crt) and legacy SA tokens.
      `--root-ca-file=${cp.caCert}`, `--service-account-private-key-file=${cp.pki.saKey}`,
      `--service-cluster-ip-range=${SERVICE_CIDR}`, '--allocate-node-cidrs=false',
      // Fast reactions for a test cluster: a node that stops reporting is NotReady within 20 s.
      '--node-monitor-grace-period=20s', '--concurrent-deployment-syncs=2', '--v=1',
    ], join(cp.dir, 'kube-controller-manager.log')));
    controllers.push(startProc('kube-scheduler', binaryPath('kube-scheduler'), [
      `--kubeconfig=${kc}`, '--leader-elect=false', '--secure-port=0', '--v=1',
    ], join(cp.dir, 'kube-scheduler.log')));
    const node = await writeNodeFiles(cp, apiPort);
    log(`real cluster: apiserver ${cp.url} (guest: https://${HOST_FROM_GUEST}:${apiPort}), controller manager and scheduler started; node files in ${node.dir}`);
    return { cp, apiPort, node, kubeletForward: { hostPort, guestPort: KUBELET_PORT }, controllers, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
