#!/usr/bin/env bash
# Inside the cluster tier's VM: turns the guest into a Kubernetes node of the control plane on the
# host (lab/cluster/host.ts wrote the files this reads) — containerd (Debian's, with runc), the
# CNI bridge network (Debian's containernetworking-plugins), kube-proxy (nftables mode) and the
# kubelet, each a process of this boot like systemd units on a real node. The images are imported
# into containerd's k8s.io namespace from the OCI archives (no registry is reachable).
#
#   bash lab/cluster/node-up.sh            environment (set by test/cluster/cluster.test.ts):
#     LVS_NODE_FILES   the folder lab/cluster/host.ts wrote    LVS_NODE_NAME, LVS_NODE_IP
#     LVS_KUBELET, LVS_KUBE_PROXY   binaries                   LVS_IMAGES   OCI archives to import
#
# The guest's root is the host's / over 9p, read-only: what a node writes goes to tmpfs mounts
# over /var/lib and /var/log (kubelet, containerd, pod logs) and /run. Logs: /run/cluster/*.log.
set -euo pipefail
: "${LVS_NODE_FILES:?}" "${LVS_NODE_NAME:?}" "${LVS_NODE_IP:?}" "${LVS_KUBELET:?}" "${LVS_KUBE_PROXY:?}" "${LVS_IMAGES:?}"
OUT=/run/cluster
mkdir -p "$OUT"
t0=$(date +%s.%N)
say() { echo "[node-up $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s] $*"; }

# --- what a node's boot gives it ----------------------------------------------------------------
mount -t tmpfs -o mode=0755 tmpfs /var/lib
mount -t tmpfs -o mode=0755 tmpfs /var/log
# The kernel's modules where a node has them (the agent's DaemonSet mounts /lib/modules).
mount --bind "$LVS_KMOD_DIR/lib/modules" /lib/modules
# cgroup v2 with the controllers the kubelet manages (no systemd here: cgroupfs driver).
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo "+cpuset +cpu +io +memory +pids" > /sys/fs/cgroup/cgroup.subtree_control
sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.forwarding=1
# A node has a default route. Without one, a hostNetwork pod (the agent) dialling the kubernetes
# Service's ClusterIP fails with ENETUNREACH before kube-proxy's DNAT is ever reached (the route
# lookup comes first). 10.0.2.2 is qemu's user-network gateway; restrict=on still lets nothing out.
ip route add default via 10.0.2.2 dev eth0

# --- containerd ---------------------------------------------------------------------------------
containerd --config "$LVS_NODE_FILES/containerd.toml" >"$OUT/containerd.log" 2>&1 &
echo $! >"$OUT/containerd.pid"
for i in $(seq 150); do ctr --address /run/containerd/containerd.sock version >/dev/null 2>&1 && break; sleep 0.2; done
ctr --address /run/containerd/containerd.sock version >/dev/null || { tail -30 "$OUT/containerd.log"; exit 1; }
say "containerd $(containerd --version | awk '{print $3}') up"
for tar in $LVS_IMAGES; do
  # Unpacked into the CRI's snapshotter here, as a kubelet's pull unpacks before any container is
  # created. Imported with --no-unpack, the unpack fell to CreateContainer, which under emulation
  # and load overran the kubelet's 2-minute runtime request timeout again and again
  # (CreateContainerError: context deadline exceeded; seen in this tier on 2026-12-05).
  ctr --address /run/containerd/containerd.sock -n k8s.io images import --snapshotter overlayfs "$tar" | sed 's/^/[node-up] /'
done
# An archive's name without a registry ("lvs-operator-agent:dev", as `docker load` would name it)
# is what the kubelet asks for as docker.io/library/<name>: tag it so, as docker load does.
C="ctr --address /run/containerd/containerd.sock -n k8s.io"
for ref in $($C images ls -q | grep -v '^sha256:'); do
  case "$ref" in */*) ;; *) $C images tag "$ref" "docker.io/library/$ref" >/dev/null ;; esac
done
$C images ls -q | grep -v '^sha256:' | sed 's/^/[node-up] image /'
say "images imported"

# --- kube-proxy (nftables) and the kubelet ------------------------------------------------------
"$LVS_KUBE_PROXY" --config="$LVS_NODE_FILES/kube-proxy.yaml" --v=1 >"$OUT/kube-proxy.log" 2>&1 &
echo $! >"$OUT/kube-proxy.pid"
"$LVS_KUBELET" --config="$LVS_NODE_FILES/kubelet.yaml" --kubeconfig="$LVS_NODE_FILES/kubelet.kubeconfig" \
  --hostname-override="$LVS_NODE_NAME" --node-ip="$LVS_NODE_IP" --v=1 >"$OUT/kubelet.log" 2>&1 &
echo $! >"$OUT/kubelet.pid"
say "kube-proxy and kubelet started"
