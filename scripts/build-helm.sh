#!/usr/bin/env bash
# Builds the real Helm v4 CLI from its Go module (no prebuilt download: only the Go module proxy is
# reachable here) and caches it outside the repo, keyed by version:
#   ~/.cache/lvs-operator/bin/helm-<version>/helm      (LVS_CACHE_DIR overrides ~/.cache/lvs-operator)
#
#   scripts/build-helm.sh           build if not cached (idempotent), print the binary's path last
#   scripts/build-helm.sh --path    print the path only, build nothing (exit 1 if not built)
#
# `go install pkg@version` builds in module mode outside any main module, so Helm's own go.mod
# (and go.sum) decide every dependency: the same build a release of that tag gets, minus
# cross-compilation. -ldflags sets the version string `helm version` prints, as Helm's Makefile
# does. The binary is installed into a temp GOBIN and renamed into place, so a half-finished
# build is never mistaken for a cached one.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v4.3.1}"
cache="${LVS_CACHE_DIR:-$HOME/.cache/lvs-operator}"
dir="$cache/bin/helm-$HELM_VERSION"
bin="$dir/helm"

log() { echo "[build-helm] $*" >&2; }

if [[ "${1:-}" == "--path" ]]; then
  [[ -x "$bin" ]] || { log "helm $HELM_VERSION not built: run scripts/build-helm.sh"; exit 1; }
  echo "$bin"; exit 0
fi

if [[ -x "$bin" ]] && "$bin" version --short >/dev/null 2>&1; then
  log "helm $HELM_VERSION: cached at $bin"
  echo "$bin"; exit 0
fi

command -v go >/dev/null || { log "no Go toolchain on PATH: cannot build helm $HELM_VERSION"; exit 1; }

mkdir -p "$dir"
tmp="$(mktemp -d "$dir/.build-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

start=$(date +%s)
log "go install helm.sh/helm/v4/cmd/helm@$HELM_VERSION (cold: module download + compile, minutes) ..."
# nice: the machine's cores are shared with other builds and tests.
# GOFLAGS cleared: a -mod=... from the environment is an error for `go install pkg@version`.
GOBIN="$tmp" GOFLAGS='' CGO_ENABLED=0 nice -n 10 go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
  "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
mv -f "$tmp/helm" "$bin"
log "helm $HELM_VERSION built in $(( $(date +%s) - start )) s: $("$bin" version --short)"
echo "$bin"
