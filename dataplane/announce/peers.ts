// Director membership: which directors are alive and eligible, learned from each other directly.
// The apiserver may be down exactly when a director fails (same outage, same network), so no
// Lease: every director sends a small authenticated heartbeat to every configured peer each
// intervalMs and treats a peer as gone after deadAfterMs of silence (350 ms by default), which is
// what bounds VIP failover.
//
// Why unicast to a configured list and not multicast: unicast UDP crosses any L2/L3 path and works
// in Kubernetes host networking with no IGMP snooping/querier to get right, no multicast routing,
// and no surprise from switches that flood or drop multicast; the peer list is also a cheap first
// filter (a datagram from an address not in it is dropped before any hashing).
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import pino, { type Logger } from 'pino';
import { canonicalIp, ipFamily } from '../../api/ip.ts';
import type { Member } from './election.ts';
import { PeerTable, type TableReject } from './table.ts';
import { decodeHeartbeat, encodeHeartbeat, MIN_KEY_BYTES, validNodeName, type WireReject } from './wire.ts';

export interface Endpoint {
  address: string;
  port: number;
}

/**
 * A peer to beat to. With `node`, heartbeats from this endpoint must claim that node name: in a
 * cluster every agent publishes its endpoint in its own node's AgentReport (which only that node
 * may write), so a key holder elsewhere cannot speak for another node from its own address.
 */
export interface PeerEndpoint extends Endpoint {
  node?: string;
}

export interface PeersOptions {
  /** This director's node name; sent in every heartbeat. */
  node: string;
  /**
   * Heartbeats are sent from this socket, so a peer's datagrams come from its listen address and
   * port, which is what the peer list is matched against (no NAT between directors).
   */
  listen: Endpoint;
  /** Every other director (listing our own listen endpoint too is harmless: it is skipped). */
  peers: PeerEndpoint[];
  /** Shared secret for the heartbeat HMAC, at least 16 bytes. */
  key: Buffer;
  /** Heartbeat period. Default 100 ms. */
  intervalMs?: number;
  /** Silence after which a peer is no longer a member. Default 3.5 × intervalMs. */
  deadAfterMs?: number;
  /** Whether we may announce VIPs now; sampled at each heartbeat (and it is what we advertise). */
  eligible: () => boolean;
  /** Whether we are yielding (./election.ts): sampled and advertised with eligible. Default never. */
  yielding?: () => boolean;
  /** Monotonic ms: liveness must not jump when the wall clock is stepped. */
  clock: { now(): number };
  /** Wall clock ms, sent in heartbeats to order incarnations. Default Date.now. */
  wallClock?: () => number;
  /** Called when the member list or someone's eligibility changes (not for the initial list). */
  onChange: (members: Member[]) => void;
  logger?: Logger;
  socketFactory?: (type: 'udp4' | 'udp6') => Socket;
}

export type RejectReason = 'source' | WireReject | TableReject;
const REASONS: readonly RejectReason[] = ['source', 'length', 'version', 'hmac', 'malformed', 'self', 'replay', 'stale-incarnation', 'capacity'];

export interface PeersStats {
  /** Datagrams handed to the kernel. */
  sent: number;
  sendErrors: number;
  received: number;
  accepted: number;
  rejected: Record<RejectReason, number>;
}

export interface Peers {
  /**
   * Self (with its last sampled eligibility) and every peer heard within deadAfterMs, sorted by
   * name: the list onChange last received (or the initial one), refreshed every intervalMs.
   */
  members(): Member[];
  stats(): PeersStats;
  /**
   * Replaces the peer list (cluster mode: the AgentReports changed). Entries of the wrong address
   * family or with a bad port are skipped, each logged: the list comes from other nodes' reports
   * and must not stop the election. Members heard before stay until they fall silent.
   */
  setPeers(peers: readonly PeerEndpoint[]): void;
  /** Stops heartbeats and the liveness check and closes the socket. Idempotent. */
  close(): Promise<void>;
}

/** A rejected datagram is logged at most this often per reason (a flood must not flood the log). */
const REJECT_LOG_EVERY_MS = 10_000;

function endpointKey(address: string, port: number): string {
  return `${canonicalIp(address) ?? address}|${port}`;
}

function sourcesOf(targets: readonly PeerEndpoint[]): Map<string, string> {
  return new Map(targets.map((p) => [endpointKey(p.address, p.port), p.node ?? '']));
}

interface Settings {
  intervalMs: number;
  deadAfterMs: number;
  family: 4 | 6;
  /** Our own listen endpoint (endpointKey): never a target. */
  self: string;
  targets: PeerEndpoint[];
}

/** Throws on the first bad option, naming it. */
function settings(o: PeersOptions): Settings {
  if (!validNodeName(o.node)) throw new Error(`node: not a valid node name: ${JSON.stringify(o.node)}`);
  if (!Buffer.isBuffer(o.key) || o.key.length < MIN_KEY_BYTES) {
    throw new Error(`key: the shared secret must be a Buffer of at least ${MIN_KEY_BYTES} bytes`);
  }
  const intervalMs = o.intervalMs ?? 100;
  if (!Number.isFinite(intervalMs) || intervalMs <= 0) throw new Error(`intervalMs: must be > 0, got ${intervalMs}`);
  const deadAfterMs = o.deadAfterMs ?? 3 * intervalMs + intervalMs / 2;
  if (!Number.isFinite(deadAfterMs) || deadAfterMs <= intervalMs) {
    throw new Error(`deadAfterMs: must be > intervalMs (${intervalMs}), got ${deadAfterMs}`);
  }
  const family = ipFamily(o.listen.address);
  if (family === undefined) throw new Error(`listen.address: not an IP address: ${JSON.stringify(o.listen.address)}`);
  checkPort('listen.port', o.listen.port, true);
  o.peers.forEach((p, i) => {
    if (ipFamily(p.address) !== family) throw new Error(`peers[${i}].address: not an IPv${family} address: ${JSON.stringify(p.address)}`);
    checkPort(`peers[${i}].port`, p.port, false);
  });
  const self = endpointKey(o.listen.address, o.listen.port);
  const targets = o.peers.filter((p) => endpointKey(p.address, p.port) !== self);
  return { intervalMs, deadAfterMs, family, self, targets };
}

function checkPort(field: string, port: number, zeroOk: boolean): void {
  if (!Number.isInteger(port) || port < (zeroOk ? 0 : 1) || port > 65535) throw new Error(`${field}: not a port: ${port}`);
}

async function bind(socket: Socket, listen: Endpoint): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    socket.once('error', onError);
    socket.bind(listen.port, listen.address, () => { socket.off('error', onError); resolve(); });
  });
}

export async function startPeers(o: PeersOptions): Promise<Peers> {
  const s = settings(o);
  const type = s.family === 4 ? 'udp4' : 'udp6';
  const socket = o.socketFactory ? o.socketFactory(type) : createSocket({ type, ipv6Only: s.family === 6 });
  try {
    await bind(socket, o.listen);
  } catch (err) {
    socket.close();
    throw err;
  }
  return new Membership(o, s, socket);
}

class Membership implements Peers {
  readonly #o: PeersOptions;
  readonly #s: Settings;
  readonly #socket: Socket;
  readonly #log: Logger;
  readonly #wall: () => number;
  readonly #table: PeerTable;
  /** Peer endpoint (endpointKey) → the node it must claim, or '' when any key holder's name goes. */
  #sources: Map<string, string>;
  // Random per start: a restarted agent begins again at seq 1, and the incarnation (with its wall
  // time) is how peers tell "restarted" from "replayed".
  readonly #incarnation = randomBytes(8).readBigUInt64BE(0);
  #seq = 0n;
  #selfEligible: boolean;
  #selfYielding = false;
  /** The list last reported (or the initial one): what members() returns. */
  #current: Member[];
  #lastReported: string;
  #timer: NodeJS.Timeout | undefined;
  #immediate: NodeJS.Immediate | undefined;
  #closed: Promise<void> | undefined;
  readonly #stats: PeersStats;
  readonly #lastRejectLog = new Map<RejectReason, { at: number; suppressed: number }>();

  constructor(o: PeersOptions, s: Settings, socket: Socket) {
    this.#o = o;
    this.#s = s;
    this.#socket = socket;
    this.#log = (o.logger ?? pino({ enabled: false })).child({ component: 'announce-peers', node: o.node });
    this.#wall = o.wallClock ?? Date.now;
    // Only key holders can add names, but cap them anyway: a few per configured peer (renames).
    this.#table = new PeerTable(o.node, s.deadAfterMs, 4 * o.peers.length + 16);
    this.#sources = sourcesOf(s.targets);
    this.#stats = { sent: 0, sendErrors: 0, received: 0, accepted: 0, rejected: Object.fromEntries(REASONS.map((r) => [r, 0])) as Record<RejectReason, number> };
    this.#selfEligible = this.#sampleEligible();
    this.#selfYielding = this.#sampleYielding();
    this.#current = this.#table.members(o.clock.now(), this.#selfEligible, this.#selfYielding);
    this.#lastReported = this.#key(this.#current);
    socket.on('message', (buf, rinfo) => this.#receive(buf, rinfo));
    socket.on('error', (err) => this.#log.error({ err }, 'announce socket error'));
    // First heartbeat now, so peers learn of a (re)started director without waiting an interval.
    this.#tick();
    this.#timer = setInterval(() => this.#tick(), s.intervalMs);
  }

  // The list as of the last liveness check (at most one interval old), not recomputed here: a
  // caller must never see a state onChange was not given, e.g. peers that look expired in the
  // middle of a stall only because their queued heartbeats are not read yet.
  members(): Member[] {
    return this.#current.map((m) => ({ ...m }));
  }

  stats(): PeersStats {
    return { ...this.#stats, rejected: { ...this.#stats.rejected } };
  }

  setPeers(peers: readonly PeerEndpoint[]): void {
    const targets: PeerEndpoint[] = [];
    for (const p of peers) {
      const address = canonicalIp(p.address);
      if (!address || ipFamily(address) !== this.#s.family || !Number.isInteger(p.port) || p.port < 1 || p.port > 65535) {
        this.#log.warn({ peer: p }, `peer skipped: not an IPv${this.#s.family} address and port`);
        continue;
      }
      if (endpointKey(address, p.port) !== this.#s.self) targets.push({ ...p, address });
    }
    this.#s.targets = targets;
    this.#sources = sourcesOf(targets);
    this.#table.reserve(4 * targets.length + 16);
  }

  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      clearInterval(this.#timer);
      clearImmediate(this.#immediate);
      this.#timer = undefined;
      this.#immediate = undefined;
      this.#socket.close(() => resolve());
    });
    return this.#closed;
  }

  #sampleEligible(): boolean {
    try {
      return this.#o.eligible() === true;
    } catch (err) {
      // A broken health probe must not stop heartbeats (peers would see us die and re-elect
      // anyway); advertising "ineligible" moves our VIPs the same way while we stay visible.
      this.#log.warn({ err }, 'eligible() threw; advertising ineligible');
      return false;
    }
  }

  #sampleYielding(): boolean {
    try {
      return this.#o.yielding?.() === true;
    } catch (err) {
      // Unknown: as before the node was drained (the VIPs stay where they are).
      this.#log.warn({ err }, 'yielding() threw; advertising not yielding');
      return false;
    }
  }

  /** One heartbeat to every peer, then the liveness check (a silent peer lapses here). */
  #tick(): void {
    if (this.#closed) return;
    this.#selfEligible = this.#sampleEligible();
    this.#selfYielding = this.#sampleYielding();
    this.#seq += 1n;
    const wallMs = BigInt(Math.max(0, Math.floor(this.#wall())));
    const buf = encodeHeartbeat({ node: this.#o.node, incarnation: this.#incarnation, seq: this.#seq, eligible: this.#selfEligible, ...(this.#selfYielding ? { yielding: true } : {}), wallMs }, this.#o.key);
    for (const p of this.#s.targets) {
      this.#socket.send(buf, p.port, p.address, (err) => {
        if (!err) { this.#stats.sent += 1; return; }
        this.#stats.sendErrors += 1;
        if (this.#stats.sendErrors === 1 || this.#stats.sendErrors % 1000 === 0) {
          this.#log.warn({ err, peer: `${p.address}:${p.port}`, sendErrors: this.#stats.sendErrors }, 'heartbeat send failed');
        }
      });
    }
    this.#scheduleCheck();
  }

  /**
   * Judge liveness once this loop turn's I/O is read, never halfway: timers run before libuv polls
   * the socket, and one datagram is handled before the next is read, so after a stall of our own
   * (GC, CPU starvation) longer than deadAfterMs an immediate check would drop every peer whose
   * heartbeats are already queued here, announce their VIPs for a moment and flap back.
   * setImmediate runs after the poll phase has read what was queued. If the stall came between
   * scheduling and running (other immediates, GC), the check runs late in the same check phase,
   * with no read in between: then it waits one more turn, whose poll phase comes first.
   */
  #scheduleCheck(): void {
    if (this.#immediate) return;
    const at = this.#o.clock.now();
    this.#immediate = setImmediate(() => {
      if (this.#o.clock.now() - at <= this.#s.intervalMs / 4) return this.#runCheck();
      this.#immediate = setImmediate(() => this.#runCheck());
    });
  }

  #runCheck(): void {
    this.#immediate = undefined;
    this.#check();
  }

  #receive(buf: Buffer, rinfo: RemoteInfo): void {
    if (this.#closed) return;
    this.#stats.received += 1;
    // Cheapest filter first: strangers never cost us an HMAC.
    const bound = this.#sources.get(endpointKey(rinfo.address, rinfo.port));
    if (bound === undefined) return this.#reject('source', rinfo);
    const hb = decodeHeartbeat(buf, this.#o.key);
    if (typeof hb === 'string') return this.#reject(hb, rinfo);
    if (bound !== '' && hb.node !== bound) return this.#reject('source', rinfo, hb.node);
    const result = this.#table.accept(hb, this.#o.clock.now());
    if (result === 'new' || result === 'restarted' || result === 'update') {
      this.#stats.accepted += 1;
      if (result !== 'update') this.#log.info({ peer: hb.node, from: rinfo.address, result }, 'peer heard');
      this.#scheduleCheck();
      return;
    }
    this.#reject(result, rinfo, hb.node);
  }

  #reject(reason: RejectReason, rinfo: RemoteInfo, claimed?: string): void {
    this.#stats.rejected[reason] += 1;
    const now = this.#o.clock.now();
    const last = this.#lastRejectLog.get(reason);
    if (last && now - last.at < REJECT_LOG_EVERY_MS) { last.suppressed += 1; return; }
    this.#log.debug({ reason, from: `${rinfo.address}:${rinfo.port}`, size: rinfo.size, claimed, suppressed: last?.suppressed ?? 0 }, 'heartbeat rejected');
    this.#lastRejectLog.set(reason, { at: now, suppressed: 0 });
  }

  #key(members: Member[]): string {
    return members.map((m) => `${m.node}=${m.eligible ? 1 : 0}${m.yielding ? 'y' : ''}`).join(',');
  }

  /** Reports the member list if it differs from the last one reported. */
  #check(): void {
    if (this.#closed) return;
    const members = this.#table.members(this.#o.clock.now(), this.#selfEligible, this.#selfYielding);
    const key = this.#key(members);
    if (key === this.#lastReported) return;
    this.#log.info({ members: key, before: this.#lastReported }, 'announce members changed');
    this.#lastReported = key;
    this.#current = members;
    try {
      this.#o.onChange(this.members());
    } catch (err) {
      this.#log.error({ err }, 'onChange threw');
    }
  }
}
