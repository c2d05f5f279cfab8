// The demo, inside the VM (Debian's kernel with IPVS): a small network of namespaces, the
// lvs-agent in cluster mode programming the director from what the controller (on the host)
// resolved of the examples applied with kubectl, real TCP traffic, and what the kernel did to it.
//
//   client 192.0.2.10 ──front 192.0.2.0/24── director 192.0.2.1 (lvs-agent run, VIPs on lvs0) ── mgmt ── apiserver (host)
//                         │                    ├─nat 172.16.0.0/24──── rs 172.16.0.2, 172.16.0.3 (gateway: director)
//                         │                    └─dr  192.168.33.0/24── rs 192.168.33.11, .13 (gateway: router)
//                       router 192.0.2.254 ────┴─dr, and tun20 10.20.0.0/24 (rs 10.20.0.5), tun30 10.30.0.0/24 (rs 10.30.0.7)
//
// The client routes the VIPs to the director and everything else to the router, so DR and TUN
// replies (source = VIP) return through the router, never through the director.
//
// After it all is torn down, demo/failover.ts shows one director failover on a network of its own.
import { execFileSync } from 'node:child_process';
import { createTopology, nsRun, type Topology } from '../lab/guest/netns.ts';
import { runClient, startServer, stopServers } from '../lab/guest/traffic.ts';
import { listIpvs, type IpvsService } from '../lab/guest/ipvsadm.ts';
import { settledStats } from '../lab/guest/agent-net.ts';
import { formatHops, startCapture, type Packet } from './capture.ts';
import { agent, claim, ClaimFailed, say } from './common.ts';
import { failover } from './failover.ts';
import { connectDirectorToApiserver, envFromProcess, kubectl, startClusterAgent, waitForCondition, waitForKernel, type AgentProcess, type DemoEnv } from './cluster.ts';


function topology(): Topology {
  const rs = (ns: string, lan: string, addr: string, gw: string) => ({ ns, links: [{ lan, addrs: [addr] }], routes: [{ to: 'default', via: gw }] });
  return createTopology({
    lans: ['front', 'nat', 'dr', 'tun20', 'tun30'],
    hosts: [
      { ns: 'client', links: [{ lan: 'front', addrs: ['192.0.2.10/24'] }], routes: [
        { to: 'default', via: '192.0.2.254' },
        // The pool's VIPs (the LoadBalancer Service's address is allocated from 203.0.113.0/24).
        { to: '203.0.113.0/24', via: '192.0.2.1' }, { to: '198.51.100.12/32', via: '192.0.2.1' },
      ] },
      { ns: 'director', forwarding: true, links: [
        { lan: 'front', addrs: ['192.0.2.1/24'] }, { lan: 'nat', addrs: ['172.16.0.1/24'] }, { lan: 'dr', addrs: ['192.168.33.1/24'] },
      ], routes: [{ to: 'default', via: '192.0.2.254' }] },
      { ns: 'router', forwarding: true, links: [
        { lan: 'front', addrs: ['192.0.2.254/24'] }, { lan: 'dr', addrs: ['192.168.33.254/24'] },
        { lan: 'tun20', addrs: ['10.20.0.1/24'] }, { lan: 'tun30', addrs: ['10.30.0.1/24'] },
      ] },
      rs('nat2', 'nat', '172.16.0.2/24', '172.16.0.1'), rs('nat3', 'nat', '172.16.0.3/24', '172.16.0.1'),
      rs('dr11', 'dr', '192.168.33.11/24', '192.168.33.254'), rs('dr13', 'dr', '192.168.33.13/24', '192.168.33.254'),
      rs('tun5', 'tun20', '10.20.0.5/24', '10.20.0.1'), rs('tun7', 'tun30', '10.30.0.7/24', '10.30.0.1'),
    ],
  });
}

type Hop = [ns: string, iface: string, where: string];
interface Mode { title: string; vip: string; port: number; forward: Hop[]; reply: Hop[]; macs: boolean }

const TCP_SYN = 'S';
const TCP_SYN_ACK = 'S.';

/** One connection with tcpdump on every hop: the SYN along the forward path, the SYN-ACK back. */
async function traceOne(m: Mode): Promise<string> {
  const hops = [...m.forward, ...m.reply];
  const keyOf = (h: Hop) => `${h[0]}/${h[1]}`;
  const caps = new Map<string, Awaited<ReturnType<typeof startCapture>>>();
  for (const h of hops) if (!caps.has(keyOf(h))) caps.set(keyOf(h), await startCapture(h[0], h[1], h[2]));
  const res = await runClient('client', { host: m.vip, port: m.port, count: 1 });
  const seen = new Map<string, Packet[]>();
  for (const [k, c] of caps) seen.set(k, await c.stop());
  if (res.errors) throw new Error(`${m.title}: traced connection failed: ${res.firstError}`);
  // TUN hops also see the rest of the connection inside the tunnel: keep the handshake only.
  const pick = (h: Hop, flags: string) => (seen.get(keyOf(h)) ?? []).filter((p) => p.flags === flags).map((p) => ({ ...p, where: h[2] }));
  return formatHops([...m.forward.flatMap((h) => pick(h, TCP_SYN)), ...m.reply.flatMap((h) => pick(h, TCP_SYN_ACK))], m.macs);
}

async function spread(title: string, vip: string, port: number, count: number, weights: Record<string, string>): Promise<Record<string, number>> {
  const res = await runClient('client', { host: vip, port, count, concurrency: 4 });
  say(`  ${count} connections to ${vip}:${port} (${res.errors} failed):`);
  for (const [id, n] of Object.entries(res.byId).sort()) say(`    ${id.padEnd(24)} ${String(n).padStart(4)}  (${((100 * n) / count).toFixed(1)}%)   ${weights[id] ?? ''}`);
  if (res.errors) throw new Error(`${title}: ${res.errors} connections failed: ${res.firstError}`);
  return res.byId;
}

/**
 * The service's counters once they have settled (the kernel folds its per-CPU counters into the
 * totals on a 2 s timer: a read right after traffic misses part of it), and checked to include at
 * least the `made` connections just counted, so the claims below are about this traffic.
 */
async function directorCounters(vip: string, port: number, made: number) {
  const svc = (await settledStats('director')).find((s) => s.address === `${vip}:${port}`);
  if (!svc) throw new ClaimFailed(`no IPVS service ${vip}:${port} on the director (ipvsadm -Ln --stats)`);
  const line = `  director IPVS counters for ${vip}:${port}: Conns ${svc.conns}, InPkts ${svc.inPkts}, OutPkts ${svc.outPkts}`;
  claim(svc.conns >= made, `${line.trim()} after ${made} connections were made through it`);
  return { svc, line };
}

/** DR and TUN: requests passed the director and no reply did (OutPkts = 0), checked. */
async function directReturn(vip: string, port: number, made: number, sentence: string): Promise<void> {
  const { svc, line } = await directorCounters(vip, port, made);
  claim(svc.inPkts >= made && svc.outPkts === 0, `${line.trim()} (direct return means at least one InPkt per connection and OutPkts 0)`);
  say(`${line}   (checked: OutPkts 0, ${sentence})`);
}

const STATE = '/run/demo-agent.json';
const EXAMPLES = ['seeds-web', 'seeds-ftp', 'dr-8088', 'tun-web', 'lb-web-lb'];
/** The address the controller allocated to the LoadBalancer Service web-lb (demo/run.ts passes it). */
const LB = process.env.DEMO_LB_ADDRESS ?? '';

/** The examples as the controller resolved them, all real servers in with weight > 0. */
function examplesProgrammed(svcs: IpvsService[]): boolean {
  const want: Record<string, number> = {
    '203.0.113.5:80': 2, '203.0.113.5:21': 1, '198.51.100.12:8088': 2, '203.0.113.20:80': 2, '203.0.113.20:443': 2, [`${LB}:80`]: 1,
  };
  return Object.entries(want).every(([addr, n]) => {
    const s = svcs.find((x) => x.address === addr);
    return s !== undefined && s.dests.length === n && s.dests.every((d) => d.weight > 0);
  });
}

async function startServers(): Promise<void> {
  // One at a time: under emulation Node processes starting at once starve each other.
  for (const [ns, id, tcp] of [
    ['nat2', 'rs 172.16.0.2:80', [80]], ['nat3', 'rs 172.16.0.3:8000/21', [8000, 21]],
    ['dr11', 'rs 192.168.33.11', [8088]], ['dr13', 'rs 192.168.33.13', [8088]],
    ['tun5', 'rs 10.20.0.5', [80, 443]], ['tun7', 'rs 10.30.0.7', [80, 443]],
  ] as const) {
    const t = Date.now();
    await startServer(ns, { id, tcp: [...tcp] });
    say(`  identity server "${id}" up in namespace ${ns} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
  }
  say('== lvs-agent prepare on the static real servers (hosts outside the cluster: DR = VIP on lo + ARP sysctls, TUN = tunl0)');
  for (const ns of ['dr11', 'dr13']) say(`  ${(await agent(undefined, ['prepare', '--forwarding', 'DR', '--vip', '198.51.100.12', '--netns', ns])).trim()}`);
  for (const ns of ['tun5', 'tun7']) say(`  ${(await agent(undefined, ['prepare', '--forwarding', 'TUN', '--vip', '203.0.113.20', '--netns', ns])).trim()}`);
}

async function traces(): Promise<void> {
  const client: Hop = ['client', 'eth0', 'client eth0'];
  const front: Hop = ['director', 'eth0', 'director eth0 (front)'];
  const router: Hop = ['router', 'eth0', 'router eth0 (front)'];
  const modes: Mode[] = [
    { title: 'VS/NAT', vip: '203.0.113.5', port: 80, macs: false,
      forward: [client, front, ['director', 'eth1', 'director eth1 (nat lan)'], ['nat2', 'eth0', 'real server 172.16.0.2'], ['nat3', 'eth0', 'real server 172.16.0.3']],
      reply: [['nat2', 'eth0', 'real server 172.16.0.2'], ['nat3', 'eth0', 'real server 172.16.0.3'], ['director', 'eth1', 'director eth1 (nat lan)'], front, client] },
    { title: 'VS/DR', vip: '198.51.100.12', port: 8088, macs: true,
      forward: [client, front, ['director', 'eth2', 'director eth2 (dr lan)'], ['dr11', 'eth0', 'real server 192.168.33.11'], ['dr13', 'eth0', 'real server 192.168.33.13']],
      reply: [['dr11', 'eth0', 'real server 192.168.33.11'], ['dr13', 'eth0', 'real server 192.168.33.13'], router, client] },
    { title: 'VS/TUN', vip: '203.0.113.20', port: 80, macs: false,
      forward: [client, front, ['tun5', 'eth0', 'real server 10.20.0.5'], ['tun7', 'eth0', 'real server 10.30.0.7']],
      reply: [['tun5', 'eth0', 'real server 10.20.0.5'], ['tun7', 'eth0', 'real server 10.30.0.7'], router, client] },
  ];
  for (const m of modes) {
    say(`\n== ${m.title}: one connection, as each hop saw it (captured with tcpdump)`);
    say(await traceOne(m));
  }
}

async function spreads(): Promise<void> {
  say('\n== how connections were spread');
  say('VS/NAT wrr, weights 1:2 (port 80 -> 8000 on 172.16.0.3):');
  await spread('NAT', '203.0.113.5', 80, 150, { 'rs 172.16.0.2:80': 'weight 1', 'rs 172.16.0.3:8000/21': 'weight 2' });
  await spread('NAT ftp', '203.0.113.5', 21, 10, { 'rs 172.16.0.3:8000/21': 'the only real server for :21' });
  const nat = await directorCounters('203.0.113.5', 80, 150);
  claim(nat.svc.outPkts > 0, `${nat.line.trim()} (NAT replies must pass the director: OutPkts > 0)`);
  say(`${nat.line}   (checked: OutPkts > 0, NAT replies pass the director)`);
  say('VS/DR rr over two real servers:');
  await spread('DR', '198.51.100.12', 8088, 60, {});
  await directReturn('198.51.100.12', 8088, 60, 'replies never touched the director');
  say('VS/TUN lc with persistence 600 s, netmask /24 (one client network sticks to one real server):');
  const tun = await spread('TUN', '203.0.113.20', 80, 60, {});
  const servers = Object.keys(tun);
  claim(servers.length === 1, `the client's connections to the persistent TUN service went to ${servers.join(', ')}`);
  say(`  (checked: all ${tun[servers[0]!]} went to ${servers[0]}, as persistence promises)`);
  await directReturn('203.0.113.20', 80, 60, 'replies went straight back');
  say(`LoadBalancer Service web-lb at ${LB}, the address the controller allocated from the pool (NAT to its endpoint 172.16.0.2:80):`);
  await spread('LoadBalancer', LB, 80, 20, { 'rs 172.16.0.2:80': 'its only endpoint' });
  const lb = await directorCounters(LB, 80, 20);
  say(`${lb.line}   (checked: the allocated address is served by the director's IPVS)`);
}

/** A change made with kubectl reaches the kernel through controller and agent; traffic follows. */
async function liveChange(env: DemoEnv, agentProc: AgentProcess): Promise<void> {
  say('\n== kubectl patch vs seeds-web: weight of 172.16.0.3:8000 from 2 to 1');
  // A destination edited in place keeps its cumulative counters; one deleted and re-created starts at 0.
  const connsOf = async () => (await settledStats('director')).find((s) => s.address === '203.0.113.5:80')?.dests.find((d) => d.address === '172.16.0.3:8000')?.conns;
  const before = await connsOf();
  claim(before !== undefined && before > 0, `172.16.0.3:8000 under 203.0.113.5:80 with ${before ?? 'no'} connections before the patch`);
  const t0 = Date.now();
  kubectl(env, ['patch', 'vs', 'seeds-web', '-n', 'default', '--type=json', '-p', '[{"op":"replace","path":"/spec/backends/static/1/weight","value":1}]']);
  const patched = Date.now();
  await waitForKernel('director', 'weight 1 for 172.16.0.3:8000', (svcs) =>
    svcs.find((s) => s.address === '203.0.113.5:80')?.dests.find((d) => d.address === '172.16.0.3:8000')?.weight === 1, agentProc);
  const after = await connsOf();
  claim(after !== undefined && after >= before!, `172.16.0.3:8000 had ${before} connections before the patch and ${after ?? 'no entry'} after: it was re-created, not edited`);
  say(`  in the director's kernel ${Date.now() - patched} ms after kubectl returned (${Date.now() - t0} ms in all), edited in place`);
  say(`  (checked: it kept its cumulative connection counter, ${before} before and ${after} after; a re-created destination restarts at 0) (ipvsadm -Ln):`);
  for (const d of listIpvs('director').find((s) => s.address === '203.0.113.5:80')!.dests) say(`    -> ${d.address.padEnd(20)} ${d.forward} weight ${d.weight}`);
  await spread('NAT after the change', '203.0.113.5', 80, 60, { 'rs 172.16.0.2:80': 'weight 1', 'rs 172.16.0.3:8000/21': 'weight 1' });
}

async function main(): Promise<void> {
  const env = envFromProcess();
  say(`== kernel ${execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim()} with IPVS; building the network`);
  const topo = topology();
  connectDirectorToApiserver('director');
  say('  namespaces: client, director (+ management link to the apiserver on the host), router, six real servers');
  say(`== lvs-agent run as node ${env.node}, in the director namespace (cluster mode: it watches the apiserver)`);
  const agentProc = startClusterAgent(env, 'director', STATE);
  // Polled from the agent's start on, while the servers start and the real servers are prepared.
  const programmed = waitForKernel('director', 'the examples', examplesProgrammed, agentProc);
  programmed.catch(() => {}); // awaited below; a failure meanwhile must not be an unhandled rejection
  try {
    await startServers();
    const ms = await programmed;
    const first = agentProc.firstLogAt();
    say(`== the agent programmed the controller's resolution of the examples ${(ms / 1000).toFixed(1)} s after it started (ipvsadm polled every 250 ms)` +
      (first ? ` (its first log line, written once Node had loaded the agent and it had opened IPVS, came ${((first - agentProc.started) / 1000).toFixed(1)} s after the start)` : ''));
    const pms = await waitForCondition(env, EXAMPLES, 'Programmed');
    say(`  every VirtualServer Programmed=True (${pms} ms later: the agent reports in its node's AgentReport, the controller judges each VirtualServer from it)`);
    say('  $ kubectl get vs');
    say(kubectl(env, ['get', 'vs', '-n', 'default']).trimEnd().replace(/^/gm, '  '));
    say('  $ kubectl get vs -o custom-columns=NAME:...,PROGRAMMED:...,DIRECTORS:.status.directors,PLAN:.status.plan.revision,SLICES:...,PROGRAMMED-NODES:...');
    say(kubectl(env, ['get', 'vs', '-n', 'default', '-o', 'custom-columns=NAME:.metadata.name,PROGRAMMED:.status.conditions[?(@.type=="Programmed")].status,DIRECTORS:.status.directors,PLAN:.status.plan.revision,SLICES:.status.plan.slices,PROGRAMMED-NODES:.status.programmedNodes']).trimEnd().replace(/^/gm, '  '));
    say('  $ kubectl get planslices,agentreports');
    say(kubectl(env, ['get', 'planslices,agentreports']).trimEnd().replace(/^/gm, '  '));
    say('  $ lvs-agent show   (on the director)');
    say((await agent('director', ['show', '--state-file', STATE])).trimEnd().replace(/^/gm, '  '));
    await traces();
    await spreads();
    await liveChange(env, agentProc);
    say('\n== stopping the agent (SIGTERM): what it programmed stays, so traffic never depends on the agent running');
    const running = listIpvs('director').length;
    await agentProc.stop();
    const stopped = listIpvs('director').length;
    claim(stopped === running && running > 0, `${running} IPVS services with the agent running and ${stopped} after it stopped`);
    say(`  ipvsadm -Ln on the director still lists ${stopped} services (checked: as many as while it ran)`);
    say('== lvs-agent cleanup (removes only what it owns)');
    say(`  ${(await agent('director', ['cleanup', '--state-file', STATE])).trim()}`);
    const left = nsRun('director', ['ipvsadm', '-Ln']).split('\n').filter((l) => /^(TCP|UDP)/.test(l)).length;
    claim(left === 0, `${left} IPVS services left on the director after lvs-agent cleanup`);
    say(`  ipvsadm -Ln on the director now lists ${left} services (checked)`);
  } finally {
    await agentProc.stop();
    await stopServers();
    topo.destroy();
  }
  // Last, on a network of its own: the cluster demo's namespaces are gone, so nothing competes with it.
  await failover();
}

try {
  await main();
  say('\ndemo finished');
} catch (err) {
  if (!(err instanceof ClaimFailed)) throw err;
  console.error(`\ndemo FAILED: ${err.message}`);
  process.exitCode = 1;
}
