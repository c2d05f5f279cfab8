// Guest suite of test/kernel/agent.test.ts: a lone director announces its VIPs (issue 15, item 1).
// Seed 004's DR setup verbatim in spirit: client, director and two real servers on one segment,
// the VIP in their subnet, `ipvsadm -A -t $vip:8088 -s rr` + two `-g` real servers — here as a
// VirtualServer applied by `lvs-agent apply`, the real servers prepared by `lvs-agent prepare`.
// The real servers rightly ignore ARP/NDP for the VIP (arp_ignore=1; VIP/128 on lo is never
// announced), so only the director can answer for it:
//   --announce none  the VIP stays silent: the client cannot resolve it (the old behaviour)
//   default (l2)     ARP and NDP are answered, and a gratuitous ARP / unsolicited NA moves a client
//                    that cached another MAC for the VIP to the director without it asking
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createTopology, nsRun, nsSh, type Topology } from '../../../lab/guest/netns.ts';
import { burst, startEchoServer, stopEchoServers } from '../../../lab/guest/agent-net.ts';
import { spawnSync } from 'node:child_process';
import { AGENT, NODE, agentOk, timed } from './agent/cli.ts';

const uvuSuite = suite('lvs-agent announce: a lone director answers ARP/NDP for its VIPs (seed 004)');
const test = timed(uvuSuite);
const VIP = '192.168.33.12', VIP6 = '2001:db8:33::12';
const PORT = 8088;
const STATE = ['--state-file', '/run/lvs-agent/announce.json'];
const MANIFEST = '/run/tmp/seed004.yaml';
const BOGUS = '02:00:00:00:00:99';
let topo: Topology | undefined;
const v6Servers: ChildProcess[] = [];

uvuSuite.after(() => {
  stopEchoServers();
  for (const c of v6Servers) c.kill('SIGKILL');
  topo?.destroy();
});

/** startEchoServer's IPv6 twin (socat's TCP-LISTEN is IPv4 only): greets with `id`. */
function startEchoServer6(ns: string, id: string): void {
  v6Servers.push(spawn('ip', ['netns', 'exec', ns, 'socat', `TCP6-LISTEN:${PORT},ipv6only=1,fork,reuseaddr`, `SYSTEM:echo ${id}; exec cat`], { stdio: 'ignore' }));
  nsSh(ns, `end=$((SECONDS + 120))\nwhile [ $SECONDS -lt $end ]; do ss -Hltn6 'sport = :${PORT}' | grep -q . && exit 0; sleep 0.2; done\nexit 1\n`);
}

const vs = (name: string, vip: string, rs: string[]) => `apiVersion: lvs.dev/v1alpha1
kind: VirtualServer
metadata: {name: ${name}}
spec:
  addresses: [${vip}]
  ports: [{name: web, port: ${PORT}, protocol: TCP}]
  forwarding: DR
  scheduler: {name: rr}
  backends: {static: [${rs.map((a) => `{address: "${a}"}`).join(', ')}]}
`;

function macOf(ns: string, dev: string): string {
  return (JSON.parse(nsRun(ns, ['ip', '-j', 'link', 'show', dev])) as Array<{ address: string }>)[0]!.address;
}

/** The client's neighbour entry for `ip`: its MAC ('' when it has none or it failed). */
function clientNeighbour(ip: string): string {
  const entries = JSON.parse(nsRun('client', ['ip', '-j', 'neigh', 'show', ip])) as Array<{ lladdr?: string; state?: string[] }>;
  return entries[0]?.lladdr ?? '';
}

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 100))) if (ok()) return;
  throw new Error(`not within ${ms} ms: ${what}`);
}

/** The first line each of `n` connections to host:PORT got ('' = failed). */
function connect(host: string, n: number): string[] {
  return burst('client', Array.from({ length: n }, () => ({ host: host.includes(':') ? `[${host}]` : host, port: PORT })));
}

test('seed 004 on one segment: real servers prepared for DR, echo servers up', async () => {
  topo = createTopology({
    lans: ['seg'],
    hosts: [
      { ns: 'client', links: [{ lan: 'seg', addrs: ['192.168.33.10/24', '2001:db8:33::10/64'] }] },
      { ns: 'director', links: [{ lan: 'seg', addrs: ['192.168.33.11/24', '2001:db8:33::11/64'] }] },
      { ns: 'rs1', links: [{ lan: 'seg', addrs: ['192.168.33.21/24', '2001:db8:33::21/64'] }] },
      { ns: 'rs2', links: [{ lan: 'seg', addrs: ['192.168.33.22/24', '2001:db8:33::22/64'] }] },
    ],
  });
  writeFileSync(MANIFEST, vs('seed004', VIP, ['192.168.33.21', '192.168.33.22']) + '---\n' + vs('seed004-v6', VIP6, ['2001:db8:33::21', '2001:db8:33::22']));
  for (const rs of ['rs1', 'rs2']) {
    await agentOk(undefined, ['prepare', '--forwarding', 'DR', '--vip', VIP, '--vip', VIP6, '--netns', rs]);
    await startEchoServer(rs, rs, PORT);
    startEchoServer6(rs, rs);
  }
});

test('--announce none: the director stays silent, so the client cannot reach the VIP (the old behaviour)', async () => {
  await agentOk('director', ['apply', '-f', MANIFEST, ...STATE, '--announce', 'none']);
  assert.match(nsRun('director', ['nft', 'list', 'table', 'arp', 'lvs_operator']), `arp daddr ip ${VIP} drop`);
  assert.equal(connect(VIP, 1), [''], 'nobody answers ARP for the VIP');
  assert.is(clientNeighbour(VIP), '');
  assert.equal(JSON.parse(nsRun('director', ['ip', '-6', '-j', 'neigh', 'show', 'proxy'])), []);
});

test('default: ARP answered, a gratuitous ARP moves a client that cached another MAC, rr over both real servers', async () => {
  nsRun('client', ['ip', 'neigh', 'replace', VIP, 'lladdr', BOGUS, 'dev', 'eth0', 'nud', 'stale']);
  const r = await agentOk('director', ['apply', '-f', MANIFEST, ...STATE]);
  const mac = macOf('director', 'eth0');
  // The client sends nothing here: only the director's gratuitous ARP can change its entry.
  await until(`client's entry for ${VIP} is the director's ${mac}`, () => clientNeighbour(VIP) === mac);
  assert.not.match(nsSh('director', 'nft list ruleset'), `arp daddr ip ${VIP} drop`);
  const replies = connect(VIP, 4);
  assert.equal(replies.slice().sort(), ['rs1', 'rs1', 'rs2', 'rs2'], `rr over both real servers: ${JSON.stringify(replies)}\n${r.stderr}`);
});

test('default, IPv6: a proxy entry answers solicitations at once and an unsolicited NA moves the client', async () => {
  const mac = macOf('director', 'eth0');
  assert.equal(JSON.parse(nsRun('director', ['ip', '-6', '-j', 'neigh', 'show', 'proxy'])).map((e: { dst: string; dev: string }) => `${e.dst} ${e.dev}`), [`${VIP6} eth0`]);
  const sysctls = nsRun('director', ['sysctl', 'net.ipv6.conf.eth0.proxy_ndp', 'net.ipv6.conf.eth0.forwarding', 'net.ipv6.neigh.eth0.proxy_delay']);
  assert.match(sysctls, 'proxy_ndp = 1');
  assert.match(sysctls, 'proxy_delay = 0');
  const replies = connect(VIP6, 4);
  assert.equal(replies.slice().sort(), ['rs1', 'rs1', 'rs2', 'rs2'], JSON.stringify(replies));
  assert.is(clientNeighbour(VIP6), mac, 'the director answered the solicitation for the VIP');
  // A stale, wrong entry is corrected by the next announcement (silence, then announce again).
  await agentOk('director', ['apply', '-f', MANIFEST, ...STATE, '--announce', 'none']);
  nsRun('client', ['ip', '-6', 'neigh', 'replace', VIP6, 'lladdr', BOGUS, 'dev', 'eth0', 'nud', 'stale']);
  await agentOk('director', ['apply', '-f', MANIFEST, ...STATE]);
  await until(`client's entry for ${VIP6} is the director's ${mac}`, () => clientNeighbour(VIP6) === mac);
});

/** `lvs-agent apply` in the director with only `caps` (the DaemonSet's securityContext, as a bounding set). */
function applyWithCaps(caps: string[]): { code: number | null; stderr: string } {
  const r = spawnSync('ip', ['netns', 'exec', 'director', 'setpriv', '--bounding-set', `-all,${caps.map((c) => `+${c}`).join(',')}`, '--',
    NODE, AGENT, 'apply', '-f', MANIFEST, ...STATE], { encoding: 'utf8', timeout: 300_000 });
  return { code: r.status, stderr: r.stderr };
}

test('the chart\'s capabilities: without NET_RAW the gratuitous ARP cannot go out (logged, nothing else fails); with NET_RAW it does', async () => {
  const mac = macOf('director', 'eth0');
  for (const [caps, sent] of [[['net_admin', 'sys_admin', 'sys_ptrace'], false], [['net_admin', 'net_raw', 'sys_admin', 'sys_ptrace'], true]] as const) {
    await agentOk('director', ['apply', '-f', MANIFEST, ...STATE, '--announce', 'none']);
    nsRun('client', ['ip', 'neigh', 'replace', VIP, 'lladdr', BOGUS, 'dev', 'eth0', 'nud', 'stale']);
    const r = applyWithCaps([...caps]);
    assert.is(r.code, 0, r.stderr);
    if (sent) {
      await until(`client's entry for ${VIP} is the director's ${mac}`, () => clientNeighbour(VIP) === mac);
    } else {
      assert.match(r.stderr, `could not announce ${VIP} on eth0 (arping)`);
      await new Promise((res) => setTimeout(res, 2000));
      assert.is(clientNeighbour(VIP), BOGUS, 'no gratuitous ARP reached the client');
    }
  }
});

test('cleanup removes the proxy entries with the VIPs; the real servers never answered for the VIP', async () => {
  await agentOk('director', ['cleanup', ...STATE]);
  assert.equal(JSON.parse(nsRun('director', ['ip', '-6', '-j', 'neigh', 'show', 'proxy'])), []);
  // arping from the client: only a real server could answer now, and DR preparation keeps them silent.
  const probe = nsSh('client', `arping -c 2 -w 3 -I eth0 ${VIP} >/dev/null 2>&1 && echo answered || echo silent`).trim();
  assert.is(probe, 'silent');
});

uvuSuite.run();
