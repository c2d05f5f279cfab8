// A real kube-proxy (built by scripts/build-apiserver.ts from k8s.io/kubernetes) as a child process
// of a guest script, in the VM's root network namespace (the node), next to the agent. It runs
// from a KubeProxyConfiguration file (most of kube-proxy's flags are deprecated in favour of
// it), as the user bound to the built-in ClusterRole system:node-proxier (lab/apiserver/
// host-cluster.ts: kubeProxyIdentity()), with metrics and healthz on loopback only.
//
//   const kp = startKubeProxy({ binary: process.env[KUBE_PROXY_BINARY_ENV]!, kubeconfig, node: 'lvs-node-1',
//     mode: 'nftables', clusterCidr: '10.244.0.0/16' });
//   await kp.waitSynced(Date.now());    // a full sync of the rules after this moment
//   await kp.kill();
//
// The binary's path comes from the host (in the guest HOME is /run/home, so binaryPath() of
// scripts/build-apiserver.ts would look in the wrong cache). What kube-proxy does to the node when
// it starts (it flushes IPVS in nftables mode!) is measured in lab/KUBE-PROXY.md.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/** The environment variable the host sets to the kube-proxy binary's path for the guest. */
export const KUBE_PROXY_BINARY_ENV = 'LVS_KUBE_PROXY';

/**
 * Kernel modules kube-proxy's rules need beyond lab/vm/vm.ts's DEFAULT_MODULES, for runInVm's
 * `modules` (the guest kernel cannot autoload from the 9p tree). nftables mode: fib, reject,
 * numgen; iptables and ipvs modes (iptables-nft): nft_compat with the xt matches and targets
 * kube-proxy writes, and ipset's types (ipvs mode).
 */
export const KUBE_PROXY_NFT_MODULES: readonly string[] = [
  'nf_conntrack_netlink', 'nft_fib', 'nft_fib_inet', 'nft_fib_ipv4', 'nft_fib_ipv6', 'nft_reject', 'nft_reject_inet', 'nft_reject_ipv4',
  'nft_reject_ipv6', 'nft_numgen', 'nft_limit', 'nft_hash', 'nft_redir',
];
export const KUBE_PROXY_MODULES: readonly string[] = [
  ...KUBE_PROXY_NFT_MODULES,
  'nft_compat', 'x_tables', 'xt_comment', 'xt_mark', 'xt_conntrack', 'xt_addrtype', 'xt_statistic', 'xt_MASQUERADE', 'xt_nat',
  'xt_tcpudp', 'xt_multiport', 'xt_physdev', 'xt_set', 'xt_ipvs', 'xt_recent', 'ipt_REJECT', 'ip6t_REJECT',
  'ip_set', 'ip_set_hash_ip', 'ip_set_hash_ipport', 'ip_set_hash_ipportip', 'ip_set_hash_ipportnet', 'ip_set_hash_net', 'ip_set_bitmap_port',
];

export type KubeProxyMode = 'nftables' | 'iptables' | 'ipvs';

export interface KubeProxyConfigOptions {
  kubeconfig: string;
  /** the Node's name (hostnameOverride): kube-proxy reads the node's IPs from it */
  node: string;
  mode: KubeProxyMode;
  /** the pods' CIDR(s): traffic from outside them to a ClusterIP is masqueraded */
  clusterCidr: string | string[];
  /** loopback ports for metrics and healthz (default 10249 and 10256, kube-proxy's own) */
  metricsPort?: number;
  healthzPort?: number;
  /**
   * Leave the conntrack sysctls alone (nf_conntrack_max, tcp timeouts) instead of kube-proxy's
   * defaults. Default false: kube-proxy as it runs in a cluster.
   */
  keepConntrackSysctls?: boolean;
  /** ipvs mode: the scheduler kube-proxy gives its IPVS services (default rr) */
  ipvsScheduler?: string;
  /** ipvs mode: set arp_ignore=1/arp_announce=2 on all interfaces (kube-proxy's strictARP) */
  strictArp?: boolean;
  /**
   * ipvs mode: IPVS services on addresses in these CIDRs are left alone by kube-proxy's sync,
   * which otherwise deletes every IPVS service of its family it did not create (lab/KUBE-PROXY.md)
   */
  ipvsExcludeCidrs?: string[];
  /**
   * Where NodePorts listen: CIDRs, or ['primary'] (the Node's primary IPs). Unset, ipvs and
   * iptables modes accept NodePorts on every local address, lvs0's VIPs included (lab/KUBE-PROXY.md).
   */
  nodePortAddresses?: string[];
}

/**
 * The KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1) as JSON, which kube-proxy reads
 * as YAML. Only what these options decide is set; everything else keeps kube-proxy's defaults.
 */
export function kubeProxyConfig(o: KubeProxyConfigOptions): string {
  const cidrs = Array.isArray(o.clusterCidr) ? o.clusterCidr : [o.clusterCidr];
  if (cidrs.length === 0 || cidrs.some((c) => !/^[0-9a-fA-F.:]+\/\d+$/.test(c))) throw new Error(`kube-proxy: bad clusterCidr ${JSON.stringify(o.clusterCidr)}`);
  const port = (p: number | undefined, dflt: number, what: string) => {
    const v = p ?? dflt;
    if (!Number.isInteger(v) || v < 1 || v > 65535) throw new Error(`kube-proxy: bad ${what} port ${v}`);
    return v;
  };
  const config: Record<string, unknown> = {
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    clientConnection: { kubeconfig: o.kubeconfig },
    hostnameOverride: o.node,
    mode: o.mode,
    clusterCIDR: cidrs.join(','),
    detectLocalMode: 'ClusterCIDR',
    metricsBindAddress: `127.0.0.1:${port(o.metricsPort, 10249, 'metrics')}`,
    healthzBindAddress: `127.0.0.1:${port(o.healthzPort, 10256, 'healthz')}`,
  };
  if (o.nodePortAddresses !== undefined) {
    const n = o.nodePortAddresses;
    const ok = (n.length === 1 && n[0] === 'primary') || (n.length > 0 && n.every((c) => /^[0-9a-fA-F.:]+\/\d+$/.test(c)));
    if (!ok) throw new Error(`kube-proxy: bad nodePortAddresses ${JSON.stringify(n)} (CIDRs, or ['primary'])`);
    config.nodePortAddresses = n;
  }
  if (o.keepConntrackSysctls) {
    // 0 = "leave as is" for each of them (kube-proxy's documented meaning).
    config.conntrack = {
      maxPerCore: 0, min: 0,
      tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s',
      udpTimeout: '0s', udpStreamTimeout: '0s',
    };
  }
  if (o.mode === 'ipvs') {
    const exclude = o.ipvsExcludeCidrs ?? [];
    if (exclude.some((c) => !/^[0-9a-fA-F.:]+\/\d+$/.test(c))) throw new Error(`kube-proxy: bad ipvsExcludeCidrs ${JSON.stringify(exclude)}`);
    config.ipvs = { scheduler: o.ipvsScheduler ?? 'rr', strictARP: o.strictArp ?? false, ...(exclude.length ? { excludeCIDRs: exclude } : {}) };
  } else if (o.ipvsScheduler !== undefined || o.strictArp !== undefined || o.ipvsExcludeCidrs !== undefined) {
    throw new Error(`kube-proxy: ipvsScheduler/strictArp/ipvsExcludeCidrs need mode ipvs, not ${o.mode}`);
  }
  return JSON.stringify(config, null, 2) + '\n';
}

export interface KubeProxyLine { at: number; text: string }

export interface KubeProxyProc {
  child: ChildProcess;
  configPath: string;
  lines: KubeProxyLine[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Prometheus text from its metrics endpoint on loopback */
  metrics(): Promise<string>;
  /** the last full or partial sync of the rules (kubeproxy_sync_proxy_rules_last_timestamp_seconds), ms since the epoch; 0 before one */
  lastSyncMs(): Promise<number>;
  /** Resolves once a sync finished at or after `sinceMs` (Date.now() of this process); throws on timeout or exit. */
  waitSynced(sinceMs: number, timeoutMs?: number): Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<void>;
  tail(n?: number): string;
}

export interface KubeProxyOptions extends KubeProxyConfigOptions {
  binary: string;
  /** where the config file goes (default $TMPDIR/kube-proxy) */
  dir?: string;
  /** klog verbosity (default 2: every sync, and what it did) */
  verbosity?: number;
  /** appended to the command line after --config */
  args?: string[];
  /** the process's PATH (e.g. one without modprobe: see lab/KUBE-PROXY.md) */
  path?: string;
  /** relay each line to the console with this prefix */
  echo?: string;
}

/** Parses the value of one unlabelled Prometheus sample, or undefined. */
export function metricValue(text: string, name: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) {
      const v = Number(line.slice(line.lastIndexOf(' ') + 1));
      if (Number.isFinite(v)) return v;
    }
  }
  return undefined;
}

const live = new Set<ChildProcess>();
process.on('exit', () => { for (const c of live) c.kill('SIGKILL'); });

export function startKubeProxy(o: KubeProxyOptions): KubeProxyProc {
  const dir = o.dir ?? join(process.env.TMPDIR ?? '/tmp', 'kube-proxy');
  mkdirSync(dir, { recursive: true });
  const configPath = join(dir, `${o.mode}.config.yaml`);
  writeFileSync(configPath, kubeProxyConfig(o));
  const logFile = join(dir, `${o.mode}.log`);
  const child = spawn(o.binary, [`--config=${configPath}`, `--v=${o.verbosity ?? 2}`, ...(o.args ?? [])], {
    env: { ...process.env, ...(o.path !== undefined ? { PATH: o.path } : {}) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  const lines: KubeProxyLine[] = [];
  const onLine = (text: string) => {
    lines.push({ at: Date.now(), text });
    appendFileSync(logFile, text + '\n');
    if (o.echo) console.log(`${o.echo} ${text}`);
  };
  createInterface(child.stdout!).on('line', onLine);
  createInterface(child.stderr!).on('line', onLine);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => { live.delete(child); r({ code, signal }); }));
  const metricsUrl = `http://127.0.0.1:${o.metricsPort ?? 10249}/metrics`;
  const tail = (n = 30) => lines.slice(-n).map((l) => l.text).join('\n');
  const metrics = async () => {
    const r = await fetch(metricsUrl, { signal: AbortSignal.timeout(5000) });
    return r.text();
  };
  const lastSyncMs = async () => {
    try { return (metricValue(await metrics(), 'kubeproxy_sync_proxy_rules_last_timestamp_seconds') ?? 0) * 1000; } catch { return 0; }
  };
  return {
    child, configPath, lines, exited, metrics, lastSyncMs, tail,
    async waitSynced(sinceMs, timeoutMs = 120_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`kube-proxy exited (${child.exitCode ?? child.signalCode}); its last lines:\n${tail(20)}`);
        // The gauge is SetToCurrentTime(): float seconds, sub-millisecond precision.
        if ((await lastSyncMs()) >= sinceMs) return;
        if (Date.now() > end) throw new Error(`kube-proxy: no sync since ${new Date(sinceMs).toISOString()} within ${timeoutMs} ms; its last lines:\n${tail(20)}`);
        await new Promise((r) => setTimeout(r, 500));
      }
    },
    async kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
