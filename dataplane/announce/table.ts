// What we know about each peer, and whether an authenticated heartbeat is new. Pure (time is a
// parameter), so the replay rules are tested without sockets.
//
// The HMAC proves a heartbeat came from a key holder, not that it is fresh: anyone on the segment
// can capture one and send it again, and a replayed "alive, eligible" from a dead director would
// keep it the owner of its VIPs with nobody answering ARP for them. Hence:
//  - within one incarnation (one agent run), seq must grow: a resent datagram is never news;
//  - a different incarnation must carry a newer wall time than the last one accepted from that
//    node, so datagrams from a previous life (captured before a restart) cannot displace the
//    current one or revive the node after it dies.
// A node's replay state is kept after it goes silent (only its liveness lapses), because that is
// exactly when a replay would do harm. Its cost is bounded by `capacity` node names.
import type { Member } from './election.ts';
import type { Heartbeat } from './wire.ts';

export type TableReject = 'self' | 'replay' | 'stale-incarnation' | 'capacity';

interface PeerState {
  incarnation: bigint;
  seq: bigint;
  wallMs: bigint;
  eligible: boolean;
  yielding: boolean;
  /** Monotonic ms of the last accepted heartbeat: liveness is measured on our clock, not theirs. */
  heardAt: number;
}

export type Accepted = 'new' | 'restarted' | 'update';

export class PeerTable {
  readonly #self: string;
  readonly #deadAfterMs: number;
  #capacity: number;
  readonly #peers = new Map<string, PeerState>();

  constructor(self: string, deadAfterMs: number, capacity: number) {
    this.#self = self;
    this.#deadAfterMs = deadAfterMs;
    this.#capacity = capacity;
  }

  /** Raises the number of node names kept (the peer list grew); never lowers it. */
  reserve(capacity: number): void {
    this.#capacity = Math.max(this.#capacity, capacity);
  }

  /** Records `hb` heard at `now`, or says why it is not news. */
  accept(hb: Heartbeat, now: number): Accepted | TableReject {
    // Our own name from elsewhere: a misconfigured twin or a reflection; never a second "us".
    if (hb.node === this.#self) return 'self';
    const cur = this.#peers.get(hb.node);
    const next: PeerState = { incarnation: hb.incarnation, seq: hb.seq, wallMs: hb.wallMs, eligible: hb.eligible, yielding: hb.yielding === true, heardAt: now };
    if (!cur) {
      if (this.#peers.size >= this.#capacity) return 'capacity';
      this.#peers.set(hb.node, next);
      return 'new';
    }
    if (hb.incarnation === cur.incarnation) {
      if (hb.seq <= cur.seq) return 'replay';
      this.#peers.set(hb.node, next);
      return 'update';
    }
    // "Not newer" rather than "older": an equal timestamp cannot prove it is the later life.
    if (hb.wallMs <= cur.wallMs) return 'stale-incarnation';
    this.#peers.set(hb.node, next);
    return 'restarted';
  }

  /** Self plus every peer heard within deadAfterMs of `now`, sorted by node name. */
  members(now: number, selfEligible: boolean, selfYielding = false): Member[] {
    const out: Member[] = [member(this.#self, selfEligible, selfYielding)];
    for (const [node, p] of this.#peers) {
      if (now - p.heardAt <= this.#deadAfterMs) out.push(member(node, p.eligible, p.yielding));
    }
    return out.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  }
}

/** A member as the election takes it; `yielding` only when set, so lists without it look as before. */
function member(node: string, eligible: boolean, yielding: boolean): Member {
  return yielding ? { node, eligible, yielding } : { node, eligible };
}
