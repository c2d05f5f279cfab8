// What the failover suites watch from outside the agents (test/ha/guest/election.guest.ts and
// cluster-election.guest.ts): which director answers ARP for the VIP, where the client's
// neighbour entry points, each failover's takeover time, and the streams' gaps around it.
import * as assert from 'uvu/assert';
import { nsRun, run } from '../../../lab/guest/netns.ts';
import { DIRECTORS, directorMacs, sleep, VIP, waitConns, type Director, type Macs } from './ha-net.ts';
import { startStreams, startStreamServer, stopStreamProcesses, summarize, type StreamRun } from '../../../lab/guest/streams.ts';
import { agentOk, type AgentProcess } from '../../kernel/guest/agent/cli.ts';
import type { Topology } from '../../../lab/guest/netns.ts';
import type { StreamConn } from '../../../lab/guest/stream.ts';

/**
 * Directors answering ARP for the VIP now: those holding it on lvs0 whose arp table drops no
 * request for it. One process for both (every spawn is costly under TCG, and polling must not
 * starve the agents it measures).
 */
export function announcers(): Director[] {
  const script = DIRECTORS.map((d) => `echo "== ${d}"; ip netns exec ${d} sh -c 'ip -br addr show dev lvs0 2>/dev/null; nft list table arp lvs_operator 2>/dev/null'; true`).join('\n');
  const parts = run(['sh', '-c', script]).split(/^== /m).slice(1);
  return DIRECTORS.filter((d, i) => {
    const t = parts[i] ?? '';
    return t.startsWith(d) && t.includes(`${VIP}/32`) && !t.includes(`arp daddr ip ${VIP} drop`);
  });
}

export const sole = (): Director | undefined => { const a = announcers(); return a.length === 1 ? a[0] : undefined; };

export function clientMac(): string {
  return (JSON.parse(nsRun('client', ['ip', '-j', 'neigh', 'show', VIP])) as Array<{ lladdr?: string }>)[0]?.lladdr ?? '';
}

export async function until<T>(what: string, probe: () => T | undefined, ms: number, everyMs = 20): Promise<T> {
  for (const end = Date.now() + ms; ; await sleep(everyMs)) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
  }
}

/** What both directors hold now, for a failure's message. */
export function diag(): string {
  return run(['sh', '-c', DIRECTORS.map((d) => `echo "== ${d}"; ip netns exec ${d} sh -c 'ipvsadm -L --daemon; ipvsadm -Lnc | grep -c ESTABLISHED; nft list table inet hasync | grep counter'`).join('\n') + '\nip -n client neigh show'])
    .split('\n').map((l) => `#   ${l}`).join('\n');
}

/** Per failover: what happened, when it started (wall ms), takeover ms (new announcer seen), client moved ms. */
export interface FailoverEvent { what: string; at: number; takeoverMs: number; clientMs: number }

/** Runs `act`, then measures until `to` announces and the client's entry points at it. */
export async function failover(events: FailoverEvent[], macs: Macs, what: string, to: Director, act: () => void, ms = 15_000): Promise<void> {
  const at = Date.now();
  act();
  const takeoverMs = await until(`${to} announces ${VIP} (${what})`, () => (announcers().includes(to) ? Date.now() - at : undefined), ms);
  const clientMs = await until(`client's entry for ${VIP} is ${to}'s MAC (${what})`, () => (clientMac() === macs.lan[to] ? Date.now() - at : undefined), ms);
  events.push({ what, at, takeoverMs, clientMs });
}

function gapOf(conns: StreamConn[], at: number, next: number): number {
  // The longest gap that ended between this failover and the next.
  return Math.max(0, ...conns.flatMap((c) => (c.gaps ?? []).filter(([end]) => end > at && end <= next).map(([, g]) => g)));
}

/** Stops the streams, prints gaps per failover and takeover times, and asserts every established stream survived. */
export async function reportStreams(streams: Record<string, StreamRun | undefined>, events: FailoverEvent[], perMethod: number): Promise<void> {
  const results = Object.fromEntries(await Promise.all(Object.entries(streams).map(async ([m, s]) => [m, await s!.stop()] as const)));
  const lines: string[] = [];
  const pct = (xs: number[], p: number) => [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)]!;
  const summaries = Object.entries(results).map(([m, conns]) => {
    const s = summarize(conns);
    const gaps = events.map((e, i) => gapOf(conns, e.at, events[i + 1]?.at ?? Infinity));
    lines.push(`${m}: ${s.survived}/${s.established} survived; per-failover gap ms p50 ${pct(gaps, 50)} p99 ${pct(gaps, 99)} max ${Math.max(...gaps)}; errors ${s.errors.join(',') || 'none'}`);
    return [m, s] as const;
  });
  const take = events.map((e) => e.takeoverMs), client = events.map((e) => e.clientMs);
  lines.push(`${events.length} failovers: takeover ms p50 ${pct(take, 50)} p99 ${pct(take, 99)} max ${Math.max(...take)}; client moved ms p50 ${pct(client, 50)} p99 ${pct(client, 99)}`);
  for (const e of events) lines.push(`  ${e.what}: takeover ${e.takeoverMs} ms, client moved ${e.clientMs} ms`);
  console.log(`\n${lines.map((l) => `# ${l}`).join('\n')}`);
  for (const [m, s] of summaries) {
    assert.is(s.established, perMethod, m);
    assert.is(s.survived, s.established, `${m}: ${JSON.stringify(s)}`);
  }
}

/** Suite teardown: each agent's warnings and election lines (the first 60), then kill agents, streams and namespaces. */
export async function teardown(agents: ReadonlyMap<Director, AgentProcess>, topo: Topology | undefined): Promise<void> {
  for (const [d, a] of agents) {
    const lines = a.stderr().split('\n');
    const picked = lines.filter((l) => /"level":(40|50)|membership|peers|election|announce|daemon|firstSync/.test(l)).slice(0, 60).map((l) => `#   ${l.slice(0, 300)}`);
    console.log(`\n# ${d} agent: ${lines.length} log lines; warnings, election, daemons and announcements (first 60):\n${picked.join('\n')}\n# stdout tail: ${a.stdout().split('\n').slice(-3).join(' | ')}`);
    await a.kill('SIGKILL');
  }
  stopStreamProcesses();
  topo?.destroy();
}

/** rs1 and rs2 prepared as DR and TUN real servers of the VIP, each with a stream server on `ports`. */
export async function prepareRealServers(ports: number[]): Promise<void> {
  for (const ns of ['rs1', 'rs2']) {
    for (const mode of ['DR', 'TUN']) await agentOk(undefined, ['prepare', '--forwarding', mode, '--vip', VIP, '--netns', ns]);
    await startStreamServer(ns, ports);
  }
}

/**
 * `conns` streams per port from the client, which finds the VIP by ARP (nothing static) at
 * `active`; checked established, the standby's sync daemon holding them all, then marked.
 */
export async function startSyncedStreams<K extends string>(ports: Record<K, number>, active: Director, conns: number): Promise<Record<K, StreamRun>> {
  const streams = {} as Record<K, StreamRun>;
  // A line per connection every 100 ms: 20 connections at 20 ms saturated the emulated guest.
  for (const [m, port] of Object.entries(ports) as Array<[K, number]>) streams[m] = await startStreams('client', { host: VIP, port, conns, intervalMs: 100, finalMs: 5000 });
  // The client found the VIP by ARP at the active director (or, if a gratuitous ARP of a director
  // that announced for a moment moved it, the active one's periodic announcement brings it back).
  const mac = directorMacs().lan[active];
  await until(`the client's entry for the VIP at ${active}`, () => (clientMac() === mac ? true : undefined), 15_000, 200);
  const where = () => run(['sh', '-c', [
    ...['rs1', 'rs2'].map((ns) => `echo "${ns}: $(ip netns exec ${ns} ss -Htn state established | wc -l) established"`),
    ...DIRECTORS.map((d) => `echo "${d}:"; ip netns exec ${d} ipvsadm -Lnc | sort | uniq -c | head -30`),
  ].join('\n')]).split('\n').map((l) => `#   ${l}`).join('\n');
  const runs = Object.entries(streams) as Array<[K, StreamRun]>;
  if (runs.some(([, s]) => s.established !== conns)) {
    assert.unreachable(`streams established: ${runs.map(([m, s]) => `${m} ${s.established}`).join(', ')} (of ${conns} each); active ${active}\n${where()}\n${diag()}`);
  }
  for (const d of DIRECTORS) nsRun(d, ['ipvsadm', '-L', '--daemon']).includes('backup') || assert.unreachable(`${d} runs no backup sync daemon`);
  const standby = DIRECTORS.find((d) => d !== active)!;
  for (const [m, s] of runs) {
    const port = ports[m];
    if ((await waitConns(standby, port, s.ports, 30_000)).ms === undefined) assert.unreachable(`${standby} did not get the connections to :${port} by sync in 30 s:\n${diag()}`);
  }
  for (const [, s] of runs) s.mark();
  console.log(`\n# active ${active}, standby ${standby}: streams established and synced`);
  return streams;
}

/** The active director's link goes down (the other takes over) and comes back (the preferred one, by the rendezvous hash, takes back at once). */
export async function linkCycle(events: FailoverEvent[], macs: Macs, note = ''): Promise<void> {
  const a = sole() ?? await until('one announcer', sole, 10_000);
  const b = DIRECTORS.find((d) => d !== a)!;
  await failover(events, macs, `link down ${a}${note}`, b, () => nsRun(a, ['ip', 'link', 'set', 'eth0', 'down']));
  await sleep(1000);
  await failover(events, macs, `link up ${a}${note}`, a, () => nsRun(a, ['ip', 'link', 'set', 'eth0', 'up']));
  await until('one announcer again', sole, 10_000);
  await sleep(1000);
}
