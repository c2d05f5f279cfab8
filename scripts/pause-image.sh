#!/usr/bin/env bash
# The pod sandbox ("pause") image the cluster tier's containerd needs, built here because no image
# registry is reachable (registry.k8s.io/pause cannot be pulled). The binary is Kubernetes' own
# pause.c (build/pause/linux in the k8s.io/kubernetes module the control plane is built from),
# linked statically; the image holds only it, like the upstream image. Named for what it is:
#   localhost/lvs-test/pause:<kubeadm's PauseVersion>   ->   ~/.cache/lvs-operator/images/pause.oci.tar
# Test infrastructure, not a product image (npm run images builds those). Needs root (buildah).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${LVS_CACHE_DIR:-$HOME/.cache/lvs-operator}/images
KUBERNETES_VERSION=$(sed -n "s/^export const KUBERNETES_VERSION = '\(.*\)';/\1/p" scripts/build-apiserver.ts)
PAUSE_VERSION=3.10.1
NAME=localhost/lvs-test/pause:$PAUSE_VERSION
OUT=$CACHE/pause.oci.tar
[ -f "$OUT" ] && [ "$(cat "$OUT.name" 2>/dev/null)" = "$NAME $KUBERNETES_VERSION" ] && { echo "[pause-image] $OUT cached"; exit 0; }
command -v buildah >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah >/dev/null; }
src=$(cd test/apiserver/build/kube && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
[ -f "$src/build/pause/linux/pause.c" ] || { echo "[pause-image] no build/pause/linux/pause.c in $src" >&2; exit 1; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
gcc -Os -static -DVERSION="v$PAUSE_VERSION" -o "$work/pause" "$src/build/pause/linux/pause.c"
strip "$work/pause"
mkdir -p "$CACHE"
bh() { buildah --root "$CACHE/storage-pause" --runroot "$CACHE/run-pause" --storage-driver vfs "$@"; }
ctr=$(bh from scratch)
bh copy "$ctr" "$work/pause" /pause >/dev/null
bh config --os linux --arch amd64 --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
bh commit --quiet --rm "$ctr" "$NAME" >/dev/null
rm -f "$OUT"
bh push --quiet --format oci "$NAME" "oci-archive:$OUT:$NAME"
echo "$NAME $KUBERNETES_VERSION" > "$OUT.name"
echo "[pause-image] $NAME -> $OUT ($(du -h "$OUT" | cut -f1))"
