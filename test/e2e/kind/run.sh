#!/usr/bin/env bash
# End-to-end test of lvs-operator on a real (kind) cluster: NOT runnable without Docker, so never
# run by `npm test`; see README.md in this folder.
#
#   test/e2e/kind/run.sh            create the cluster, test, delete the cluster
#   KEEP=1 test/e2e/kind/run.sh     keep the cluster afterwards (kubectl --context kind-lvs-e2e)
#
# Steps: a kind cluster (1 control plane, 2 workers) -> both images built and loaded -> label one
# worker as the director -> helm install -> echo app + one VirtualServer per forwarding method
# (NAT, DR, TUN) -> each Ready -> from a client pod on the other worker, REQUESTS connections to
# each VIP -> every real server answered, and rr spread them evenly.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
CLUSTER="${CLUSTER:-lvs-e2e}"
NS="${NS:-lvs-system}"
TAG="${TAG:-e2e}"
REQUESTS="${REQUESTS:-60}"
KEEP="${KEEP:-0}"
CTX="kind-$CLUSTER"
APP_NS=lvs-e2e

log() { printf '\n== %s\n' "$*"; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
k() { kubectl --context "$CTX" "$@"; }

# --- prerequisites --------------------------------------------------------------------------
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || die "$tool not found (this script needs Docker, kind and kubectl; see README.md)"
done
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (docker info failed)"
# The same Helm v4 the chart tier tests with, built from its Go module and cached.
HELM="$(command -v helm 2>/dev/null || true)"
if [[ -z "$HELM" ]] || ! "$HELM" version --short 2>/dev/null | grep -q '^v4\.'; then
  HELM="$("$repo/scripts/build-helm.sh" | tail -n1)"
fi

# --- on failure: what a human needs to see; always: delete the cluster unless KEEP=1 ---------
diagnose() {
  log "diagnostics"
  k get nodes -o wide || true
  k -n "$NS" get pods -o wide || true
  k -n "$APP_NS" get pods,svc,endpointslices -o wide || true
  k get vs -A -o yaml || true
  k -n "$NS" logs deployment/lvs-lvs-operator-controller --tail=100 --all-containers || true
  for pod in $(k -n "$NS" get pods -l app.kubernetes.io/component=agent -o name 2>/dev/null); do
    echo "--- $pod"; k -n "$NS" logs "$pod" --tail=100 || true
    k -n "$NS" exec "$pod" -- ipvsadm -Ln --stats || true
  done
}
cleanup() {
  local rc=$?
  if [[ $rc -ne 0 ]] && kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then diagnose; fi
  if [[ "$KEEP" == 1 ]]; then echo "KEEP=1: cluster $CLUSTER kept (kubectl --context $CTX)"
  else kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; fi
  exit $rc
}
trap cleanup EXIT

# --- cluster --------------------------------------------------------------------------------
log "kind cluster $CLUSTER"
if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --wait 180s --config - <<'KIND'
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
  - role: worker
  - role: worker
KIND
fi
DIRECTOR="$CLUSTER-worker"
CLIENT_NODE="$CLUSTER-worker2"
k label node "$DIRECTOR" lvs.dev/director=true --overwrite
# IPVS runs in the node's kernel, which in kind is the Docker host's kernel.
docker exec "$DIRECTOR" sh -c 'modprobe ip_vs 2>/dev/null; test -d /proc/net/ip_vs || grep -q "^ip_vs " /proc/modules' \
  || echo "warning: ip_vs not loaded on the host kernel yet; the agent will modprobe it"

# --- images ---------------------------------------------------------------------------------
log "build and load images (tag $TAG)"
for target in controller agent; do
  docker build --target "$target" -t "lvs-operator-$target:$TAG" "$repo"
  kind load docker-image --name "$CLUSTER" "lvs-operator-$target:$TAG"
done

# --- install --------------------------------------------------------------------------------
log "helm install ($("$HELM" version --short))"
"$HELM" --kube-context "$CTX" upgrade --install lvs "$repo/charts/lvs-operator" \
  --namespace "$NS" --create-namespace \
  --set controller.image.tag="$TAG" --set agent.image.tag="$TAG" \
  --set controller.image.pullPolicy=Never --set agent.image.pullPolicy=Never \
  --set controller.logLevel=debug --set agent.logLevel=debug
k -n "$NS" rollout status deployment/lvs-lvs-operator-controller --timeout=180s
k -n "$NS" rollout status daemonset/lvs-lvs-operator-agent --timeout=180s

# --- sample app and VirtualServers ----------------------------------------------------------
log "echo app, client pod, VirtualServers (NAT, DR, TUN)"
sed "s/CLIENT_NODE/$CLIENT_NODE/" "$here/manifests/app.yaml" | k apply -f -
k -n "$APP_NS" rollout status deployment/echo --timeout=180s
k -n "$APP_NS" rollout status deployment/echo-dr --timeout=180s
k -n "$APP_NS" wait --for=condition=Ready pod/client --timeout=120s
k apply -f "$here/manifests/pool.yaml"
k apply -f "$here/manifests/virtualservers.yaml"
for vs in echo-nat echo-dr echo-tun; do
  k -n "$APP_NS" wait --for=condition=Ready "vs/$vs" --timeout=180s
done
k -n "$APP_NS" get vs -o wide

# --- the network around the director (test environment only) --------------------------------
# The VIPs live on the director's lvs0 device; the other nodes learn to reach them through the
# director's node address. kind's node network is a Docker bridge on this machine: nothing leaves it.
DIRECTOR_IP="$(k get node "$DIRECTOR" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')"
for node in $(kind get nodes --name "$CLUSTER"); do
  [[ "$node" == "$DIRECTOR" ]] && continue
  docker exec "$node" ip route replace 198.18.0.0/24 via "$DIRECTOR_IP"
  # DR/TUN real servers answer the client directly with the VIP as source. kind's pod-egress
  # masquerade would rewrite that source to the node's address (the client would then drop the
  # reply); in a real network the reply path has no masquerading hop. Exempt the VIP range.
  docker exec "$node" iptables -t nat -I POSTROUTING 1 -s 198.18.0.0/24 -j RETURN
done
docker exec "$DIRECTOR" iptables -t nat -I POSTROUTING 1 -s 198.18.0.0/24 -j RETURN

# --- traffic --------------------------------------------------------------------------------
# REQUESTS new connections (busybox wget: one connection per request) to VIP:PORT/hostname; each
# answer is the serving pod's name. Prints "count pod" lines.
tally() {
  k -n "$APP_NS" exec client -- sh -c "
    i=0; while [ \$i -lt $REQUESTS ]; do
      wget -q -T 3 -O - http://$1/hostname || echo FAILED; echo; i=\$((i+1));
    done" | grep -v '^$' | sort | uniq -c | sort -rn
}

# Every ready backend of $2 answered, none failed, and rr's spread is even to within one request
# per round (max - min <= 1 over whole rounds; allow 1 extra for a backend that became ready late).
check_spread() {
  local vs="$1" app="$2" target="$3" counts backends
  log "$vs: $REQUESTS connections to $target"
  counts="$(tally "$target")"
  echo "$counts"
  if grep -q FAILED <<<"$counts"; then die "$vs: some requests failed"; fi
  backends="$(k -n "$APP_NS" get pods -l "app=$app" --field-selector=status.phase=Running -o name | wc -l)"
  local seen; seen="$(wc -l <<<"$counts")"
  [[ "$seen" -eq "$backends" ]] || die "$vs: $seen of $backends real servers answered"
  local max min; max="$(head -n1 <<<"$counts" | awk '{print $1}')"; min="$(tail -n1 <<<"$counts" | awk '{print $1}')"
  (( max - min <= 2 )) || die "$vs: uneven rr spread (max $max, min $min)"
  echo "ok: $seen real servers, $min..$max connections each"
}

check_spread echo-nat echo    198.18.0.10:80
check_spread echo-dr  echo-dr 198.18.0.11:8080
check_spread echo-tun echo    198.18.0.12:8080

log "what the director's kernel holds (ipvsadm inside its agent pod)"
AGENT_POD="$(k -n "$NS" get pods -l app.kubernetes.io/component=agent --field-selector "spec.nodeName=$DIRECTOR" -o name)"
k -n "$NS" exec "$AGENT_POD" -- ipvsadm -Ln --stats

log "PASS: NAT, DR and TUN each spread $REQUESTS connections over all their real servers"
