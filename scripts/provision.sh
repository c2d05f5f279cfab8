#!/usr/bin/env bash
# Installs the Debian packages the test tiers and the demo need, once. Idempotent and quiet when
# everything is present. The kernel image and the Go-built test binaries are provisioned by the
# tiers themselves (cached under ~/.cache/lvs-operator), so a developer's laptop gets them too.
set -euo pipefail
# iptables + ipset: kube-proxy's iptables and ipvs modes (lab/kube-proxy-probe.ts, lab/KUBE-PROXY.md).
# iputils-arping + libndp-tools: the agent's gratuitous ARP / unsolicited NA (dataplane/director/announce.ts).
# containerd + runc + containernetworking-plugins: the cluster tier's node (lab/cluster/node-up.sh).
pkgs=(qemu-system-x86 ipvsadm socat busybox-static kmod iproute2 nftables openssl tcpdump iptables ipset iputils-arping libndp-tools
  containerd runc containernetworking-plugins)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then echo "provision: need root to install: ${missing[*]}" >&2; exit 1; fi
  echo "provision: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "provision: system packages present"
