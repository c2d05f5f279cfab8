// Guest side of lab/kube-proxy-probe.ts (a lab tool, not a test): what a real kube-proxy does on a
// node where our agent's state already is. Runs in the VM's root namespace as the node
// (lvs-node-1); the apiserver is the host's, reached through guestfwd. For each kube-proxy run it
// prints the node's state (`nft list ruleset`, `ipvsadm -Sn`, addresses, sysctls) and which pod
// answered a request (pod a = kube-proxy's endpoint, pod b = the "agent's" IPVS destination) at
// every step, then a RESULT line of JSON per step. The findings are written up in lab/KUBE-PROXY.md.
//
// The node (all by hand, with the agent's names, so no agent or controller is needed):
//   client ns 192.0.2.10 -- 192.0.2.1 [root ns: lvs0 198.51.100.50/32 + .10/32, IPVS on both VIPs → pod b,
//                                     nft tables lvs_operator in ip/ip6/arp/inet]
//                                     10.244.0.1 cni0 -- pod-a 10.244.0.11:8080 ("a"), pod-b 10.244.0.12:8080 ("b")
// Services in `default`: lb (LoadBalancer, class lvs.dev/ipvs, ingress 198.51.100.50) and
// labelled (the same with service.kubernetes.io/service-proxy-name, ingress 198.51.100.51), both
// with pod a as their only endpoint; plain (ClusterIP) → pod a.
import { spawnSync } from 'node:child_process';
import { KUBE_PROXY_BINARY_ENV, startKubeProxy, type KubeProxyMode } from './kube-proxy.ts';

const env = (k: string) => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set`); return v; };
const KUBECTL = env('LVS_KUBECTL');
const ADMIN = env('LVS_ADMIN_KUBECONFIG');
const KP_KUBECONFIG = env('LVS_KUBE_PROXY_KUBECONFIG');
const BINARY = env(KUBE_PROXY_BINARY_ENV);
const NODE = 'lvs-node-1';
const LB_IP = '198.51.100.50', OTHER_VIP = '198.51.100.10', LABELLED_IP = '198.51.100.51';

function sh(script: string, timeoutMs = 60_000): { code: number; out: string } {
  const r = spawnSync('bash', ['-c', script], { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 });
  return { code: r.status ?? -1, out: (r.stdout ?? '') + (r.stderr ?? '') };
}
function must(script: string): string {
  const r = sh(script);
  if (r.code !== 0) throw new Error(`failed (${r.code}): ${script}\n${r.out}`);
  return r.out;
}
const kubectl = (args: string, input?: string) => {
  const r = spawnSync(KUBECTL, [`--kubeconfig=${ADMIN}`, ...args.split(' ')], { encoding: 'utf8', input, timeout: 60_000 });
  if (r.status !== 0) throw new Error(`kubectl ${args}: ${r.stderr}`);
  return r.stdout;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function setupNode(): void {
  // Module autoloading through the tree the VM extracted (kube-proxy's nft rules need fib,
  // numgen, reject, ...; iptables-nft needs nft_compat and xt_*).
  must('echo /run/bin/modprobe > /proc/sys/kernel/modprobe');
  must(`set -e
ip link add cni0 type bridge && ip addr add 10.244.0.1/24 dev cni0 && ip link set cni0 up
for p in a:11 b:12; do n=\${p%%:*}; i=\${p##*:}
  ip netns add pod-$n
  ip link add veth-$n type veth peer name eth0 netns pod-$n
  ip link set veth-$n master cni0 up
  ip -n pod-$n addr add 10.244.0.$i/24 dev eth0; ip -n pod-$n link set eth0 up; ip -n pod-$n link set lo up
  ip -n pod-$n route add default via 10.244.0.1
  mkdir -p /run/www-$n && echo $n > /run/www-$n/index.html
  ip netns exec pod-$n busybox httpd -p 8080 -h /run/www-$n
done
ip netns add client
ip link add veth-client type veth peer name eth0 netns client
ip addr add 192.0.2.1/24 dev veth-client && ip link set veth-client up
ip -n client addr add 192.0.2.10/24 dev eth0 && ip -n client link set eth0 up && ip -n client link set lo up
ip -n client route add default via 192.0.2.1
sysctl -qw net.ipv4.ip_forward=1
# The service CIDR needs a route (a node's default route, usually): kube-proxy's nftables DNAT of
# the node's own connections comes after the routing decision. (ipvs mode binds ClusterIPs locally.)
ip route add 10.96.0.0/24 dev eth0
ip link add lvs0 type dummy && ip link set lvs0 up`);
}

const NFT_OURS = `table ip lvs_operator { chain probe { counter; }; }
table ip6 lvs_operator { chain probe { counter; }; }
table arp lvs_operator { chain input { type filter hook input priority filter; policy accept; arp operation request arp daddr ip 198.51.100.99 drop; }; }
table inet lvs_operator { chain postrouting { type nat hook postrouting priority srcnat; policy accept; meta nfproto ipv4 meta l4proto tcp ct original ip daddr ${OTHER_VIP} masquerade; }; }`;

/** What our agent would hold: VIPs on lvs0, IPVS services on them (→ pod b), our nft tables. Re-created as it was. */
function agentState(): void {
  must(`ip addr replace ${LB_IP}/32 dev lvs0; ip addr replace ${OTHER_VIP}/32 dev lvs0
ipvsadm -D -t ${LB_IP}:80 2>/dev/null; ipvsadm -D -t ${OTHER_VIP}:80 2>/dev/null
ipvsadm -A -t ${LB_IP}:80 -s wrr && ipvsadm -a -t ${LB_IP}:80 -r 10.244.0.12:8080 -m -w 3
ipvsadm -A -t ${OTHER_VIP}:80 -s wrr && ipvsadm -a -t ${OTHER_VIP}:80 -r 10.244.0.12:8080 -m -w 2
for f in ip ip6 arp inet; do nft add table $f lvs_operator; nft delete table $f lvs_operator; done
nft -f - <<'EOF'
${NFT_OURS}
EOF`);
}

const AGENT_IPVS = [`-A -t ${LB_IP}:80 -s wrr`, `-a -t ${LB_IP}:80 -r 10.244.0.12:8080 -m -w 3`, `-A -t ${OTHER_VIP}:80 -s wrr`, `-a -t ${OTHER_VIP}:80 -r 10.244.0.12:8080 -m -w 2`];

function objects(): { clusterIp: string; nodePort: string; plainIp: string; labelledIp: string } {
  const svc = (name: string, type: string, labels: Record<string, string> = {}) => ({
    apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default', labels },
    spec: { type, ...(type === 'LoadBalancer' ? { loadBalancerClass: 'lvs.dev/ipvs' } : {}), selector: { app: 'a' }, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] },
  });
  const slice = (svcName: string) => ({
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { name: `${svcName}-1`, namespace: 'default', labels: { 'kubernetes.io/service-name': svcName, 'endpointslice.kubernetes.io/managed-by': 'lab.lvs.dev' } },
    addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints: [{ addresses: ['10.244.0.11'], conditions: { ready: true, serving: true, terminating: false }, nodeName: NODE }],
  });
  const items = [svc('lb', 'LoadBalancer'), svc('labelled', 'LoadBalancer', { 'service.kubernetes.io/service-proxy-name': 'lvs.dev-ipvs' }), svc('plain', 'ClusterIP'), slice('lb'), slice('labelled'), slice('plain')];
  kubectl('apply -f -', JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
  setIngress('labelled', LABELLED_IP, 'VIP');
  const get = (n: string, path: string) => kubectl(`get svc ${n} -o jsonpath={${path}}`).trim();
  return { clusterIp: get('lb', '.spec.clusterIP'), nodePort: get('lb', '.spec.ports[0].nodePort'), plainIp: get('plain', '.spec.clusterIP'), labelledIp: get('labelled', '.spec.clusterIP') };
}

function setIngress(name: string, ip: string, ipMode: 'VIP' | 'Proxy'): void {
  kubectl(`patch svc ${name} --subresource=status --type=merge -p ${JSON.stringify({ status: { loadBalancer: { ingress: [{ ip, ipMode }] } } })}`);
}

/** Which pod answered ("a", "b") or the error, from the client ns or the node itself. */
function ask(from: 'client' | 'node', url: string): string { // url: ip:port
  // bash's /dev/tcp (busybox wget segfaults on this machine): the body is the last line.
  const pre = from === 'client' ? 'ip netns exec client ' : '';
  const [host, port] = url.split(':');
  const r = sh(`${pre}timeout 3 bash -c 'exec 3<>/dev/tcp/${host}/${port}; printf "GET / HTTP/1.0\\r\\n\\r\\n" >&3; cat <&3'`, 10_000);
  return r.code === 0 ? r.out.trim().split('\n').pop()!.trim() : `ERR(${r.code}${r.out.trim() ? `: ${r.out.trim().split('\n').pop()}` : ''})`;
}

const SYSCTLS = ['net.ipv4.vs.conntrack', 'net.ipv4.vs.expire_nodest_conn', 'net.ipv4.vs.expire_quiescent_template', 'net.ipv4.conf.all.route_localnet',
  'net.ipv4.conf.all.arp_ignore', 'net.ipv4.conf.all.arp_announce', 'net.netfilter.nf_conntrack_max', 'net.netfilter.nf_conntrack_tcp_timeout_established',
  'net.netfilter.nf_conntrack_tcp_timeout_close_wait', 'net.netfilter.nf_conntrack_udp_timeout', 'net.netfilter.nf_conntrack_udp_timeout_stream'];

function snapshot(label: string, ids: ReturnType<typeof objects>): Record<string, unknown> {
  const ruleset = sh('nft list ruleset').out;
  const ipvs = sh('ipvsadm -Sn').out.trim().split('\n').filter(Boolean);
  const tables = sh('nft list tables').out.trim().split('\n').filter(Boolean);
  const ours = sh('for f in ip ip6 arp inet; do nft list table $f lvs_operator; done').out;
  const ipt = sh('command -v iptables-save >/dev/null && { iptables-save; ip6tables-save; } || echo "(no iptables-save)"').out;
  const addrs = sh('ip -br addr show').out;
  const sysctls = sh(`sysctl -e ${SYSCTLS.join(' ')}`).out.trim();
  console.log(`\n=== ${label}\n--- nft list ruleset\n${ruleset}--- ipvsadm -Sn\n${ipvs.join('\n')}\n--- ip -br addr\n${addrs}--- sysctls\n${sysctls}\n--- iptables-save | grep -c KUBE: ${ipt.split('\n').filter((l) => l.includes('KUBE')).length}`);
  const mention = (ip: string) => ({
    nft: ruleset.split('\n').filter((l) => l.includes(ip)).length,
    iptables: ipt.split('\n').filter((l) => l.includes(ip)).length,
    ipvs: ipvs.filter((l) => l.includes(ip)).join(' | '),
  });
  const result = {
    label,
    tables,
    agentIpvsIntact: AGENT_IPVS.every((l) => ipvs.includes(l)),
    agentNftIntact: ['ip', 'ip6', 'arp', 'inet'].every((f) => ours.includes(`table ${f} lvs_operator`)) && ours.includes('198.51.100.99 drop') && ours.includes(`daddr ${OTHER_VIP} masquerade`),
    lvs0: /lvs0\s+\S+\s+(.*)/.exec(addrs)?.[1]?.trim() ?? 'absent',
    kubeIpvs0: /kube-ipvs0\s+\S+\s+(.*)/.exec(addrs)?.[1]?.trim() ?? 'absent',
    lbIp: mention(LB_IP), clusterIp: mention(ids.clusterIp), nodePort: mention(`${ids.nodePort}`), labelledClusterIp: mention(ids.labelledIp), labelledLbIp: mention(LABELLED_IP),
    traffic: {
      'client→LB': ask('client', `${LB_IP}:80`),
      'node→LB': ask('node', `${LB_IP}:80`),
      'client→otherVIP': ask('client', `${OTHER_VIP}:80`),
      'node→ClusterIP': ask('node', `${ids.clusterIp}:80`),
      'client→NodePort@nodeIP': ask('client', `10.0.2.15:${ids.nodePort}`),
      'client→NodePort@LB': ask('client', `${LB_IP}:${ids.nodePort}`),
      'node→plain ClusterIP': ask('node', `${ids.plainIp}:80`),
      'node→labelled ClusterIP': ask('node', `${ids.labelledIp}:80`),
      'client→labelled LB': ask('client', `${LABELLED_IP}:80`),
    },
  };
  console.log(`RESULT ${JSON.stringify(result)}`);
  return result;
}

interface Run { mode: KubeProxyMode; path?: string; note: string; exclude?: string[] }

async function probe(run: Run, ids: ReturnType<typeof objects>): Promise<void> {
  const tag = `${run.mode}${run.path ? ' (PATH without a working modprobe)' : ''}${run.exclude ? ` (excludeCIDRs ${run.exclude.join(',')})` : ''}`;
  setIngress('lb', LB_IP, 'VIP');
  agentState();
  snapshot(`${tag}: before kube-proxy starts (${run.note})`, ids);
  const t0 = Date.now();
  const kp = startKubeProxy({
    binary: BINARY, kubeconfig: KP_KUBECONFIG, node: NODE, mode: run.mode, clusterCidr: '10.244.0.0/16',
    verbosity: 2, ...(run.path ? { path: run.path } : {}), ...(run.mode === 'ipvs' ? { ipvsScheduler: 'rr', ...(run.exclude ? { ipvsExcludeCidrs: run.exclude } : {}) } : {}),
  });
  try {
    await kp.waitSynced(t0, 180_000);
    console.log(`# ${tag}: first sync ${Date.now() - t0} ms after spawn`);
    await sleep(2000);
    snapshot(`${tag}: running, lb ipMode VIP`, ids);
    const t1 = Date.now();
    setIngress('lb', LB_IP, 'Proxy');
    await kp.waitSynced(t1 + 500, 60_000);
    await sleep(2000);
    snapshot(`${tag}: running, lb ipMode Proxy`, ids);
    if (run.mode === 'ipvs') {
      // Our agent's state as it would be re-created (its periodic sync), kube-proxy still running.
      agentState();
      const t2 = Date.now();
      await kp.waitSynced(t2, 60_000);
      await sleep(2000);
      snapshot(`${tag}: agent state re-created while kube-proxy runs (ipMode Proxy), one kube-proxy sync later`, ids);
    }
  } finally {
    await kp.kill('SIGTERM');
    const ex = await kp.exited;
    console.log(`# ${tag}: kube-proxy exited ${JSON.stringify(ex)}; its log (FLAG lines left out):`);
    for (const l of kp.lines.filter((x) => !x.text.includes('flags.go')).slice(0, 200)) console.log(`  ${l.text}`);
  }
  snapshot(`${tag}: after kube-proxy exited (SIGTERM)`, ids);
}

async function main(): Promise<void> {
  setupNode();
  const ids = objects();
  console.log(`# lb ClusterIP ${ids.clusterIp} nodePort ${ids.nodePort}; plain ${ids.plainIp}; labelled ${ids.labelledIp}`);
  const noModprobe = '/usr/sbin:/usr/bin:/sbin:/bin'; // /usr/sbin/modprobe finds no modules: "modprobe -va ip_vs" fails
  const runs: Run[] = [
    { mode: 'nftables', path: noModprobe, note: 'modprobe fails, as in a container without the modules tree' },
    { mode: 'nftables', note: 'modprobe works, as on a node' },
    { mode: 'ipvs', note: 'after nftables' },
    { mode: 'ipvs', note: 'after ipvs', exclude: ['198.51.100.0/24'] },
    { mode: 'iptables', note: 'after ipvs' },
  ];
  for (const run of (process.env.LVS_PROBE_MODES ?? '').split(',').filter(Boolean).length ? runs.filter((r) => process.env.LVS_PROBE_MODES!.split(',').includes(r.mode)) : runs) {
    await probe(run, ids);
  }
  // kube-proxy --cleanup, with our state present.
  agentState();
  snapshot('before kube-proxy --cleanup', ids);
  const r = sh(`${BINARY} --cleanup --v=2 2>&1`, 180_000);
  console.log(`# kube-proxy --cleanup exited ${r.code}:\n${r.out}`);
  snapshot('after kube-proxy --cleanup', ids);
}

// No process.exit(): it dropped the last few kilobytes still queued for the serial console.
main().catch((err: unknown) => { console.error('probe failed:', err); process.exitCode = 1; });
