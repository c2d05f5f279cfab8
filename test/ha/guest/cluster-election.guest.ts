// Guest suite of test/ha/cluster.test.ts: the director election in cluster mode. d1 and d2 are
// two nodes (lvs-node-1, lvs-node-2) each running `lvs-agent run --peer-key-file ...` against the
// apiserver on the host (a management link per director, like a node's path to its control
// plane); the controller publishes one plan (DR :8080, TUN :8081 on VIP 192.0.2.100) directed by
// both. The agents learn each other's heartbeat endpoint from their AgentReports, elect one
// announcer, and say so in their reports and in the VirtualServers' status.announcers. Long-lived
// TCP streams run while the active director's link goes down and up, its link goes down while the
// apiserver is down, its agent is frozen and thawed, its node is cordoned and uncordoned, it is
// SIGKILLed and restarted: every stream must survive.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { nsRun, sh, type Topology } from '../../../lab/guest/netns.ts';
import { startAgent, timed, type AgentProcess } from '../../kernel/guest/agent/cli.ts';
import { DIRECTORS, directorMacs, haTopology, sleep, VIP, type Director, type Macs } from './ha-net.ts';
import type { StreamRun } from '../../../lab/guest/streams.ts';
import { announcers, clientMac, failover as failoverAt, linkCycle, prepareRealServers, reportStreams, sole, startSyncedStreams, teardown, until, type FailoverEvent } from './watch.ts';

const uvuSuite = suite('ha: cluster-mode directors elect their announcer through their AgentReports; streams survive');
const test = timed(uvuSuite);
const PORTS = { DR: 8080, TUN: 8081 } as const;
const KEY = '/run/tmp/ha-cluster.key';
const ADDR: Record<Director, string> = { d1: '192.0.2.2', d2: '192.0.2.3' };
const NODE: Record<Director, string> = { d1: 'lvs-node-1', d2: 'lvs-node-2' };
const need = (k: string) => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set (test/ha/cluster.test.ts passes it)`); return v; };
const KUBECONFIG: Record<Director, string> = { d1: need('LVS_HA_AGENT1_KUBECONFIG'), d2: need('LVS_HA_AGENT2_KUBECONFIG') };
const CYCLES = Math.max(1, Math.round(Number(process.env.LVS_HA_CYCLES ?? 10) / 3));
/**
 * Heartbeats every 250 ms, dead after 1.5 s: a cluster agent does more than a standalone one
 * (TLS watches, reports) and under TCG, with the host's two cores shared, 200 ms / 1 s made the two
 * agents drop each other every few seconds with nothing failing (measured in this suite's first run).
 */
const TIMING = ['--peer-interval-ms', '250', '--peer-dead-ms', '1500'];
let topo: Topology | undefined;
let macs: Macs;
const agents = new Map<Director, AgentProcess>();
const streams: Partial<Record<keyof typeof PORTS, StreamRun>> = {};
const events: FailoverEvent[] = [];
const failover = (what: string, to: Director, act: () => void, ms?: number) => failoverAt(events, macs, what, to, act, ms);

uvuSuite.after(() => teardown(agents, topo));

/** Each director's management link to 10.0.2.100 (the host's apiserver through guestfwd), masqueraded by the VM's root namespace. */
function connectToApiserver(): void {
  sh([
    ...DIRECTORS.flatMap((d, i) => [
      `ip link add mgmt${i} type veth peer name mgmt netns ${d}`,
      `ip addr add 10.99.${i}.1/30 dev mgmt${i}`, `ip link set mgmt${i} up`,
      `ip -n ${d} addr add 10.99.${i}.2/30 dev mgmt`, `ip -n ${d} link set mgmt up`,
      `ip -n ${d} route add 10.0.2.100/32 via 10.99.${i}.1`,
    ]),
    'sysctl -qw net.ipv4.ip_forward=1',
    'nft add table ip ha_mgmt',
    'nft add chain ip ha_mgmt post "{ type nat hook postrouting priority srcnat; }"',
    'nft add rule ip ha_mgmt post ip saddr 10.99.0.0/16 oifname eth0 masquerade',
  ].join('\n') + '\n');
}

function startDirector(d: Director): AgentProcess {
  const a = startAgent(d, [
    'run', '--state-file', `/run/lvs-agent/${d}-cluster.json`, '--log-level', 'info',
    '--peer-key-file', KEY, '--peer-listen', `${ADDR[d]}:7480`, '--sync-interface', 'eth0', '--sync-id', '9', '--peer-warmup-ms', '2000', ...TIMING,
  ], { NODE_NAME: NODE[d], KUBECONFIG: KUBECONFIG[d] });
  agents.set(d, a);
  return a;
}

function kubectl(args: string[]): string {
  return execFileSync(need('LVS_HA_KUBECTL'), ['--kubeconfig', need('LVS_HA_ADMIN_KUBECONFIG'), '--request-timeout=5s', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** What the API says: each node's report (announced, peer) and each VirtualServer's status.announcers. */
function apiView(): { announced: Record<string, string[]>; peers: Record<string, string>; status: Record<string, string[]> } {
  const reports = JSON.parse(kubectl(['get', 'agentreports', '-o', 'json'])) as { items: Array<{ node: string; announced?: string[]; peer?: { address: string; port: number } }> };
  const vss = JSON.parse(kubectl(['get', 'vs', '-n', 'default', '-o', 'json'])) as { items: Array<{ metadata: { name: string }; status?: { announcers?: Array<{ address: string; node: string }> } }> };
  return {
    announced: Object.fromEntries(reports.items.map((r) => [r.node, r.announced ?? []])),
    peers: Object.fromEntries(reports.items.map((r) => [r.node, r.peer ? `${r.peer.address}:${r.peer.port}` : ''])),
    status: Object.fromEntries(vss.items.map((v) => [v.metadata.name, (v.status?.announcers ?? []).map((a) => `${a.address}@${a.node}`)])),
  };
}

/** The yielding reason in a node's AgentReport ('' when in service), or undefined when it cannot be read now. */
function yieldingOf(node: string): string | undefined {
  try { return kubectl(['get', 'agentreport', node, '-o', 'jsonpath={.yielding}']).trim(); } catch { return undefined; }
}

/**
 * The host's apiserver control (test/system/lib/apiserver-control.ts). A request can fail at the
 * socket ("fetch failed": the fresh-clone CI of 733a0a5 failed the outage scenario so, on the GET
 * right after the POST, probably on a kept-alive connection the control server had closed): retried.
 */
async function control(path: string, method = 'GET'): Promise<Record<string, unknown>> {
  for (let attempt = 1; ; attempt++) {
    let res: Response;
    try {
      res = await fetch(`${need('LVS_HA_CONTROL_URL')}${path}`, { method });
    } catch (err) {
      if (attempt >= 5 || method !== 'GET') throw new Error(`control ${method} ${path}: ${String(err)} (attempt ${attempt})`);
      await sleep(500);
      continue;
    }
    const body = await res.json() as Record<string, unknown>;
    if (!res.ok) throw new Error(`control ${method} ${path}: ${res.status} ${JSON.stringify(body)}`);
    return body;
  }
}

/** The API says `d` announces the VIP: in both nodes' reports and in both VirtualServers' status. */
async function apiSays(d: Director, ms: number): Promise<number> {
  const t0 = Date.now();
  const want = `${VIP}@${NODE[d]}`;
  let last = '';
  for (;;) {
    try {
      const v = apiView();
      last = JSON.stringify(v);
      const other = NODE[DIRECTORS.find((x) => x !== d)!];
      if (v.announced[NODE[d]]?.includes(VIP) && !v.announced[other]?.includes(VIP) && ['el-dr', 'el-tun'].every((n) => v.status[n]?.join() === want)) return Date.now() - t0;
    } catch (err) { last = String(err); }
    if (Date.now() - t0 > ms) throw new Error(`the API does not say ${NODE[d]} alone announces ${VIP} after ${ms} ms: ${last}`);
    await sleep(1000);
  }
}

test('two nodes\' agents find each other through their AgentReports and elect exactly one announcer; the API says which', async () => {
  topo = haTopology();
  macs = directorMacs();
  connectToApiserver();
  writeFileSync(KEY, 'the cluster\'s election key, 32 bytes or more\n');
  await prepareRealServers([PORTS.DR, PORTS.TUN]);
  for (const d of DIRECTORS) startDirector(d);
  for (const a of agents.values()) await a.waitForStderr((e) => e.includes('"members":["lvs-node-1","lvs-node-2"]'), 300_000);
  const active = await until('exactly one director announces', sole, 60_000, 200);
  const v = apiView();
  assert.equal(v.peers, { [NODE.d1]: `${ADDR.d1}:7480`, [NODE.d2]: `${ADDR.d2}:7480` }, 'each report publishes its node\'s heartbeat endpoint');
  console.log(`\n# active ${active}; the API says so after ${await apiSays(active, 60_000)} ms more`);
  Object.assign(streams, await startSyncedStreams(PORTS, active, 10));
});

test(`${CYCLES} times: the active director's link goes down (the other takes over) and comes back (it takes back)`, async () => {
  for (let i = 0; i < CYCLES; i++) await linkCycle(events, macs);
  const a = sole()!;
  console.log(`\n# after the link cycles the API says ${a} announces (${await apiSays(a, 60_000)} ms to settle)`);
});

test('the apiserver is down: the active director\'s link goes down and the other still takes over; back up, the API catches up', async () => {
  const a = await until('one announcer', sole, 30_000);
  const b = DIRECTORS.find((d) => d !== a)!;
  // Long enough that even a slow emulated takeover lands inside it (the assertion below).
  await control('/apiserver/outage?seconds=90', 'POST');
  assert.is((await control('/apiserver')).state, 'down');
  await sleep(2000);
  try {
    await failover(`link down ${a}, apiserver down`, b, () => nsRun(a, ['ip', 'link', 'set', 'eth0', 'down']));
    assert.is((await control('/apiserver')).state, 'down', 'the failover happened while the apiserver was down');
    await sleep(1000);
  } finally {
    // Up again whatever happened: the next scenarios need both directors on the segment.
    await failover(`link up ${a} (after the failover in the outage)`, a, () => nsRun(a, ['ip', 'link', 'set', 'eth0', 'up']));
  }
  await until('one announcer again', sole, 30_000);
  for (const end = Date.now() + 120_000; (await control('/apiserver')).state !== 'up';) { if (Date.now() > end) assert.unreachable('the apiserver did not come back in 120 s'); await sleep(1000); }
  console.log(`\n# apiserver back; the API says ${a} announces after ${await apiSays(a, 120_000)} ms`);
  for (const [d, p] of agents) assert.is(p.exited, false, `${d}'s agent survived the outage`);
});

test('the active agent frozen (SIGSTOP: a hung node) gives its VIP away; thawed (SIGCONT), it takes it back', async () => {
  const a = await until('one announcer', sole, 30_000);
  const b = DIRECTORS.find((d) => d !== a)!;
  const pid = agents.get(a)!.pid;
  // A frozen agent's kernel still answers ARP (as after SIGKILL); the other's gratuitous ARP moves the client.
  try {
    await failover(`agent frozen ${a}`, b, () => process.kill(pid, 'SIGSTOP'));
    await sleep(2000);
  } finally {
    await failover(`agent thawed ${a}`, a, () => process.kill(pid, 'SIGCONT'), 60_000);
  }
  await until('one announcer again', sole, 30_000);
});

test('cordoning the active director\'s node moves its VIP to the other before the node goes; alone, the cordoned one still serves; uncordoned, it takes back', async () => {
  const a = await until('one announcer', sole, 30_000);
  const b = DIRECTORS.find((d) => d !== a)!;
  try {
    // kubectl cordon (spec.unschedulable): the agent watches its own Node and yields.
    await failover(`cordon ${NODE[a]}`, b, () => void kubectl(['cordon', NODE[a]]), 60_000);
    console.log(`\n# cordoned ${NODE[a]}: ${b} took the VIP; the API says so after ${await apiSays(b, 60_000)} ms`);
    // Its report says why (kubectl get agentreports -o wide: the Yielding column).
    assert.match(await until(`${NODE[a]}'s report says yielding`, () => yieldingOf(NODE[a]) || undefined, 30_000, 1000), /cordoned/);
    await sleep(2000);
    assert.equal(announcers(), [b], 'the cordoned director stays out while the other can serve');
    // The other one gone too: yielding is a preference, not an exit, so the VIP does not go dark.
    await failover(`link down ${b}, ${NODE[a]} cordoned`, a, () => nsRun(b, ['ip', 'link', 'set', 'eth0', 'down']));
    await failover(`link up ${b}, ${NODE[a]} cordoned`, b, () => nsRun(b, ['ip', 'link', 'set', 'eth0', 'up']));
    await until('one announcer again', sole, 10_000);
  } finally {
    await failover(`uncordon ${NODE[a]}`, a, () => void kubectl(['uncordon', NODE[a]]), 60_000);
  }
  await until(`${NODE[a]}'s report no longer says yielding`, () => (yieldingOf(NODE[a]) === '' ? true : undefined), 30_000, 1000);
  await until('one announcer again', sole, 10_000);
});

test('SIGKILL of the active agent: the other takes over; restarted, it waits its warm-up, then takes back', async () => {
  const a = await until('one announcer', sole, 30_000);
  const b = DIRECTORS.find((d) => d !== a)!;
  await failover(`agent SIGKILL ${a}`, b, () => void agents.get(a)!.kill('SIGKILL'));
  assert.is(clientMac(), macs.lan[b]);
  await sleep(1000);
  await failover(`agent restart ${a}`, a, () => void startDirector(a), 180_000);
  await until('one announcer again', sole, 10_000);
  console.log(`\n# after the restart: announcing ${announcers().join(',')}`);
});

test('every established DR and TUN stream survived every failover; gaps and takeover times', async () => {
  await reportStreams(streams, events, 10);
  assert.ok(events.length >= 2 * CYCLES + 10);
});

uvuSuite.run();
