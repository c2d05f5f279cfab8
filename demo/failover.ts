// The demo's last part, inside the VM: one director failover, live. keepalived's classic
// two-director setup, done by lvs-agent alone: two standalone directors run `lvs-agent apply
// --watch` with the same DR VirtualServer and each other as --peer (HMAC-authenticated UDP
// heartbeats, a rendezvous election per VIP, gratuitous ARP on takeover, the kernel's IPVS
// connection sync both ways; docs/ha.md). A client keeps long-lived TCP streams through the VIP;
// the active director's LAN link goes down (the node gone from the network); the other takes over
// and the streams go on. Mirrors the ha tier (test/ha/guest/election.guest.ts) on a network of its own:
//
//   hacl 198.51.100.130 ── halan 198.51.100.128/25 ──┬── hadir1 .131, hadir2 .132 (VIP 198.51.100.150 on lvs0 of both;
//                                                    │   only the elected one answers ARP for it)
//                                                    └── hars1 .141, hars2 .142 (DR real servers: VIP on lo)
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseConnections } from '../lab/guest/agent-net.ts';
import { createTopology, nsRun, run, type Topology } from '../lab/guest/netns.ts';
import { startStreams, stopStreamProcesses, summarize } from '../lab/guest/streams.ts';
import type { StreamConn } from '../lab/guest/stream.ts';
import { AGENT_ENTRY } from '../lab/vm/guest-agent.ts';
import { agent, claim, ClaimFailed, say } from './common.ts';

const VIP = '198.51.100.150';
const PORT = 8080;
const CLIENT = 'hacl';
const DIRECTORS = ['hadir1', 'hadir2'] as const;
type Director = typeof DIRECTORS[number];
const ADDR: Record<Director, string> = { hadir1: '198.51.100.131', hadir2: '198.51.100.132' };
const REAL_SERVERS = { hars1: '198.51.100.141', hars2: '198.51.100.142' };
const MANIFEST = '/run/demo-failover.yaml';
const KEY = '/run/demo-failover.key';
const STREAMS = 10;
/** The ha tier's timers under TCG (the reason is printed with them); warm-up 2 s instead of 5 s. */
const TIMING = ['--peer-interval-ms', '200', '--peer-dead-ms', '1000', '--peer-warmup-ms', '2000'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const s1 = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

const MANIFEST_TEXT = `apiVersion: lvs.dev/v1alpha1
kind: VirtualServer
metadata: {name: failover-dr}
spec:
  addresses: [${VIP}]
  ports: [{name: stream, port: ${PORT}, protocol: TCP}]
  forwarding: DR
  scheduler: {name: rr}
  backends: {static: [${Object.values(REAL_SERVERS).map((a) => `{address: ${a}}`).join(', ')}]}
`;

function network(): Topology {
  const host = (ns: string, addr: string, forwarding = false) => ({ ns, forwarding, links: [{ lan: 'halan', addrs: [`${addr}/25`] }] });
  return createTopology({
    lans: ['halan'],
    hosts: [host(CLIENT, '198.51.100.130'), ...DIRECTORS.map((d) => host(d, ADDR[d], true)), ...Object.entries(REAL_SERVERS).map(([ns, a]) => host(ns, a))],
  });
}

interface DirectorProcess { logs(): LogLine[]; waitForStderr(re: RegExp, ms: number): Promise<void>; stop(): Promise<void> }
/** The fields of the agent's pino lines used here (time: the agent's Date.now(), the VM's one clock). */
interface LogLine { time: number; msg: string; members?: string[]; fresh?: string[] }

/** `lvs-agent apply --watch` in namespace `d`, the other director as its peer. */
function startDirector(d: Director): DirectorProcess {
  const other = DIRECTORS.find((x) => x !== d)!;
  const child = spawn('ip', ['netns', 'exec', d, process.execPath, AGENT_ENTRY, 'apply', '--watch', '-f', MANIFEST,
    '--state-file', `/run/demo-${d}.json`, '--node-name', d, '--peer', `${ADDR[other]}:7480`, '--peer-listen', `${ADDR[d]}:7480`,
    '--peer-key-file', KEY, '--sync-interface', 'eth0', '--sync-id', '9', ...TIMING], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => { err += s; });
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  process.once('exit', () => child.kill('SIGKILL'));
  return {
    logs: () => err.split('\n').filter((l) => l.startsWith('{')).map((l) => { try { return JSON.parse(l) as LogLine; } catch { return undefined; } }).filter((l) => l !== undefined),
    async waitForStderr(re, ms) {
      for (const end = Date.now() + ms; !re.test(err); await sleep(100)) {
        if (child.exitCode !== null || Date.now() > end) throw new ClaimFailed(`${d}'s agent logged nothing matching ${re} (exit ${child.exitCode}):\n${err.split('\n').slice(-15).join('\n')}`);
      }
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** `ip monitor neigh` in the client: when its entry for the VIP changed to which MAC (wall ms), without polling. */
function watchClientNeighbour(): { changes: Array<{ at: number; mac: string }>; stop(): void } {
  const child = spawn('ip', ['-n', CLIENT, 'monitor', 'neigh'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const changes: Array<{ at: number; mac: string }> = [];
  createInterface(child.stdout!).on('line', (l) => {
    const m = new RegExp(`^${VIP.replace(/\./g, '\\.')} .*lladdr (\\S+)`).exec(l);
    if (m) changes.push({ at: Date.now(), mac: m[1]! });
  });
  process.once('exit', () => child.kill('SIGKILL'));
  return { changes, stop: () => void child.kill('SIGKILL') };
}

interface Seen { announcing: Director[]; clientMac: string }

/**
 * In one process (every spawn is costly under TCG): which directors answer ARP for the VIP (it is
 * on their lvs0 and their arp table drops no request for it), and the MAC of the client's
 * neighbour entry for the VIP.
 */
function observe(): Seen {
  const script = [
    ...DIRECTORS.map((d) => `echo "== ${d}"; ip netns exec ${d} sh -c 'ip -br addr show dev lvs0 2>/dev/null; nft list table arp lvs_operator 2>/dev/null'; true`),
    `echo "== ${CLIENT}"; ip -n ${CLIENT} neigh show ${VIP}`,
  ];
  const parts = run(['sh', '-c', script.join('\n')]).split(/^== /m).slice(1);
  const announcing = DIRECTORS.filter((d, i) => {
    const t = parts[i] ?? '';
    return t.startsWith(d) && t.includes(`${VIP}/32`) && !t.includes(`arp daddr ip ${VIP} drop`);
  });
  return { announcing, clientMac: /lladdr (\S+)/.exec(parts[DIRECTORS.length] ?? '')?.[1] ?? '' };
}

const macOf = (ns: string) => (JSON.parse(nsRun(ns, ['ip', '-j', 'link', 'show', 'dev', 'eth0'])) as Array<{ address: string }>)[0]!.address;

async function poll<T>(what: string, probe: () => T | undefined, ms: number, everyMs: number): Promise<T> {
  for (const end = Date.now() + ms; ; await sleep(everyMs)) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new ClaimFailed(`not within ${ms} ms: ${what}`);
  }
}

/** ESTABLISHED IPVS connections to the VIP in `d`'s table (the standby's come from the sync). */
function established(d: Director): number {
  return parseConnections(nsRun(d, ['ipvsadm', '-Lnc'])).filter((c) => c.virtual === `${VIP}:${PORT}` && c.state === 'ESTABLISHED').length;
}

/** Real servers prepared and echoing, both directors started and eligible: the one announcing. */
async function setUp(): Promise<Director> {
  writeFileSync(MANIFEST, MANIFEST_TEXT);
  writeFileSync(KEY, 'the shared secret of the two demo directors\n');
  say(`  two directors run \`lvs-agent apply --watch -f ${MANIFEST} --peer <the other>:7480 --peer-key-file ${KEY} --sync-interface eth0\``);
  say(`  ${TIMING.join(' ')}: the ha tier's timers under emulation; the defaults (100 / 350 / 5000 ms) are for real hardware, where no process stalls for hundreds of ms as they do under TCG, and the warm-up (a restarted director waits for the sync to refill its connection table before it may take a VIP back) has nothing to wait for in directors that start together with no connections`);
  const started = Date.now();
  for (const d of DIRECTORS) directors.set(d, startDirector(d));
  // While the two agents load: the real servers, echoing with socat (a Node process per server
  // would cost several seconds more of the emulated CPU the agents are loading on).
  for (const ns of Object.keys(REAL_SERVERS)) say(`  ${(await agent(undefined, ['prepare', '--forwarding', 'DR', '--vip', VIP, '--netns', ns])).trim()}`);
  await echoServers();
  say(`  echo servers (socat) on :${PORT} in ${Object.keys(REAL_SERVERS).join(' and ')} (${s1(Date.now() - started)} after the agents were started)`);
  // Eligible: each has heard the other and both warmed up (the log lists neither as "not eligible").
  for (const d of directors.values()) await d.waitForStderr(/"members":\["hadir1","hadir2"\]/, 240_000);
  const active = await poll('exactly one director answers ARP for the VIP', () => { const a = observe().announcing; return a.length === 1 ? a[0] : undefined; }, 30_000, 200);
  const first = DIRECTORS.map((d) => `${d} ${s1((directors.get(d)!.logs()[0]?.time ?? NaN) - started)}`).join(', ');
  say(`  both directors see each other as eligible members; elected for ${VIP}: ${active} (${s1(Date.now() - started)} after both agents were started; their first log lines: ${first})`);
  return active;
}

const directors = new Map<Director, DirectorProcess>();
const echoes: ChildProcess[] = [];

/** `socat TCP-LISTEN:PORT,fork PIPE` in each real server (echoes every byte back), once all listen. */
async function echoServers(): Promise<void> {
  for (const ns of Object.keys(REAL_SERVERS)) {
    const child = spawn('ip', ['netns', 'exec', ns, 'socat', `TCP-LISTEN:${PORT},reuseaddr,fork,backlog=64`, 'PIPE'], { stdio: 'ignore', detached: true });
    echoes.push(child);
    process.once('exit', () => { try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ } });
  }
  const listening = () => Object.keys(REAL_SERVERS).every((ns) => nsRun(ns, ['ss', '-Hltn', `sport = :${PORT}`]).trim() !== '');
  await poll(`socat listening on :${PORT} in every real server`, () => (listening() ? true : undefined), 30_000, 200);
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2; };

interface Measured { downMs: number; detectMs: number; takeoverMs: number; clientMs: number; clientHow: string; log: string[] }

/** The first log line of `d` after `at` that `match`es: its time minus `at`. */
async function logged(d: Director, at: number, what: string, match: (l: LogLine) => boolean): Promise<number> {
  const find = () => directors.get(d)!.logs().find((l) => l.time >= at && match(l));
  return (await poll(`${d} logs ${what}`, find, 30_000, 50)).time - at;
}

/**
 * Link down of the active director's LAN interface; then from the standby's own log, when it
 * dropped the dead peer and when it next answered ARP for the VIP (nft changed, gratuitous ARP
 * sent next), and from the client's `ip monitor neigh`, since when its entry has been the
 * standby's MAC. No polling spawns meanwhile: under TCG each costs the agents CPU time.
 */
async function failOver(active: Director, standby: Director, standbyMac: string, neigh: ReturnType<typeof watchClientNeighbour>): Promise<Measured> {
  const at = Date.now();
  nsRun(active, ['ip', 'link', 'set', 'eth0', 'down']);
  const downMs = Date.now() - at;
  const detectMs = await logged(standby, at, `${active} gone`, (l) => l.msg === 'director membership changed' && !(l.members ?? []).some((m) => m.startsWith(active)));
  const takeoverMs = detectMs + await logged(standby, at + detectMs, `announcing ${VIP}`, (l) => l.msg === 'announcements changed' && (l.fresh ?? []).includes(VIP));
  const movedAt = () => {
    const after = neigh.changes.filter((c) => c.at >= at);
    const last = after.findLastIndex((c) => c.mac !== standbyMac);
    return after.at(-1)?.mac === standbyMac ? after[last + 1]!.at : undefined;
  };
  // Should `ip monitor` miss the change, a read of the entry every second still sees it (then said so).
  let n = 0;
  const read = () => (++n % 20 === 0 && observe().clientMac === standbyMac ? Date.now() : undefined);
  const seen = await poll(`the client's entry for ${VIP} moves to ${standby}`, () => (movedAt() !== undefined ? { t: movedAt()!, how: 'ip monitor neigh' } : (read() !== undefined ? { t: Date.now(), how: 'read every second: ip monitor neigh printed nothing' } : undefined)), 30_000, 50);
  const log = directors.get(standby)!.logs().filter((l) => l.time >= at && /membership|announcements/.test(l.msg)).map((l) => `+${l.time - at} ms ${l.msg} ${JSON.stringify(l.members ?? l.fresh)}`);
  return { downMs, detectMs, takeoverMs, clientMs: seen.t - at, clientHow: seen.how, log };
}

function report(conns: StreamConn[], est: number): void {
  const s = summarize(conns);
  const gaps = conns.filter((c) => c.established).map((c) => c.maxGapMs);
  say(`  streams: ${s.survived} of ${s.established} survived (each echoed its last line after the failover, none reset)${s.errors.length ? `; errors: ${s.errors.join(', ')}` : ''}`);
  say(`  client-visible gap (longest pause between two echoes, per stream, from the link going down to the end): median ${median(gaps)} ms, max ${Math.max(...gaps)} ms`);
  say(`  per stream: ${gaps.join(' ')} ms`);
  claim(s.established === est && s.survived === s.established, `${s.survived} of ${s.established} established streams survived (${est} were established before the failover); errors ${s.errors.join(', ') || 'none'}`);
}

const lastMembers = (d: Director) => directors.get(d)!.logs().filter((l) => l.msg === 'director membership changed').at(-1);
/** No membership change for this long before the failure: a flap in progress would blur what is measured. */
const QUIET_MS = 3000;

/**
 * The director the client uses, once the state is stable: it alone answers ARP, the client's entry
 * is its MAC, and each director's last membership log line lists both as eligible, 3 s ago or more. Under a loaded
 * TCG host a stall can outlast the dead interval: each side then announces for a moment, and the
 * client may follow a gratuitous ARP until the periodic one (every 10 s) brings it back.
 */
async function settled(mac: Record<Director, string>): Promise<{ active: Director; flaps: number }> {
  const active = await poll(`one director answers ARP, the client points at it, both are members, no change for ${QUIET_MS} ms`, () => {
    const o = observe();
    const quiet = DIRECTORS.every((d) => lastMembers(d)?.members?.join() === DIRECTORS.join() && Date.now() - lastMembers(d)!.time > QUIET_MS);
    const ok = quiet && o.announcing.length === 1 && o.clientMac === mac[o.announcing[0]!];
    return ok ? o.announcing[0] : undefined;
  }, 90_000, 1000);
  // Membership changes each director logged after it first saw both eligible.
  const flaps = DIRECTORS.reduce((n, d) => {
    const lines = directors.get(d)!.logs().filter((l) => l.msg === 'director membership changed');
    const first = lines.findIndex((l) => l.members?.join() === DIRECTORS.join());
    return n + (first < 0 ? 0 : lines.length - first - 1);
  }, 0);
  return { active, flaps };
}

/** Streams through the active director, synced to the other; the active one dies; what the client saw. */
async function demoFailover(neigh: ReturnType<typeof watchClientNeighbour>): Promise<void> {
  await setUp();
  const mac = Object.fromEntries(DIRECTORS.map((d) => [d, macOf(d)])) as Record<Director, string>;
  const streams = await startStreams(CLIENT, { host: VIP, port: PORT, conns: STREAMS, intervalMs: 100, finalMs: 5000 });
  const up = Date.now();
  say(`  client: ${streams.established} TCP streams to ${VIP}:${PORT}, each sending a line every 100 ms that the real server echoes`);
  claim(streams.established === STREAMS, `${streams.established} of ${STREAMS} streams established`);
  // Synced first (to whichever is standby then), then the state checked right before the failure.
  const syncMs = await poll(`both directors hold the ${STREAMS} connections`, () => (DIRECTORS.every((d) => established(d) >= STREAMS) ? Date.now() - up : undefined), 45_000, 1000);
  const { active, flaps } = await settled(mac);
  const standby = DIRECTORS.find((d) => d !== active)!;
  say(`  client's neighbour entry for ${VIP}: ${mac[active]} = ${active}'s eth0 (${DIRECTORS.map((d) => `${d} ${mac[d]}`).join(', ')}); ${active} alone answers ARP for it` +
    (flaps ? ` (after ${flaps} membership change(s) logged since both were first eligible: stalls of the emulated guest outlasting the 1 s dead interval)` : ''));
  say(`  ${standby} (standby) holds all ${STREAMS} connections in its IPVS table too, copied by the kernel's sync daemons (seen ${s1(syncMs)} after the streams were up; polled every second)`);
  say(`\n== ${active} dies: ip link set eth0 down in ${active} (its only LAN link: the node is gone from the network)`);
  streams.mark();
  const m = await failOver(active, standby, mac[standby], neigh);
  say(`  \`ip link set eth0 down\` returned after ${m.downMs} ms (times below count from its start)`);
  say(`  ${standby}'s log since: ${m.log.join('; ')}`);
  say(`  takeover: ${standby} dropped ${active} from its members at ${m.detectMs} ms (dead after 1000 ms without a heartbeat) and answered ARP for ${VIP} at ${m.takeoverMs} ms; the client's entry has been ${mac[standby]} (${standby}) since ${m.clientMs} ms (${m.clientHow})`);
  await sleep(3000);
  const conns = await streams.stop();
  report(conns, streams.established);
  const after = observe();
  claim(after.clientMac === mac[standby] && after.announcing.includes(standby), `the client's entry for ${VIP} is ${after.clientMac}, not ${standby}'s ${mac[standby]}; answering ARP: ${after.announcing.join(', ') || 'none'}`);
  say(`  (checked: all streams survived, and the client now points at ${standby})`);
}

/** The failover demo on its own namespaces, torn down afterwards whatever happened. */
export async function failover(): Promise<void> {
  say('\n== failover: two standalone directors for one VIP (keepalived\'s classic two-director setup, done by lvs-agent: heartbeats, election, gratuitous ARP, IPVS connection sync)');
  const t0 = Date.now();
  const topo = network();
  const neigh = watchClientNeighbour();
  say(`  own network: client ${CLIENT}, directors ${DIRECTORS.join(' and ')}, DR real servers ${Object.keys(REAL_SERVERS).join(' and ')} on one L2 segment; VIP ${VIP}:${PORT}, DR, rr`);
  try {
    await demoFailover(neigh);
    say(`  (this part of the demo took ${s1(Date.now() - t0)})`);
  } finally {
    neigh.stop();
    for (const d of directors.values()) await d.stop();
    stopStreamProcesses();
    for (const e of echoes) { try { process.kill(-e.pid!, 'SIGKILL'); } catch { /* gone */ } }
    topo.destroy();
  }
}
