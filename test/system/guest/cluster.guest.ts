// System tier, guest side (runs inside the VM; test/system/cluster.test.ts boots it). The VM is
// node lvs-node-1: the real lvs-agent runs in its root namespace against the host's real
// kube-apiserver (through qemu's guestfwd), where the real controller resolves what this suite
// writes as Kubernetes would (Pods, Services, EndpointSlices, VirtualServers). Pods are network
// namespaces with real workloads; a client namespace sends real TCP traffic to the VIPs.
//
// Scenarios share one cluster and run in order: NAT, DR, TUN; dual-stack VirtualServers (an IPv4
// and an IPv6 VIP each) carrying IPv6 and IPv4 in NAT, DR and TUN, then deleted without a trace;
// scaling up and down (a removed
// pod's established connection survives: drained, not cut); agent SIGKILL and restart (traffic
// keeps flowing, nothing is reprogrammed); the apiserver stopped for 30 s (traffic keeps flowing,
// a change made right after it returns reaches the kernel); a conflicting and an invalid
// VirtualServer disturb nothing; the drained destination is gone once its connection is; a real
// kube-proxy (nftables) beside the agent serves a ClusterIP and changes none of the agent's state; finally a
// Service of 10,000 endpoints x 2 ports is published in bounded PlanSlices and fully programmed.
import { execFileSync, spawnSync } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { addressesIn, CLIENT_IP, CLIENT_IP6, CNI_BRIDGE, removePods } from './lib/node-net.ts';
import { assertRunning, type AgentProc } from '../../../lab/guest/agent.ts';
import { AGENT_REPORTS, PLAN_SLICES, resourcePath, type KubeObject } from '../../../kube/types.ts';
import { CHANGE_TIME_ANNOTATION } from '../../../api/plan-slice.ts';
import { planSlicesPath } from '../../lib/published-plan.ts';
import { SERVICES, VIRTUAL_SERVERS, Workload } from '../../../lab/guest/objects.ts';
import { KUBE_PROXY_BINARY_ENV, startKubeProxy, type KubeProxyProc } from '../../../lab/guest/kube-proxy.ts';
import { ipvsStats as ipvsStatsNow } from '../../../lab/guest/ipvsadm.ts';
import { connect } from 'node:net';
import { BIG, BIG_PORTS, bigAddress, createBigService } from './lib/big.ts';
import { healthCheckedService } from './lib/health.ts';
import { stopAllTraffic } from './lib/traffic.ts';
import { dests, ipvs, service, settledStats, sleep, statsOf, timed, until } from './lib/wait.ts';
import {
  agentMetric, ApiError, cond, envFromProcess, NS, PORT, POD_NETS, setupWorld, VIP, virtualServer, waitProgrammed, type World,
} from './lib/world.ts';

const test = suite('system: agent in the VM, controller and apiserver on the host');
let w: World;
const ip = (pod: string) => POD_NETS[pod]!.ip;
/** The agent's own start (Node, its imports over 9p) under TCG: seconds on a quiet host, minutes on a loaded one. */
const AGENT_START_MS = 360_000;
const WANT = {
  nat: ['10.244.0.11:8080 Masq 1', '10.244.0.12:8080 Masq 1'],
  dr: ['10.244.0.21:80 Route 1', '10.244.0.22:80 Route 1'],
  tun: ['10.244.0.21:80 Tunnel 1', '10.244.0.22:80 Tunnel 1'],
};
let drained: { pod: string; dest: string } | undefined;

/** The node's IPVS rules without counters, one line per destination: comparable across time. */
const rules = () => ipvs().flatMap((svc) => svc.dests.map((d) => `${svc.proto} ${svc.address} ${svc.scheduler} ${svc.flags} -> ${d.address} ${d.forward} ${d.weight}`));

/**
 * The rules as they are now, minus destinations already draining (weight 0): those may finish
 * their drain and be deleted at any moment, which is legitimate work, not a change. now() reads
 * the same view again, for comparison.
 */
function steadyView(): { table: string[]; now: () => string[]; pendingDests: Set<string> } {
  const pending = rules().filter((l) => l.endsWith(' 0'));
  const now = () => rules().filter((l) => !pending.includes(l));
  return { table: now(), now, pendingDests: new Set(pending.map((l) => l.split(' -> ')[1]!.split(' ')[0]!)) };
}

/** until(), failing at once if the agent exits meanwhile (a start can take minutes under TCG). */
async function untilAgent<T>(agent: AgentProc, what: string, probe: () => T | undefined | false, o: Parameters<typeof until>[2]): Promise<T> {
  let died: Error | undefined;
  const v = await until(what, () => {
    try { assertRunning(agent); } catch (err) { died = err as Error; return true as T; }
    return probe();
  }, o);
  if (died) throw died;
  return v;
}

/**
 * Starts the agent and waits for `probe`. An agent that exits meanwhile fails the scenario at
 * once, with its exit code or signal and its last lines: a crash of Node is a failure that names
 * itself, never retried (lab/vm/NODE-UNDER-TCG.md).
 */
async function startAgentUntil(what: string, probe: () => boolean, o: Parameters<typeof until>[2]): Promise<AgentProc> {
  const agent = w.startAgent();
  await untilAgent(agent, what, probe, o);
  return agent;
}

/**
 * LVS_SYSTEM_ONLY (a regular expression): run only the scenarios whose name matches it, besides
 * the first (the agent's start), which every other needs. For development: a scenario may rely on
 * what an earlier one left (the scale-down's drained destination, say).
 */
const ONLY = process.env.LVS_SYSTEM_ONLY ? new RegExp(process.env.LVS_SYSTEM_ONLY) : undefined;
let scenarios = 0;

/** Runs a scenario; on failure shows what the agent said last (uvu prints only the assertion). */
function scenario(name: string, fn: () => Promise<void>): void {
  if (ONLY && scenarios++ > 0 && !ONLY.test(name)) return;
  test(name, async () => {
    const t0 = Date.now();
    try {
      await fn();
    } catch (err) {
      console.log(`# ${name}: FAILED after ${Date.now() - t0} ms; agent (run ${w?.agent?.run}) last lines:\n${w?.agent?.tail(25) ?? '(not started)'}`);
      console.log(`# IPVS rules now:\n${rules().join('\n')}`);
      throw err;
    } finally {
      // A failed scenario must not leave the node without its agent for the ones after it.
      if (w?.agent && (w.agent.child.exitCode !== null || w.agent.child.signalCode !== null)) {
        console.log(`# agent run ${w.agent.run} is not running after "${name}": starting another`);
        w.startAgent();
      }
    }
    console.log(`# scenario "${name}": ${Date.now() - t0} ms`);
  });
}

/** Replies the node dropped because their source is one of its own addresses (log_martians=1). */
function martians(vip: string): string {
  const log = execFileSync('dmesg', { encoding: 'utf8' });
  return log.split('\n').filter((l) => l.includes(`martian source ${CLIENT_IP} from ${vip},`)).slice(-1).map((l) => l.replace(/^\[[^\]]*\]\s*/, '')).join('; ');
}

async function tally(vip: string, count: number): Promise<Record<string, number>> {
  const r = await w.client.burst(vip, PORT, count);
  if (r.errors) {
    const m = martians(vip);
    assert.is(r.errors, 0, `${vip}: ${r.errors} of ${count} connections failed (${r.firstError})${m ? `; kernel: ${m}` : ''}`);
  }
  return r.byId;
}

test.before(async () => {
  // The guest's CPU features, for reading a Node crash against lab/vm/NODE-UNDER-TCG.md.
  const cpu = execFileSync('grep', ['-m1', '^flags', '/proc/cpuinfo'], { encoding: 'utf8' });
  console.log(`# guest CPU: pku ${/\bpku\b/.test(cpu) ? 'yes' : 'no'}, ospke ${/\bospke\b/.test(cpu) ? 'yes' : 'no'}`);
  try {
    w = await timed('guest setup (node network, 5 pod sandboxes and workloads, client, API objects)', () => setupWorld(envFromProcess()));
  } catch (err) {
    console.error('guest setup failed:', err);
    throw err;
  }
});

test.after(async () => {
  // Every plan change the running agent programmed after its first list (that list is not measured).
  try {
    const p = await programming();
    console.log(`# network programming latency, agent run ${w?.agent?.run}: ${p.count} plan revisions, mean ${p.count > 0 ? (p.sum / p.count).toFixed(2) : '-'} s`);
  } catch (err) { console.log(`# network programming latency: /metrics not read (${String(err)})`); }
  await w?.agent?.kill('SIGTERM');
  stopAllTraffic();
  w?.kube.close();
  // Whatever is left open must not keep the VM up after uvu's summary (unref: fires only then).
  setTimeout(() => {
    console.log(`# guest suite still alive 30 s after its tests (${process.getActiveResourcesInfo().join(', ')}): exiting`);
    process.exit(process.exitCode ?? 0);
  }, 30_000).unref();
});

scenario('the agent programs what the controller resolved: ipvsadm agrees, VIPs on lvs0, Programmed=True', async () => {
  const t0 = Date.now();
  await startAgentUntil('ipvsadm to show the three virtual services with their pods (DR/TUN at weight 1 once prepared)', () => {
    const t = ipvs();
    return JSON.stringify([dests(t, VIP.nat, PORT), dests(t, VIP.dr, PORT), dests(t, VIP.tun, PORT)]) === JSON.stringify([WANT.nat, WANT.dr, WANT.tun]);
  }, { timeoutMs: AGENT_START_MS + 120_000, everyMs: 1000, show: () => [dests(ipvs(), VIP.nat, PORT), dests(ipvs(), VIP.dr, PORT), dests(ipvs(), VIP.tun, PORT)] });
  console.log(`# agent start -> first output ${w.agent.firstOutputMs()} ms, kernel programmed ${Date.now() - t0} ms`);
  for (const vip of Object.values(VIP)) assert.is(service(ipvs(), vip, PORT)?.scheduler, 'rr', vip);
  assert.equal(addressesIn(undefined, 'lvs0').filter((a) => a.startsWith('198.51.100.')).sort(), Object.values(VIP).map((v) => `${v}/32`).sort());
  for (const name of ['web-nat', 'direct-dr', 'direct-tun']) {
    const vs = await waitProgrammed(w, name);
    assert.equal([vs.status!.programmedNodes, vs.status!.unprogrammedNodes], [1, []], `${name}: this node programmed it`);
    assert.is(vs.status!.plan?.generation, vs.metadata.generation);
    assert.equal(vs.status!.directors, [w.env.node]);
  }
  // The DR and TUN pods are prepared on this node, as its AgentReport says.
  const prepared = (await w.report())?.prepared ?? [];
  for (const [vip, fwd] of [[VIP.dr, 'DR'], [VIP.tun, 'TUN']] as const) {
    assert.equal(prepared.filter((p) => p.vip === vip && p.forwarding === fwd).map((p) => p.address).sort(), [ip('direct-1'), ip('direct-2')], `${fwd}: prepared`);
  }
  console.log(`# agent start -> all three Programmed=True: ${Date.now() - t0} ms`);
  // /metrics (the bundled agent's: it once died there, see dataplane/agent/metrics.ts promClient).
  assert.ok((await agentMetric('lvs_agent_syncs_total')).get('{read="full",result="ok"}')! >= 1, 'a full sync counted');
  const writes = (await agentMetric('lvs_agent_netlink_writes_total')).get('') ?? 0;
  const sent = (await agentMetric('lvs_agent_netlink_messages_total')).get('{direction="sent"}') ?? 0;
  assert.ok(writes > 0 && sent >= writes, `netlink counted: ${writes} writes, ${sent} messages sent`);
  console.log(`# /metrics: ${writes} netlink writes, ${sent} messages sent since the agent started`);
});

/** The agent's network-programming histogram: count and sum of seconds. */
async function programming(): Promise<{ count: number; sum: number }> {
  return {
    count: (await agentMetric('lvs_agent_network_programming_duration_seconds_count')).get('') ?? 0,
    sum: (await agentMetric('lvs_agent_network_programming_duration_seconds_sum')).get('') ?? 0,
  };
}

scenario('NAT: connections to the VIP are balanced over both pods, which see the client\'s own address', async () => {
  assert.equal(await tally(VIP.nat, 20), { 'web-1': 10, 'web-2': 10 });
  const id = await w.client.open('nat-probe', VIP.nat, PORT);
  assert.is(id.peer.split(':')[0], CLIENT_IP, 'no SNAT: the pod replies through the node (its gateway)');
  assert.match(id.local, /^10\.244\.0\.1[12]:8080$/, 'NAT rewrote VIP:80 to the pod\'s 8080');
  await w.client.close('nat-probe');
  // The kernel's counters on /metrics (dataplane/agent/ipvs-stats.ts: one dump per 10 s at most)
  // equal ipvsadm's once the traffic has stopped, under the service's VirtualServer.
  const labels = `{virtual_server="${NS}/web-nat",service="TCP/${VIP.nat}:${PORT}"`;
  const seen = async () => {
    const k = statsOf(ipvsStatsNow(), VIP.nat, PORT);
    const conns = (await agentMetric('lvs_ipvs_service_connections_total')).get(`${labels}}`);
    const pkts = await agentMetric('lvs_ipvs_service_packets_total');
    return { kernel: [k.conns, k.inPkts, k.outPkts], metrics: [conns, pkts.get(`${labels},direction="in"}`), pkts.get(`${labels},direction="out"}`)] };
  };
  const got = await until('/metrics to show ipvsadm\'s counters of web-nat\'s service', async () => { const x = await seen(); return JSON.stringify(x.kernel) === JSON.stringify(x.metrics) && x.kernel[0]! >= 21 ? x : undefined; }, { timeoutMs: 40_000, everyMs: 2000, show: seen });
  console.log(`# /metrics: web-nat's service ${got.metrics.join(' / ')} (connections / packets in / out), as ipvsadm --stats`);
});

/** A sysctl of the node (the VM's root namespace). */
function sysctl(key: string): string {
  return execFileSync('sysctl', ['-n', key], { encoding: 'utf8' }).trim();
}

/** Packets received on `dev` inside `ns` (ip -s). */
function rxPackets(ns: string, dev: string): number {
  const out = execFileSync('ip', ['-n', ns, '-s', '-j', 'link', 'show', dev], { encoding: 'utf8' });
  return (JSON.parse(out) as Array<{ stats64?: { rx?: { packets?: number } } }>)[0]?.stats64?.rx?.packets ?? 0;
}

/**
 * DR and TUN deliver the client's packet to the pod unchanged (destination the VIP; TUN inside an
 * IPIP packet decapsulated on tunl0), and the pod answers from the VIP. Director OutPkts is not
 * asserted: these pods live on the director node, which is their gateway, and the kernel's IPVS
 * counts the replies it forwards (seen with the stock ipvsadm alone, without the agent).
 */
async function directReturn(vip: string, dev: 'lo' | 'tunl0', label: string): Promise<void> {
  const pods = ['direct-1', 'direct-2'];
  for (const p of pods) {
    assert.ok(addressesIn(POD_NETS[p]!.ns, dev).includes(`${vip}/32`), `${p}: the agent put ${vip}/32 on ${dev} (has ${addressesIn(POD_NETS[p]!.ns, dev)})`);
  }
  // The pods' replies come from the VIP, local on this node: the agent made cni0 (the bridge their
  // veths are enslaved to) accept local sources, and only cni0.
  assert.is(sysctl(`net.ipv4.conf.${CNI_BRIDGE}.accept_local`), '1', 'the agent set accept_local on the pods\' bridge');
  assert.is(sysctl('net.ipv4.conf.all.accept_local'), '0', 'conf.all.accept_local stays 0');
  assert.is(sysctl('net.ipv4.conf.vclient.accept_local'), '0', 'the client-facing interface is untouched');
  const tunl0 = pods.map((p) => rxPackets(POD_NETS[p]!.ns, 'tunl0'));
  const before = statsOf(await settledStats(), vip, PORT);
  const r = await w.client.burst(vip, PORT, 10);
  const m = r.errors ? martians(vip) : '';
  assert.is(r.errors, 0, `${label}: ${r.errors} of 10 connections failed (${r.firstError})${m ? `; kernel: ${m}: the node dropped the pods' replies, whose source (the VIP) is local on the node (lvs0), arriving on cni0 (accept_local=${sysctl('net.ipv4.conf.cni0.accept_local')}, rp_filter=${sysctl('net.ipv4.conf.cni0.rp_filter')})` : ''}`);
  assert.equal(r.byId, { 'direct-1': 5, 'direct-2': 5 });
  const id = await w.client.open(`${label}-probe`, vip, PORT);
  assert.is(id.local, `${vip}:${PORT}`, 'the pod accepted the packet addressed to the VIP as its own');
  assert.is(id.peer.split(':')[0], CLIENT_IP);
  await w.client.close(`${label}-probe`);
  const after = statsOf(await settledStats(), vip, PORT);
  assert.is(after.conns - before.conns, 11);
  assert.ok(after.inPkts > before.inPkts);
  const tunnelled = pods.map((p, i) => rxPackets(POD_NETS[p]!.ns, 'tunl0') - tunl0[i]!);
  if (dev === 'tunl0') assert.ok(tunnelled.every((n) => n >= 5 * 3), `IPIP packets decapsulated on each pod's tunl0: ${tunnelled}`);
  else assert.equal(tunnelled, [0, 0], 'DR never tunnels');
  console.log(`# ${label}: director OutPkts +${after.outPkts - before.outPkts} (replies forwarded by the node, the pods' gateway)`);
}

scenario('DR: the agent prepared both pods (VIP on lo); they answer the client directly', () => directReturn(VIP.dr, 'lo', 'dr'));
scenario('TUN: the agent prepared both pods (VIP on tunl0); they decapsulate and answer directly', () => directReturn(VIP.tun, 'tunl0', 'tun'));

/** Dual-stack VirtualServers: an IPv4 and an IPv6 VIP each, over the same dual-stack pods. */
const DS = [
  { name: 'web-nat-ds', v4: '198.51.100.30', v6: '2001:db8:100::30', fwd: 'NAT', svc: 'web', pods: ['web-1', 'web-2'], port: 8080, kind: 'Masq' },
  { name: 'direct-dr-ds', v4: '198.51.100.31', v6: '2001:db8:100::31', fwd: 'DR', svc: 'direct', pods: ['direct-1', 'direct-2'], port: PORT, kind: 'Route' },
  { name: 'direct-tun-ds', v4: '198.51.100.32', v6: '2001:db8:100::32', fwd: 'TUN', svc: 'direct', pods: ['direct-1', 'direct-2'], port: PORT, kind: 'Tunnel' },
] as const;
type Ds = (typeof DS)[number];
/** How ipvsadm prints an IPv6 address before its port. */
const v6 = (a: string) => `[${a}]`;
/** What ipvsadm must show for each family of a dual-stack VirtualServer: that family's pod addresses only. */
const wantDs = (d: Ds) => ({
  v4: d.pods.map((p) => `${ip(p)}:${d.port} ${d.kind} 1`).sort(),
  v6: d.pods.map((p) => `${v6(POD_NETS[p]!.ip6!)}:${d.port} ${d.kind} 1`).sort(),
});
const seenDs = (d: Ds) => { const t = ipvs(); return { v4: dests(t, d.v4, PORT), v6: dests(t, v6(d.v6), PORT) }; };
/** `ip -j link` of dev in ns (undefined when it does not exist). */
function linkOf(ns: string, dev: string): { flags: string[]; ifalias?: string; stats64?: { rx?: { packets?: number } } } | undefined {
  const out = execFileSync('sh', ['-c', `ip -n ${ns} -s -j link show dev ${dev} 2>/dev/null; true`], { encoding: 'utf8' }).trim();
  return out ? (JSON.parse(out) as Array<{ flags: string[]; ifalias?: string; stats64?: { rx?: { packets?: number } } }>)[0] : undefined;
}
/** What a pod's preparation may change for IPv6: addresses on lo and ip6tnl0, ip6tnl0 up or not, lo's alias (the record). */
const podPrep = (pod: string) => {
  const ns = POD_NETS[pod]!.ns;
  const t = linkOf(ns, 'ip6tnl0');
  return { lo: addressesIn(ns, 'lo').sort(), ip6tnl0: addressesIn(ns, 'ip6tnl0').sort(), ip6tnl0Up: t ? t.flags.includes('UP') : 'absent', alias: linkOf(ns, 'lo')?.ifalias ?? '' };
};
const addrOf = (hostPort: string) => hostPort.slice(0, hostPort.lastIndexOf(':'));

scenario('dual-stack: NAT, DR and TUN VirtualServers with an IPv4 and an IPv6 VIP carry real IPv6 traffic (DR/TUN answered directly by prepared pods) and IPv4 traffic; deleted, every IPv6 trace goes', async () => {
  const { table, now } = steadyView();
  const pods = ['web-1', 'web-2', 'direct-1', 'direct-2'];
  const podsBefore = Object.fromEntries(pods.map((p) => [p, podPrep(p)]));
  const lvs0Before = addressesIn(undefined, 'lvs0').sort();
  const nftBefore = nftTables();
  assert.is(sysctl('net.ipv6.conf.all.forwarding'), '1', 'the node forwards IPv6 (node setup)');
  const t0 = Date.now();
  for (const d of DS) await w.kube.create(VIRTUAL_SERVERS, NS, virtualServer(d.name, [d.v4, d.v6], d.fwd, d.svc));
  await until('ipvsadm to show each dual-stack service with its family\'s pods (DR/TUN at weight 1 once prepared)', () => DS.every((d) => JSON.stringify(seenDs(d)) === JSON.stringify(wantDs(d))), { timeoutMs: 180_000, everyMs: 1000, show: () => DS.map(seenDs) });
  console.log(`# dual-stack: created -> kernel programmed (both families, DR/TUN prepared) ${Date.now() - t0} ms`);
  for (const d of DS) {
    const vs = await waitProgrammed(w, d.name);
    assert.equal(vs.status!.services, [`TCP/${d.v4}:${PORT}`, `TCP/${v6(d.v6)}:${PORT}`], `${d.name}: won both families' services`);
    assert.is(service(ipvs(), v6(d.v6), PORT)?.scheduler, 'rr');
  }
  console.log(`# dual-stack: created -> all three Programmed=True ${Date.now() - t0} ms`);
  assert.equal(addressesIn(undefined, 'lvs0').filter((a) => a.startsWith('2001:db8:100:')).sort(), DS.map((d) => `${d.v6}/128`).sort(), 'IPv6 VIPs on lvs0');
  // The agent prepared the pods for the IPv6 VIPs: their IPv6 addresses are in its report, the
  // DR VIP is on lo, the TUN VIP on ip6tnl0 (up: the ip6ip6 fallback device decapsulates only then).
  const prepared = (await w.report())?.prepared ?? [];
  for (const d of DS.filter((x) => x.fwd !== 'NAT')) {
    assert.equal(prepared.filter((p) => p.vip === d.v6 && p.forwarding === d.fwd).map((p) => p.address).sort(), d.pods.map((p) => POD_NETS[p]!.ip6!).sort(), `${d.fwd}: IPv6 pods prepared`);
  }
  for (const p of ['direct-1', 'direct-2']) {
    const s = podPrep(p);
    assert.ok(s.lo.includes(`${DS[1].v6}/128`), `${p}: ${DS[1].v6}/128 on lo (has ${s.lo})`);
    assert.ok(s.ip6tnl0.includes(`${DS[2].v6}/128`), `${p}: ${DS[2].v6}/128 on ip6tnl0 (has ${s.ip6tnl0})`);
    assert.is(s.ip6tnl0Up, true, `${p}: ip6tnl0 up`);
    assert.not.ok(addressesIn(POD_NETS[p]!.ns, 'eth0').some((a) => a.startsWith('2001:db8:100:')), `${p}: no VIP on eth0`);
  }

  // IPv6 NAT: balanced over both pods, which see the client's own address; replies pass the director.
  const nat = DS[0];
  const natBefore = statsOf(await settledStats(), v6(nat.v6), PORT);
  assert.equal(await tally(nat.v6, 20), { 'web-1': 10, 'web-2': 10 }, 'IPv6 NAT');
  const natId = await w.client.open('nat6-probe', nat.v6, PORT);
  assert.is(addrOf(natId.peer), CLIENT_IP6, 'no SNAT: the pod sees the client\'s IPv6 address');
  assert.ok(nat.pods.some((p) => natId.local === `${POD_NETS[p]!.ip6}:8080`), `NAT rewrote [VIP]:80 to a pod's [IPv6]:8080: ${natId.local}`);
  await w.client.close('nat6-probe');
  const natAfter = statsOf(await settledStats(), v6(nat.v6), PORT);
  assert.is(natAfter.conns - natBefore.conns, 21);
  assert.ok(natAfter.outPkts > natBefore.outPkts, 'NAT replies pass the director');
  console.log(`# dual-stack NAT ${v6(nat.v6)}: +${natAfter.conns - natBefore.conns} conns, InPkts +${natAfter.inPkts - natBefore.inPkts}, OutPkts +${natAfter.outPkts - natBefore.outPkts}`);

  // IPv6 DR and TUN: the pods answer the client themselves, from the VIP (the director does not
  // rewrite their replies; the probe's local address is the VIP).
  for (const d of [DS[1], DS[2]]) {
    const rx = d.pods.map((p) => linkOf(POD_NETS[p]!.ns, 'ip6tnl0')?.stats64?.rx?.packets ?? 0);
    const before = statsOf(await settledStats(), v6(d.v6), PORT);
    assert.equal(await tally(d.v6, 10), { 'direct-1': 5, 'direct-2': 5 }, `IPv6 ${d.fwd}`);
    const id = await w.client.open(`${d.fwd}6-probe`, d.v6, PORT);
    assert.is(id.local, `${d.v6}:${PORT}`, 'the pod accepted the packet addressed to the IPv6 VIP as its own');
    assert.is(addrOf(id.peer), CLIENT_IP6);
    await w.client.close(`${d.fwd}6-probe`);
    const after = statsOf(await settledStats(), v6(d.v6), PORT);
    const tunnelled = d.pods.map((p, i) => (linkOf(POD_NETS[p]!.ns, 'ip6tnl0')?.stats64?.rx?.packets ?? 0) - rx[i]!);
    console.log(`# dual-stack ${d.fwd} ${v6(d.v6)}: +${after.conns - before.conns} conns, InPkts +${after.inPkts - before.inPkts}, OutPkts +${after.outPkts - before.outPkts}; ip6tnl0 rx per pod +${tunnelled.join(', +')}`);
    assert.is(after.conns - before.conns, 11);
    assert.ok(after.inPkts > before.inPkts, 'the client\'s packets pass the director');
    // OutPkts is printed, not asserted (as for IPv4, see directReturn): the node is the pods'
    // gateway, so their replies (from the VIP, as the probe's local address shows) are forwarded
    // through it and IPVS counts them there without rewriting them (measured 2026-12-04: DR +40 to
    // +43 for 11 connections; with the client beside the real servers it stays 0: the kernel tier).
    if (d.fwd === 'TUN') assert.ok(tunnelled.every((n) => n >= 5 * 3), `ip6ip6 packets decapsulated on each pod's ip6tnl0: ${tunnelled}`);
    else assert.equal(tunnelled, [0, 0], 'DR never tunnels');
  }

  // IPv4 on the same VirtualServers.
  assert.equal(await tally(nat.v4, 20), { 'web-1': 10, 'web-2': 10 }, 'IPv4 NAT');
  for (const d of [DS[1], DS[2]]) assert.equal(await tally(d.v4, 10), { 'direct-1': 5, 'direct-2': 5 }, `IPv4 ${d.fwd}`);

  // Deleted: both families' services, the VIPs on lvs0 (and the ip6 NDP table), the pods' IPv6
  // VIPs and ip6tnl0's state go; everything else is as before.
  const t1 = Date.now();
  for (const d of DS) await w.kube.request('DELETE', resourcePath(VIRTUAL_SERVERS, NS, d.name));
  const ours = (svc: { address: string }) => DS.some((d) => svc.address.startsWith(`${d.v4}:`) || svc.address.startsWith(`${v6(d.v6)}:`));
  await until('the dual-stack services gone from the kernel', () => !ipvs().some(ours), { timeoutMs: 240_000, everyMs: 2000, show: () => ipvs().filter(ours) });
  console.log(`# dual-stack: deleted -> services gone from the kernel ${Date.now() - t1} ms`);
  await until('the pods\' IPv6 preparation undone', () => pods.every((p) => JSON.stringify(podPrep(p)) === JSON.stringify({ ...podsBefore[p], ip6tnl0Up: podsBefore[p]!.ip6tnl0Up === 'absent' ? false : podsBefore[p]!.ip6tnl0Up })), { timeoutMs: 120_000, everyMs: 2000, show: () => pods.map(podPrep) });
  await until('lvs0 as before', () => JSON.stringify(addressesIn(undefined, 'lvs0').sort()) === JSON.stringify(lvs0Before), { timeoutMs: 60_000, show: () => addressesIn(undefined, 'lvs0') });
  console.log(`# dual-stack: deleted -> pods and lvs0 as before ${Date.now() - t1} ms; pods now ${JSON.stringify(podPrep('direct-1'))}`);
  assert.equal(nftTables(), nftBefore, 'nft tables as before (no ip6 lvs_operator table left)');
  assert.equal(now(), table, 'the other VirtualServers\' rules are untouched');
  const stale = async () => ((await w.report())?.prepared ?? []).filter((p) => p.address.includes(':') || DS.some((d) => d.v4 === p.vip));
  await until('the node\'s report to list no preparation for the deleted VIPs', async () => (await stale()).length === 0, { timeoutMs: 60_000, show: stale });
});

scenario('scale up: a third pod becomes ready; its endpoint reaches the kernel and takes traffic', async () => {
  const before = await programming();
  const t0 = Date.now();
  await w.web.addPod('web-3', ip('web-3'), POD_NETS['web-3']!.ip6);
  await w.web.syncSlice();
  await until('web-3 in the NAT service', () => dests(ipvs(), VIP.nat, PORT).includes('10.244.0.13:8080 Masq 1'), { timeoutMs: 120_000, show: () => dests(ipvs(), VIP.nat, PORT) });
  console.log(`# EndpointSlice write -> kernel (scale up): ${Date.now() - t0} ms`);
  // The agent measured it: from the EndpointSlice's trigger time (whole seconds, as Kubernetes
  // writes it) to the end of its sync.
  const after = await until('the change in lvs_agent_network_programming_duration_seconds', async () => {
    const p = await programming();
    return p.count > before.count ? p : undefined;
  }, { timeoutMs: 15_000 });
  // The figure crosses two clocks (the guest's trigger time or the host controller's resolve time,
  // the guest agent's now): print what it was made of.
  const uid = (await w.vs('web-nat')).metadata.uid!;
  const stamps = (await w.kube.request<{ items: KubeObject[] }>('GET', planSlicesPath(uid))).items.map((p) => p.metadata.annotations?.[CHANGE_TIME_ANNOTATION]);
  const clock = await w.kube.serverClock();
  console.log(`# network programming latency (scale up, /metrics): ${after.count - before.count} plan revision(s), mean ${((after.sum - before.sum) / (after.count - before.count)).toFixed(2)} s; web-nat's PlanSlice change time ${stamps.join(', ')}, guest clock now ${new Date().toISOString()}; guest clock minus the apiserver's (its Date header, whole seconds): ${((clock.local - clock.server) / 1000).toFixed(1)} s`);
  assert.equal(dests(ipvs(), VIP.nat, PORT), [...WANT.nat, '10.244.0.13:8080 Masq 1']);
  assert.equal(await tally(VIP.nat, 30), { 'web-1': 10, 'web-2': 10, 'web-3': 10 });
});

scenario('health check (cluster mode): a web pod whose process died while its endpoint stays Ready goes out of rotation on the director, no connection fails, status, report and Events say so; restarted, it is back', () => healthCheckedService(w, tally));

scenario('scale down: a terminating, then removed pod drains: its open connection completes, new ones avoid it', async () => {
  const held = await w.client.open('held', VIP.nat, PORT);
  const pod = held.id;
  const dest = `${ip(pod)}:8080`;
  drained = { pod, dest };
  const t0 = Date.now();
  await w.web.terminatePod(pod, true);
  await w.web.syncSlice();
  await until(`${dest} at weight 0 (terminating: serving, not ready)`, () => dests(ipvs(), VIP.nat, PORT).includes(`${dest} Masq 0`), { timeoutMs: 120_000, show: () => dests(ipvs(), VIP.nat, PORT) });
  console.log(`# EndpointSlice write -> weight 0 (terminating): ${Date.now() - t0} ms`);
  const during = await tally(VIP.nat, 20);
  assert.is(during[pod], undefined, `no new connection to the terminating ${pod}: ${JSON.stringify(during)}`);
  assert.equal(await w.client.send('held', 'still there?'), { id: pod, echo: 'still there?' });

  await w.web.removePod(pod);
  await w.web.syncSlice();
  await until(`the controller to drop ${pod} from the published plan`, async () => !(await w.plan('web-nat')).services.some((s) => s.realServers.some((r) => r.address === ip(pod))), { timeoutMs: 60_000 });
  await sleep(5000); // the agent's next sync has seen the removal by now
  const d = service(ipvs(), VIP.nat, PORT)!.dests.find((x) => x.address === dest);
  assert.ok(d, `${dest} must stay in the kernel while its connection is open (drain, not delete)`);
  assert.is(d!.weight, 0);
  assert.ok(d!.activeConn >= 1, `active connections on ${dest}: ${d!.activeConn}`);
  const after = await tally(VIP.nat, 20);
  assert.is(after[pod], undefined, JSON.stringify(after));
  assert.equal(await w.client.send('held', 'done'), { id: pod, echo: 'done' }, 'the established connection survived the removal');
  await w.client.close('held');
});

/** What the agent logs when it changes the kernel: one line per IPVS operation (op = its kind). */
const KERNEL_OPS = new Set(['addService', 'updateService', 'deleteService', 'addDestination', 'updateDestination', 'drainDestination', 'deleteDestination']);
/** ... and its other changes (the per-sync "kernel synced" summary only repeats the operations). */
const CHANGES = new Set(['VIP bound', 'VIP unbound', 'director steps', 'realserver steps', 'return path steps']);

scenario('agent SIGKILLed and restarted: traffic flows throughout; the new agent changes nothing', async () => {
  // A destination already draining may finish its drain meanwhile (see steadyView); everything
  // else must stay exactly as it is.
  const { table, now: steady, pendingDests } = steadyView();
  const rvs = await Promise.all(['web-nat', 'direct-dr', 'direct-tun'].map(async (n) => (await w.vs(n)).metadata.resourceVersion));
  const before = await settledStats();
  const old = w.agent;
  await old.kill('SIGKILL');
  const down = await Promise.all([tally(VIP.nat, 8), tally(VIP.dr, 6), tally(VIP.tun, 6)]);
  assert.ok(down.every((t) => Object.keys(t).length >= 2), `served with no agent running: ${JSON.stringify(down)}`);
  const report0 = await w.kube.get<KubeObject>(AGENT_REPORTS, undefined, w.env.node);
  const t0 = Date.now();
  const firstSync = () => w.agent.lines.some((l) => l.json?.op === 'firstSync');
  const agent = await startAgentUntil('the new agent\'s first sync', firstSync, { timeoutMs: AGENT_START_MS, show: () => w.agent.tail(5) });
  const first = agent.lines.find((l) => l.json?.op === 'firstSync')!.json!;
  // drainPending: the scale-down scenario's destination may still be draining (steadyView).
  assert.ok(['ok', 'drainPending'].includes(String(first.result)) && first.ops === 0, `first sync after the restart: ${JSON.stringify(first)}`);
  console.log(`# restart -> first output ${agent.firstOutputMs()} ms, first sync done ${Date.now() - t0} ms`);
  // Keep traffic and the table under watch while the new agent settles (real-server pass, reports).
  for (let i = 0; i < 5; i++) {
    const during = await Promise.all([tally(VIP.nat, 4), tally(VIP.dr, 4), tally(VIP.tun, 4)]);
    assert.ok(during.every((t) => Object.keys(t).length >= 2), `round ${i}: ${JSON.stringify(during)}`);
    assert.equal(steady(), table, `round ${i}: the kernel rules changed after the restart`);
    await sleep(1000);
  }
  const finishedDrain = (l: { json?: Record<string, unknown> }) => l.json?.op === 'deleteDestination' && pendingDests.has(String(l.json.dest));
  const ops = agent.lines.filter((l) => !finishedDrain(l) && (CHANGES.has(String(l.json?.msg)) || KERNEL_OPS.has(String(l.json?.op))));
  assert.equal(ops.map((l) => l.text), [], 'the restarted agent performed kernel operations');
  const after = await settledStats();
  for (const svc of before) {
    for (const dst of svc.dests) {
      const now = after.find((s) => s.address === svc.address)?.dests.find((x) => x.address === dst.address);
      if (now) assert.ok(now.conns >= dst.conns, `${svc.address} -> ${dst.address}: counters reset (${dst.conns} -> ${now.conns}): the destination was recreated`);
    }
  }
  const rvsAfter = await Promise.all(['web-nat', 'direct-dr', 'direct-tun'].map(async (n) => (await w.vs(n)).metadata.resourceVersion));
  assert.equal(rvsAfter, rvs, 'no status write after the restart');
  const report1 = await w.kube.get<KubeObject>(AGENT_REPORTS, undefined, w.env.node);
  assert.is(report1.metadata.resourceVersion, report0.metadata.resourceVersion, 'the node\'s AgentReport was rewritten after the restart');
});

async function control(path: string, method = 'GET'): Promise<Record<string, unknown>> {
  const res = await fetch(`${w.env.control}${path}`, { method });
  const body = await res.json() as Record<string, unknown>;
  if (!res.ok) throw new Error(`control ${method} ${path}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

scenario('apiserver stopped for 30 s: traffic keeps flowing; a change right after it returns reaches the kernel', async () => {
  await control('/apiserver/outage?seconds=30', 'POST');
  const downAt = Date.now();
  try {
    await until('the apiserver to stop answering the guest', async () => {
      try { await w.vs('web-nat'); return false; } catch (err) { return err instanceof ApiError && err.status === 0; }
    }, { timeoutMs: 10_000 });
    let rounds = 0;
    while ((await control('/apiserver')).state === 'down') {
      const t = await Promise.all([tally(VIP.nat, 4), tally(VIP.dr, 4), tally(VIP.tun, 4)]);
      assert.ok(t.every((x) => Object.keys(x).length >= 2), `during the outage: ${JSON.stringify(t)}`);
      rounds += 1;
      await sleep(3000);
    }
    assert.ok(rounds >= 3, `traffic rounds during the outage: ${rounds}`);
    assert.is(w.agent.child.exitCode, null, 'the agent survived the outage');
    console.log(`# apiserver down for ${Date.now() - downAt} ms (as seen by the guest); ${rounds} traffic rounds to all three VIPs, all served`);
  } finally {
    // Later scenarios need the apiserver, whatever happened here.
    await until('the apiserver back', async () => (await control('/apiserver')).state === 'up', { timeoutMs: 180_000 });
  }
  // The change: one more web pod starts terminating (scale down): its destination goes to weight 0.
  const pod = ['web-3', 'web-2', 'web-1'].find((p) => p !== drained?.pod)!;
  const t0 = Date.now();
  await w.web.terminatePod(pod, true);
  await w.web.syncSlice();
  await until(`${pod} at weight 0 in the NAT service`, () => dests(ipvs(), VIP.nat, PORT).includes(`${ip(pod)}:8080 Masq 0`), { timeoutMs: 180_000, everyMs: 1000, show: () => dests(ipvs(), VIP.nat, PORT) });
  console.log(`# after the outage: EndpointSlice write -> kernel: ${Date.now() - t0} ms`);
  const got = await tally(VIP.nat, 12);
  assert.is(got[pod], undefined, JSON.stringify(got));
  await waitProgrammed(w, 'web-nat');
});

scenario('a second VirtualServer claiming the same VIP:port gets Conflict; the first keeps its rules and traffic', async () => {
  const view = steadyView();
  const natRules = () => view.now().filter((l) => l.includes(`${VIP.nat}:${PORT}`));
  const table = natRules();
  await w.kube.create(VIRTUAL_SERVERS, NS, virtualServer('web-nat-copy', VIP.nat, 'NAT', 'direct'));
  const copy = await until('Conflict=True on web-nat-copy', async () => {
    const vs = await w.vs('web-nat-copy');
    return cond(vs, 'Conflict')?.status === 'True' ? vs : undefined;
  }, { timeoutMs: 60_000 });
  assert.is(cond(copy, 'Conflict')!.reason, 'AddressInUse');
  assert.match(cond(copy, 'Conflict')!.message, `claimed by VirtualServer ${NS}/web-nat`);
  assert.equal(copy.status?.services ?? [], [], 'the later VirtualServer wins no virtual service');
  const first = await w.vs('web-nat');
  assert.is(cond(first, 'Conflict')?.status, 'False');
  assert.is(cond(first, 'Programmed')?.status, 'True');
  await sleep(5000);
  assert.equal(natRules(), table, 'the kernel rules of the VIP are untouched');
  const got = await tally(VIP.nat, 9);
  assert.ok(Object.keys(got).every((id) => id.startsWith('web-')), JSON.stringify(got));
});

scenario('VirtualServers on the node\'s own address and outside the pool are refused by the controller; no address and no rule reaches the node', async () => {
  const { table, now } = steadyView();
  const lvs0 = addressesIn(undefined, 'lvs0').sort();
  await w.kube.create(VIRTUAL_SERVERS, NS, virtualServer('takes-node', w.env.nodeIP, 'NAT', 'web'));
  await w.kube.create(VIRTUAL_SERVERS, NS, virtualServer('not-granted', '203.0.113.77', 'NAT', 'web'));
  for (const [name, reason, field] of [['takes-node', 'AddressReserved', 'spec.addresses[0]'], ['not-granted', 'AddressNotAllowed', 'spec.addresses[0]']] as const) {
    const vs = await until(`${name}: Ready=False ${reason}`, async () => {
      const v = await w.vs(name);
      return cond(v, 'Ready')?.reason === reason ? v : undefined;
    }, { timeoutMs: 60_000 });
    assert.match(cond(vs, 'Ready')!.message, field);
    assert.equal(vs.status?.services ?? [], [], `${name} wins no virtual service`);
  }
  await sleep(5000);
  assert.equal(now(), table, 'ipvsadm unchanged');
  assert.equal(addressesIn(undefined, 'lvs0').sort(), lvs0, 'no address bound on lvs0');
  for (const name of ['takes-node', 'not-granted']) await w.kube.request('DELETE', resourcePath(VIRTUAL_SERVERS, NS, name));
});

scenario('an invalid VirtualServer is rejected by the apiserver, naming the field; nothing changes in the kernel', async () => {
  const { table, now } = steadyView();
  const bad = virtualServer('bad-dr', '198.51.100.13', 'DR', 'direct');
  (bad.spec as { ports: Array<Record<string, unknown>> }).ports[0]!.targetPort = 8080;
  const err = await w.kube.create(VIRTUAL_SERVERS, NS, bad).then(() => undefined, (e: unknown) => e);
  assert.instance(err, ApiError, 'the create must fail');
  assert.is((err as ApiError).status, 422);
  assert.match((err as ApiError).message, 'spec.ports');
  assert.match((err as ApiError).message, 'targetPort is only valid with forwarding NAT');
  assert.is(await w.kube.getOrUndefined(VIRTUAL_SERVERS, NS, 'bad-dr'), undefined);
  await sleep(3000);
  assert.equal(now(), table);
});

scenario('the drained destination is deleted once its connection has ended (TIME_WAIT included)', async () => {
  assert.ok(drained, 'the scale-down scenario ran');
  const { pod, dest } = drained!;
  const t0 = Date.now();
  await until(`${dest} gone from the NAT service`, () => !service(ipvs(), VIP.nat, PORT)!.dests.some((d) => d.address === dest), { timeoutMs: 240_000, everyMs: 2000, show: () => service(ipvs(), VIP.nat, PORT) });
  console.log(`# drained destination deleted ${Date.now() - t0} ms after this check began`);
  w.servers.get(pod)?.stop();
  removePods([POD_NETS[pod]!]);
  const errors = w.agent.lines.filter((l) => Number(l.json?.level ?? 0) >= 50);
  console.log(`# agent error lines (run ${w.agent.run}): ${errors.length}${errors.length ? `\n${errors.map((l) => l.text).join('\n')}` : ''}`);
});

scenario('a PlanSlice edited by hand (a field this agent does not know) is restored by the controller; the kernel never changes', async () => {
  // The controller owns the slices and compares all of their content, so an edit is undone at
  // once; an agent that met the field meanwhile would keep its last good plan (frozen: unit tier,
  // test/unit/cluster-agent.test.ts). Either way the kernel's rules must not move.
  const { table, now } = steadyView();
  const uid = (await w.vs('direct-dr')).metadata.uid!;
  type Slice = KubeObject & { services: Array<Record<string, unknown>> };
  const path = `/apis/lvs.dev/v1alpha1/planslices?labelSelector=${encodeURIComponent(`lvs.dev/owner-uid=${uid}`)}`;
  const slice = (await w.kube.request<{ items: Slice[] }>('GET', path)).items[0]!;
  slice.services[0]!.sessionAffinityV2 = { mode: 'strict' }; // what a newer controller might write
  await w.kube.replace(PLAN_SLICES, undefined, { ...slice, apiVersion: 'lvs.dev/v1alpha1', kind: 'PlanSlice' } as KubeObject);
  await until('the controller restores the slice', async () => {
    const now = (await w.kube.request<{ items: Slice[] }>('GET', path)).items[0];
    return now && now.metadata.resourceVersion !== slice.metadata.resourceVersion && !('sessionAffinityV2' in now.services[0]!) ? true : undefined;
  }, { timeoutMs: 60_000, everyMs: 500 });
  await waitProgrammed(w, 'direct-dr', 120_000);
  const got = await tally(VIP.dr, 6);
  assert.is(Object.values(got).reduce((a, b) => a + b, 0), 6);
  assert.equal(now(), table, 'the kernel rules changed');
});

scenario('a failing director step is Programmed=False naming node and step; the kernel keeps serving; repaired, True again', async () => {
  // nft made to fail (a bind mount of /bin/false over it): every full sync re-checks the director's
  // nft tables, so the next one fails at that step. Nothing programmed may change meanwhile.
  const { table, now } = steadyView();
  const nft = execFileSync('sh', ['-c', 'command -v nft'], { encoding: 'utf8' }).trim();
  execFileSync('mount', ['--bind', '/bin/false', nft]);
  try {
    const failed = await until('Programmed=False on web-nat naming the node and the step', async () => {
      const c = cond(await w.vs('web-nat'), 'Programmed');
      return c?.status === 'False' ? c : undefined;
    }, { timeoutMs: 120_000, everyMs: 2000, show: async () => (await w.vs('web-nat')).status });
    assert.is(failed.reason, 'ProgrammingFailed');
    assert.match(failed.message, `node ${w.env.node}: director setup (lvs0, sysctls, nft) failed`);
    // tally() fails on any failed connection: all six are served by the pods in rotation now.
    const got = await tally(VIP.nat, 6);
    assert.is(Object.values(got).reduce((a, b) => a + b, 0), 6, `still served while failing: ${JSON.stringify(got)}`);
    assert.equal(now(), table, 'the kernel rules changed while a step failed');
  } finally {
    // Lazy: the agent's retried sync may be running the bind-mounted /bin/false at this instant
    // (an exec takes long under TCG), and a plain umount then fails "target is busy", leaving nft
    // broken for every later scenario (seen in a CI run on 2026-12-04). New execs get the real nft.
    execFileSync('umount', ['--lazy', nft]);
  }
  await waitProgrammed(w, 'web-nat', 150_000);
});

/** The id of the pod that answers a connection from the node's own namespace (its first line). */
function podAt(address: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: address, port, timeout: 10_000 });
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) { sock.destroy(); resolve((JSON.parse(buf.slice(0, nl)) as { id: string }).id); }
    });
    sock.on('timeout', () => { sock.destroy(); reject(new Error(`${address}:${port}: no answer in 10 s`)); });
    sock.on('error', reject);
  });
}

/**
 * A LoadBalancer Service (class lvs.dev/ipvs) while kube-proxy runs in `mode`: the controller
 * allocates an address from the shop pool (autoAssign) and publishes it with ipMode Proxy;
 * kube-proxy programs the ClusterIP but not that address (nftables: no element in its table; ipvs:
 * not on kube-ipvs0, not in its KUBE-LOAD-BALANCER ipset, no IPVS service of its own on it); the
 * client outside and the node itself reach the address through IPVS (the director's counters grow
 * by exactly the connections made), the ClusterIP through kube-proxy; deleting the Service releases
 * the address and its IPVS service (draining: returns the address).
 */
async function loadBalancerBesideKubeProxy(kp: KubeProxyProc, mode: 'nftables' | 'ipvs', name: string): Promise<string> {
  const lb = new Workload(w.kube, { ns: NS, node: w.env.node, hostIP: w.env.nodeIP, name, ports: [{ name: 'http', port: PORT, targetPort: 8080 }] });
  await lb.createService({ type: 'LoadBalancer', loadBalancerClass: 'lvs.dev/ipvs' });
  // Two web pods still running: the scale-down scenario removed the one its held connection hit
  // (web-1, web-2 or web-3, as the round robin fell), together with its network namespace.
  const from = ['web-1', 'web-2', 'web-3'].filter((p) => p !== drained?.pod).slice(0, 2);
  for (const [i, pod] of from.entries()) await lb.addPod(`${name}-${i + 1}`, ip(pod));
  await lb.syncSlice();
  type Svc = KubeObject & { spec: { clusterIP: string }; status?: { loadBalancer?: { ingress?: Array<{ ip: string; ipMode?: string }> } } };
  const ingress = await until(`${name}: status.loadBalancer.ingress`, async () => (await w.kube.get<Svc>(SERVICES, NS, name)).status?.loadBalancer?.ingress?.[0], { timeoutMs: 120_000 });
  const tIngress = Date.now();
  assert.is(ingress.ipMode, 'Proxy', 'ipMode Proxy: kube-proxy must not take the address');
  assert.match(ingress.ip, /^198\.51\.100\./, 'allocated from the shop pool');
  const lbIp = ingress.ip;
  await until(`IPVS service ${lbIp}:${PORT} with both pods`, () => dests(ipvs(), lbIp, PORT).length === 2 || undefined, { timeoutMs: 60_000 });
  // kube-proxy has seen the Service with its ingress (a sync after the status was written).
  await kp.waitSynced(tIngress, 120_000);
  const before = statsOf(await settledStats(), lbIp, PORT).conns;
  const outside = await tally(lbIp, 6);
  assert.ok(Object.keys(outside).every((id) => id.startsWith('web-')), `the client through ${lbIp}: ${JSON.stringify(outside)}`);
  const inside: string[] = [];
  for (let i = 0; i < 4; i++) inside.push(await podAt(lbIp, PORT));
  assert.ok(inside.every((id) => id.startsWith('web-')), `the node itself through ${lbIp}: ${inside.join(', ')}`);
  const after = statsOf(await settledStats(), lbIp, PORT).conns;
  assert.is(after - before, 10, `IPVS counted ${after - before} new connections on ${lbIp}:${PORT}, want 10 (6 from the client, 4 from the node)`);
  const svc = await w.kube.get<Svc>(SERVICES, NS, name);
  if (mode === 'ipvs') {
    // A sync after the ingress does not mean kube-proxy had the Service's EndpointSlice by then
    // (separate watches, slow under TCG): seen on 2026-12-04, its IPVS service for the ClusterIP
    // still had no destination (ECONNREFUSED). Wait for the rule itself.
    const t = Date.now();
    await until(`kube-proxy's IPVS service ${svc.spec.clusterIP}:${PORT} with both endpoints`, () => dests(ipvs(), svc.spec.clusterIP, PORT).length === 2 || undefined, { timeoutMs: 120_000, everyMs: 1000, show: () => dests(ipvs(), svc.spec.clusterIP, PORT) });
    console.log(`# LoadBalancer ${name} (ipvs): kube-proxy's ClusterIP service had its endpoints ${Date.now() - t} ms after the checks through IPVS`);
  }
  assert.ok((await podAt(svc.spec.clusterIP, PORT)).startsWith('web-'), 'the ClusterIP of the LoadBalancer Service through kube-proxy');
  if (mode === 'nftables') {
    const kpTable = execFileSync('nft', ['list', 'table', 'ip', 'kube-proxy'], { encoding: 'utf8' });
    assert.ok(kpTable.includes(svc.spec.clusterIP), 'kube-proxy programs the ClusterIP');
    assert.not.ok(kpTable.includes(lbIp), `kube-proxy programs nothing for ${lbIp} (ipMode Proxy)`);
  } else {
    assert.ok(service(ipvs(), svc.spec.clusterIP, PORT), `kube-proxy's IPVS service for the ClusterIP ${svc.spec.clusterIP}:${PORT}`);
    assert.ok(addressesIn(undefined, KUBE_IPVS0).includes(`${svc.spec.clusterIP}/32`), `the ClusterIP on ${KUBE_IPVS0}`);
    assert.not.ok(addressesIn(undefined, KUBE_IPVS0).some((a) => a.startsWith(`${lbIp}/`)), `${lbIp} is not on ${KUBE_IPVS0} (ipMode Proxy)`);
    const lbSet = execFileSync('ipset', ['list', 'KUBE-LOAD-BALANCER'], { encoding: 'utf8' });
    assert.not.ok(lbSet.includes(lbIp), `kube-proxy's KUBE-LOAD-BALANCER ipset lists no ${lbIp}: ${lbSet}`);
    // kube-proxy created no IPVS service on the address: the only one there is the agent's :80,
    // with exactly the plan's destinations (kube-proxy's would be rr over its own endpoint list,
    // or a NodePort on the address).
    assert.equal(ipvs().filter((x) => x.address.startsWith(`${lbIp}:`)).map((x) => x.address), [`${lbIp}:${PORT}`], `IPVS services on ${lbIp}`);
    assert.equal(dests(ipvs(), lbIp, PORT).map((d) => d.split(' ').slice(0, 2).join(' ')), from.map((p) => `${ip(p)}:8080 Masq`).sort(), `${lbIp}:${PORT}: the agent's destinations`);
  }
  console.log(`# LoadBalancer ${name} (${mode}): ${lbIp} (ipMode Proxy) served by IPVS (+${after - before} connections), ClusterIP ${svc.spec.clusterIP} by kube-proxy`);
  await w.kube.request('DELETE', resourcePath(SERVICES, NS, name));
  await until(`lb-${name} deleted with its Service`, async () => (await w.kube.getOrUndefined(VIRTUAL_SERVERS, NS, `lb-${name}`)) === undefined || undefined, { timeoutMs: 60_000 });
  // Released: the service goes, its TCP destinations drained first (weight 0 until idle).
  await until(`${lbIp}:${PORT} released`, () => dests(ipvs(), lbIp, PORT).every((d) => d.endsWith(' 0')) || undefined, { timeoutMs: 120_000 });
  return lbIp;
}

scenario('a real kube-proxy (nftables) beside the agent serves the ClusterIP of web; the agent\'s IPVS rules, VIPs and nft tables stay as they were', async () => {
  const need = (k: string) => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set (the host test passes it)`); return v; };
  const { table, now } = steadyView();
  const nftBefore = ourNftRules();
  const vips = addressesIn(undefined, 'lvs0');
  const clusterIp = (await w.kube.get<KubeObject & { spec: { clusterIP: string } }>(SERVICES, NS, 'web')).spec.clusterIP;
  // A node reaches ClusterIPs through a route covering the service CIDR (usually its default
  // route; kube-proxy DNATs after the routing decision): the VM's node has no default route.
  execFileSync('ip', ['route', 'replace', '10.96.0.0/24', 'dev', 'eth0']);
  const t0 = Date.now();
  const kp = startKubeProxy({
    binary: need(KUBE_PROXY_BINARY_ENV), kubeconfig: need('LVS_SYSTEM_KUBE_PROXY_KUBECONFIG'), node: w.env.node,
    mode: 'nftables', clusterCidr: '10.244.0.0/16',
    // A modprobe that finds no module tree: when `modprobe -va ip_vs` succeeds, kube-proxy in
    // nftables mode flushes the whole IPVS table as it starts (lab/KUBE-PROXY.md).
    path: '/usr/sbin:/usr/bin:/sbin:/bin',
  });
  try {
    await kp.waitSynced(t0, 300_000);
    console.log(`# kube-proxy: first sync ${Date.now() - t0} ms after its start`);
    const answered: string[] = [];
    for (let i = 0; i < 6; i++) answered.push(await podAt(clusterIp, PORT));
    assert.ok(answered.every((id) => id.startsWith('web-')), `the ClusterIP ${clusterIp} was answered by ${answered.join(', ')}`);
    console.log(`# kube-proxy: ClusterIP ${clusterIp}:${PORT} answered by ${answered.join(', ')}`);
    assert.equal(now(), table, 'the IPVS rules changed after kube-proxy started');
    assert.equal(ourNftRules(), nftBefore, 'the rules of our nft tables changed');
    assert.equal(addressesIn(undefined, 'lvs0'), vips, 'the VIPs on lvs0 changed');
    const got = await tally(VIP.nat, 4);
    assert.is(Object.values(got).reduce((a, b) => a + b, 0), 4, `the NAT VIP beside kube-proxy: ${JSON.stringify(got)}`);
    await loadBalancerBesideKubeProxy(kp, 'nftables', 'shop-lb');
  } catch (err) {
    console.log(`# kube-proxy's last lines:\n${kp.tail(30)}`);
    throw err;
  } finally {
    await kp.kill();
    // kube-proxy leaves its tables when it stops: take them away so the scenarios after this one
    // meet the node as it was.
    execFileSync('sh', ['-c', 'nft delete table ip kube-proxy; nft delete table ip6 kube-proxy; ip route del 10.96.0.0/24; true']);
  }
});

/** kube-proxy's dummy device in ipvs mode: every ClusterIP is bound there. */
const KUBE_IPVS0 = 'kube-ipvs0';
/** The shop pool (lib/world.ts): every IPVS service on it is the agent's. */
const inPool = (address: string) => address.startsWith('198.51.100.');

/** `ipvsadm -Sn`, one line per service (-A) and destination (-a), no counters. */
const ipvsSave = () => execFileSync('ipvsadm', ['-Sn'], { encoding: 'utf8' }).split('\n').filter((l) => l.startsWith('-'));
/** The virtual address of an `ipvsadm -Sn` line: "-A -t 10.96.0.1:443 -s rr" -> ["-t", "10.96.0.1:443"]. */
const saveKey = (line: string) => /^-[Aa] (-t|-u|--sctp-service|-f) (\S+)/.exec(line)?.slice(1, 3) as [string, string] | undefined;

/** The sysctls kube-proxy (ipvs mode, defaults) may change at start: restored when it is gone. */
const KUBE_PROXY_SYSCTLS = [
  'net.ipv4.vs.conntrack', 'net.ipv4.vs.expire_nodest_conn', 'net.ipv4.vs.expire_quiescent_template', 'net.ipv4.vs.conn_reuse_mode',
  'net.ipv4.ip_forward', 'net.ipv4.conf.all.arp_ignore', 'net.ipv4.conf.all.arp_announce', 'net.ipv4.conf.all.route_localnet',
  'net.netfilter.nf_conntrack_max', 'net.netfilter.nf_conntrack_tcp_timeout_established', 'net.netfilter.nf_conntrack_tcp_timeout_close_wait',
];

/**
 * What kube-proxy in ipvs mode leaves on the node when it stops (it cleans nothing on SIGTERM),
 * removed without touching the agent's state: kube-ipvs0; its IPVS services (every one whose
 * address is outside the shop pool; never `ipvsadm -C`, never `kube-proxy --cleanup`, which flush
 * the agent's too); the KUBE-* rules and chains it wrote through iptables-nft, and the nft tables
 * iptables-nft created for them; its KUBE-* ipsets; the sysctls it changed. Returns what it did.
 */
function removeKubeProxyIpvsLeftovers(nftTablesBefore: string[], sysctlsBefore: Map<string, string>): string[] {
  const done: string[] = [];
  const sh = (cmd: string) => execFileSync('sh', ['-c', cmd], { encoding: 'utf8' });
  if (linkExists(KUBE_IPVS0)) {
    sh(`ip link del ${KUBE_IPVS0}`);
    done.push(`deleted ${KUBE_IPVS0}`);
  }
  const theirs = ipvsSave().filter((l) => l.startsWith('-A ')).map(saveKey).filter((k): k is [string, string] => !!k && !inPool(k[1]));
  for (const [flag, address] of theirs) execFileSync('ipvsadm', ['-D', flag, address]);
  if (theirs.length) done.push(`ipvsadm -D of ${theirs.length} services (${theirs.map((k) => k[1]).join(', ')})`);
  let rules = 0;
  let chains = 0;
  for (const cmd of ['iptables', 'ip6tables']) {
    for (const table of ['filter', 'nat', 'mangle']) {
      const listed = sh(`${cmd} -w -t ${table} -S 2>/dev/null; true`).split('\n');
      // Jumps from the built-in chains into kube-proxy's, then its chains themselves.
      for (const l of listed.filter((x) => /^-A (?!KUBE-)\S+ .*-j KUBE-/.test(x))) { sh(`${cmd} -w -t ${table} -D ${l.slice(3)}`); rules++; }
      const kube = listed.map((x) => /^-N (KUBE-\S+)$/.exec(x)?.[1]).filter((x): x is string => !!x);
      for (const c of kube) sh(`${cmd} -w -t ${table} -F ${c}`);
      for (const c of kube) { sh(`${cmd} -w -t ${table} -X ${c}`); chains++; }
    }
  }
  if (rules + chains) done.push(`iptables: ${rules} jumps and ${chains} KUBE-* chains removed`);
  // iptables-nft made its tables (ip nat, ip filter, ...) for kube-proxy: now empty, they go too.
  const created = nftTables().filter((t) => !nftTablesBefore.includes(t) && /^(ip|ip6) (filter|nat|mangle|raw|security)$/.test(t));
  for (const t of created) sh(`nft delete table ${t}`);
  if (created.length) done.push(`nft tables deleted: ${created.join(', ')}`);
  const sets = sh('ipset list -n 2>/dev/null; true').split('\n').filter((x) => x.startsWith('KUBE-'));
  for (const set of sets) sh(`ipset destroy ${set}`);
  if (sets.length) done.push(`ipsets destroyed: ${sets.length}`);
  for (const [key, was] of sysctlsBefore) {
    if (sysctl(key) !== was) { execFileSync('sysctl', ['-qw', `${key}=${was}`]); done.push(`${key} back to ${was}`); }
  }
  return done;
}

/**
 * The rules of our nft tables (inet and arp), whitespace-normalised, without the lines of the
 * tables and chains around them: a table exists only while it holds a rule (../../../dataplane/
 * director/plan.ts inputTable), so when the last rule goes (a drained VIP's ARP drop) its table goes
 * with it, and only the rules say what the agent programs. A family without our table lists none;
 * any other failure of `nft list` throws (it is never read as "no table").
 */
function ourNftRules(): string[] {
  const rules: string[] = [];
  for (const family of ['inet', 'arp']) {
    const r = spawnSync('nft', ['list', 'table', family, 'lvs_operator'], { encoding: 'utf8' });
    if (r.status !== 0) {
      if (/No such file or directory/.test(r.stderr)) continue;
      throw new Error(`nft list table ${family} lvs_operator: exit ${r.status}: ${r.stderr.trim()}`);
    }
    for (const line of r.stdout.split('\n').map((l) => l.replace(/\s+/g, ' ').trim())) {
      if (line === '' || line === '}' || /^(table|chain) .* \{$/.test(line) || /^type \S+ hook /.test(line)) continue;
      rules.push(`${family}: ${line}`);
    }
  }
  // Sorted: the agent appends the drop rule of a VIP it binds between two full director syncs
  // (dataplane/director/quick-bind.ts) and a full one writes the table sorted; the order of these
  // independent rules means nothing.
  return rules.sort();
}

const linkExists = (dev: string) => execFileSync('sh', ['-c', `ip link show ${dev} 2>/dev/null; true`], { encoding: 'utf8' }).trim() !== '';
/** `nft list tables`: "family name" per table. */
const nftTables = () => execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' }).split('\n').map((l) => l.replace(/^table /, '').trim()).filter(Boolean);

scenario('a real kube-proxy (ipvs, excludeCIDRs = the VIPPool: the migration case) beside the agent serves the ClusterIP of web; after two of its syncs the agent\'s IPVS services, VIPs and nft tables are as they were; a LoadBalancer Service is served through IPVS', async () => {
  const need = (k: string) => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set (the host test passes it)`); return v; };
  // A service of the pool whose destinations all drain (the last scenario's LoadBalancer address)
  // may finish and go, with its VIP, at any moment: legitimate work of the agent, left out.
  const pending = new Set(ipvs().filter((x) => inPool(x.address) && x.dests.length > 0 && x.dests.every((d) => d.weight === 0)).map((x) => x.address.split(':')[0]!));
  const mentionsPending = (l: string) => [...pending].some((vip) => new RegExp(`\\b${vip.replaceAll('.', '\\.')}(?![\\d])`).test(l));
  const ours = () => ipvsSave().filter((l) => inPool(saveKey(l)?.[1] ?? '') && !mentionsPending(l));
  const ourNft = () => ourNftRules().filter((l) => !mentionsPending(l));
  const lvs0 = () => addressesIn(undefined, 'lvs0').filter((a) => !mentionsPending(a));
  const ipvsBefore = ours();
  const nftBefore = ourNft();
  console.log(`# before kube-proxy (ipvs): draining ${[...pending].join(', ') || 'none'}; our nft rules ${JSON.stringify(ourNftRules())}`);
  const vipsBefore = lvs0();
  const tablesBefore = nftTables();
  const sysctlsBefore = new Map(KUBE_PROXY_SYSCTLS.map((k) => [k, sysctl(k)] as const));
  assert.ok(ipvsBefore.length > 0, 'the agent\'s IPVS services are there');
  assert.not.ok(ipvs().some((x) => !inPool(x.address)), `no IPVS service outside the pool before kube-proxy: ${ipvsSave().join(' | ')}`);
  const clusterIp = (await w.kube.get<KubeObject & { spec: { clusterIP: string } }>(SERVICES, NS, 'web')).spec.clusterIP;
  const t0 = Date.now();
  const kp = startKubeProxy({
    binary: need(KUBE_PROXY_BINARY_ENV), kubeconfig: need('LVS_SYSTEM_KUBE_PROXY_KUBECONFIG'), node: w.env.node,
    mode: 'ipvs', clusterCidr: '10.244.0.0/16',
    // Without it kube-proxy deletes, at every sync, every IPVS service it did not create (lab/KUBE-PROXY.md).
    ipvsExcludeCidrs: ['198.51.100.0/24'],
    // Unset, ipvs mode opens every NodePort on every local address, lvs0's VIPs included: IPVS
    // services on the agent's VIPs, which the agent (owner of every service on a VIP bound on lvs0)
    // would delete and kube-proxy re-create. The node's primary IP only.
    nodePortAddresses: ['primary'],
    // ipvs mode needs iptables and ipset (/usr/sbin); the same PATH as the nftables scenario.
    path: '/usr/sbin:/usr/bin:/sbin:/bin',
  });
  try {
    await kp.waitSynced(t0, 300_000);
    const tFirst = Date.now();
    console.log(`# kube-proxy (ipvs): first sync ${tFirst - t0} ms after its start`);
    // ClusterIP of web: kube-proxy's IPVS service on kube-ipvs0, answered by a web pod.
    assert.ok(addressesIn(undefined, KUBE_IPVS0).includes(`${clusterIp}/32`), `${clusterIp} on ${KUBE_IPVS0}: ${addressesIn(undefined, KUBE_IPVS0)}`);
    const webPods = w.web.endpoints().filter((e) => e.ready && !e.terminating).map((e) => `${e.ip}:8080 Masq`).sort();
    assert.equal(dests(ipvs(), clusterIp, PORT).map((d) => d.split(' ').slice(0, 2).join(' ')), webPods, `kube-proxy's IPVS service ${clusterIp}:${PORT}`);
    const answered: string[] = [];
    for (let i = 0; i < 6; i++) answered.push(await podAt(clusterIp, PORT));
    assert.ok(answered.every((id) => id.startsWith('web-')), `the ClusterIP ${clusterIp} was answered by ${answered.join(', ')}`);
    console.log(`# kube-proxy (ipvs): ClusterIP ${clusterIp}:${PORT} answered by ${answered.join(', ')}`);
    // A second sync (its periodic one, or one a change caused): the cleanup of services it did not
    // create runs at each one.
    await kp.waitSynced(tFirst + 1, 120_000);
    console.log(`# kube-proxy (ipvs): second sync ${Date.now() - t0} ms after its start`);
    const theirs = ipvsSave().filter((l) => !inPool(saveKey(l)?.[1] ?? '198.51.100.'));
    assert.equal(ours(), ipvsBefore, 'the agent\'s IPVS services (ipvsadm -Sn, 198.51.100.0/24) changed');
    assert.equal(lvs0(), vipsBefore, 'the VIPs on lvs0 changed');
    assert.equal(ourNft(), nftBefore, 'the rules of our nft tables changed');
    assert.not.ok(ipvs().some((x) => inPool(x.address) && !x.address.endsWith(`:${PORT}`)), `kube-proxy put a NodePort on a pool VIP: ${ipvsSave().join(' | ')}`);
    const got = await tally(VIP.nat, 4);
    assert.is(Object.values(got).reduce((a, b) => a + b, 0), 4, `the NAT VIP beside kube-proxy: ${JSON.stringify(got)}`);
    // Its address drains once the Service is deleted: left out of the comparisons from then on.
    pending.add(await loadBalancerBesideKubeProxy(kp, 'ipvs', 'shop-lb-ipvs'));
    // And the other way round: the agent's syncs meanwhile left kube-proxy's services alone
    // (the LoadBalancer Service's own ClusterIP aside, gone with it).
    await kp.waitSynced(Date.now(), 120_000);
    const now = ipvsSave();
    const lost = theirs.filter((l) => !now.includes(l));
    assert.equal(lost, [], `kube-proxy's IPVS rules lost: ${lost.join(' | ')}`);
    assert.equal(ours(), ipvsBefore, 'the agent\'s IPVS services after the LoadBalancer Service');
    console.log(`# kube-proxy (ipvs): ${theirs.filter((l) => l.startsWith('-A')).length} IPVS services of its own kept beside the agent's ${ipvsBefore.filter((l) => l.startsWith('-A')).length} for ${Date.now() - tFirst} ms`);
  } catch (err) {
    console.log(`# kube-proxy's last lines:\n${kp.tail(30)}\n# ipvsadm -Sn:\n${ipvsSave().join('\n')}`);
    throw err;
  } finally {
    await kp.kill();
    // Runs even when the scenario failed (the scenarios after it need the node as it was); its own
    // failure is reported without hiding the scenario's.
    try {
      const leftovers = removeKubeProxyIpvsLeftovers(tablesBefore, sysctlsBefore);
      console.log(`# kube-proxy (ipvs) stopped; removed: ${leftovers.join('; ') || 'nothing'}`);
    } catch (err) {
      console.log(`# kube-proxy (ipvs) leftovers: removal failed: ${String(err)}`);
    }
  }
  // The node as it was before kube-proxy (for the scenarios after this one).
  assert.not.ok(linkExists(KUBE_IPVS0), `${KUBE_IPVS0} gone`);
  assert.equal(ipvsSave().filter((l) => !inPool(saveKey(l)?.[1] ?? '198.51.100.')), [], 'no IPVS service outside the pool');
  assert.equal(ours(), ipvsBefore, 'the agent\'s IPVS services after the cleanup');
  assert.equal(nftTables(), tablesBefore, 'nft tables');
  assert.equal(execFileSync('sh', ['-c', 'ipset list -n; true'], { encoding: 'utf8' }).trim(), '', 'no ipset left');
  for (const [k, v] of sysctlsBefore) assert.is(sysctl(k), v, k);
  assert.equal(lvs0(), vipsBefore, 'the VIPs on lvs0 after the cleanup');
});

scenario('10,000 endpoints x 2 ports: the plan goes out in bounded PlanSlices, all 20,000 destinations reach the kernel, the status stays small; deleted, they go', async () => {
  const vip = '198.51.100.20';
  const t0 = Date.now();
  await createBigService(w.kube, NS, w.env.node);
  const tSlices = Date.now();
  await w.kube.create(VIRTUAL_SERVERS, NS, {
    apiVersion: 'lvs.dev/v1alpha1', kind: 'VirtualServer', metadata: { name: BIG.name, namespace: NS },
    spec: { addresses: [vip], ports: BIG_PORTS.map((p) => ({ name: p.name, port: p.port, protocol: 'TCP' })), forwarding: 'NAT', scheduler: { name: 'rr' }, backends: { service: { name: BIG.name } } },
  });
  const vs = await waitProgrammed(w, BIG.name, 900_000);
  const tProgrammed = Date.now();
  const table = ipvs();
  const counts = BIG_PORTS.map((p) => service(table, vip, p.port)?.dests.length ?? 0);
  assert.equal(counts, [BIG.endpoints, BIG.endpoints], 'destinations per virtual service');
  const last = bigAddress(BIG.endpoints - 1);
  assert.ok(dests(table, vip, 81).includes(`${last}:8081 Masq 1`), `${last}:8081 missing`);
  const slices = await w.kube.request<{ items: Array<{ services: Array<{ realServers: unknown[] }> }> }>('GET', `/apis/lvs.dev/v1alpha1/planslices?labelSelector=${encodeURIComponent(`lvs.dev/owner-uid=${vs.metadata.uid}`)}`);
  const entries = slices.items.map((sl) => sl.services.reduce((n, sv) => n + sv.realServers.length, 0));
  assert.ok(entries.every((n) => n <= 1000), `a slice holds more than 1,000 real servers: ${entries.join(',')}`);
  assert.is(entries.reduce((a, b) => a + b, 0), 2 * BIG.endpoints);
  const size = JSON.stringify(vs).length;
  assert.ok(size < 16_384, `the VirtualServer is ${size} bytes`);
  console.log(`# big: ${BIG.endpoints / BIG.perSlice} EndpointSlices written in ${tSlices - t0} ms; VirtualServer -> Programmed=True with 2 x ${BIG.endpoints} destinations in the kernel ${tProgrammed - tSlices} ms; ${slices.items.length} PlanSlices; VirtualServer ${size} bytes`);
  await w.kube.request('DELETE', `/apis/lvs.dev/v1alpha1/namespaces/${NS}/virtualservers/${BIG.name}`);
  const t1 = Date.now();
  await until(`the ${vip} services gone`, () => !ipvs().some((svc) => svc.address.startsWith(`${vip}:`)), { timeoutMs: 600_000, everyMs: 3000 });
  console.log(`# big: deleted -> both services gone from the kernel ${Date.now() - t1} ms`);
  await waitProgrammed(w, 'web-nat');
});

test.run();
