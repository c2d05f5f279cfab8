// One generic-netlink socket (npm `netlink`'s RawNetlinkSocket) with our own request/reply
// correlation: every request gets a sequence number and every received message is matched to its
// request by that number alone, so any number of requests can be in flight and their replies may
// arrive interleaved in any way. (netlink's NetlinkSocket groups multipart replies assuming one
// dump at a time and mis-assigns interleaved messages, so it is not used for IPVS traffic.)
//
// Kernel behaviour this relies on (net/netlink/af_netlink.c):
//  - A "do" request is handled synchronously inside sendmsg; with NLM_F_ACK its reply (if any)
//    is queued, then an NLMSG_ERROR with error 0 (the ACK) or -errno.
//  - A dump (NLM_F_DUMP) is answered with NLM_F_MULTI messages and an NLMSG_DONE, filled lazily:
//    the next skb is produced when user space reads the previous one. While it runs, a second dump
//    request on the same socket fails with EBUSY, so dumps on one channel are serialised here;
//    run dumps in parallel across several channels.
//  - Replies overflowing the receive buffer are dropped and recvmsg reports ENOBUFS: every request
//    then in flight fails with ENOBUFS (a bounded window of do-requests keeps this from happening).
import { Protocol, RawNetlinkSocket } from 'netlink';
import {
  encodeGenlRequest, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, parseDone, parseError,
  parseGenl, readU16, splitMessages, writeU16, writeU32, type GenlMessage, type NlMessage,
} from './nla.ts';
import { errnoOf } from './errors.ts';

/** A request the kernel (or the socket) failed: positive errno, plus the kernel's extended-ack text. */
export class NetlinkErrno extends Error {
  readonly errno: number;
  readonly extack?: string;
  constructor(errno: number, extack?: string) {
    super(`netlink request failed with errno ${errno}${extack ? `: ${extack}` : ''}`);
    this.name = 'NetlinkErrno';
    this.errno = errno;
    if (extack) this.extack = extack;
  }
}

/** A reply the codec cannot read (truncated, malformed): the request it answers fails with EBADMSG. */
export class NetlinkProtocolError extends NetlinkErrno {
  constructor(what: string, cause: unknown) {
    // The detail rides in extack, which callers already surface as the hint of an IpvsError.
    const detail = `malformed ${what} from the kernel: ${cause instanceof Error ? cause.message : String(cause)}`;
    super(errnoOf('EBADMSG'), detail);
    this.name = 'NetlinkProtocolError';
    this.message = detail;
  }
}

export type Tap = (direction: 'send' | 'recv', bytes: Buffer, channel: number) => void;

export interface ChannelOptions {
  /** Fail a request with ETIMEDOUT when its reply has not arrived after this long. */
  timeoutMs: number;
  /** Do-requests allowed in flight at once (dumps are always one at a time). */
  window: number;
  /** Sees every datagram sent and received (for captures and debugging). */
  tap?: Tap;
  /** Index of this channel, passed to tap. */
  index?: number;
}

/** A batch in flight: per message (by index) the kernel's error, settled by the last one's reply. */
interface BatchPending {
  seqs: number[];
  errors: Array<NetlinkErrno | undefined>;
  timer: NodeJS.Timeout;
  resolve: (errors: Array<NetlinkErrno | undefined>) => void;
  reject: (err: Error) => void;
}

/**
 * A batch whose outcome is unknown: `maybeApplied` is false when sendmsg itself failed (the kernel
 * processed nothing), true when the replies were lost afterwards (ENOBUFS, timeout, close).
 */
export class BatchLost extends NetlinkErrno {
  readonly maybeApplied: boolean;
  constructor(errno: number, maybeApplied: boolean) {
    super(errno);
    this.name = 'BatchLost';
    this.maybeApplied = maybeApplied;
  }
}

interface Pending {
  dump: boolean;
  replies: GenlMessage[];
  timer: NodeJS.Timeout;
  resolve: (replies: GenlMessage[]) => void;
  reject: (err: Error) => void;
}

export class GenlChannel {
  private readonly socket: RawNetlinkSocket;
  private readonly opts: ChannelOptions;
  private readonly pending = new Map<number, Pending>();
  /** Sequence number → the batch that message belongs to, and its index there. */
  private readonly batched = new Map<number, { batch: BatchPending; index: number }>();
  private seq = 1;
  private inFlight = 0;
  private readonly waiting: Array<() => void> = [];
  private dumpLane: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(opts: ChannelOptions) {
    this.opts = opts;
    // 1 MiB asks for more than the default 208 KiB; the kernel caps it at net.core.rmem_max.
    this.socket = new RawNetlinkSocket(Protocol.GENERIC, { recvBufferSize: 1 << 20, sendBufferSize: 1 << 20 });
    this.socket.on('message', (buf) => this.receive(buf));
    this.socket.on('truncatedMessage', () => this.failAll(errnoOf('EMSGSIZE')));
    this.socket.on('error', (err) => this.failAll(err.errno > 0 ? err.errno : -err.errno || errnoOf('EIO')));
    this.socket.unref(); // referenced only while requests are outstanding
  }

  /** A do-request with NLM_F_ACK: resolves with the reply messages (none for a plain ACK). */
  async request(family: number, cmd: number, version: number, attrs: Buffer): Promise<GenlMessage[]> {
    await this.acquire();
    try {
      return await this.send(family, cmd, version, attrs, NLM_F_REQUEST | NLM_F_ACK, false);
    } finally {
      this.release();
    }
  }

  /** A dump: resolves with every message before NLMSG_DONE. Serialised per channel (EBUSY otherwise). */
  dump(family: number, cmd: number, version: number, attrs: Buffer): Promise<GenlMessage[]> {
    const run = this.dumpLane.then(() => this.send(family, cmd, version, attrs, NLM_F_REQUEST | NLM_F_DUMP, true));
    this.dumpLane = run.catch(() => undefined);
    return run;
  }

  /**
   * Sends `bytes`, complete netlink requests starting at `offsets`, in one sendmsg, and resolves
   * with each message's error (undefined: accepted). The channel numbers the messages and sets
   * NLM_F_ACK on the last one only. Kernel behaviour relied on (net/netlink/af_netlink.c
   * netlink_rcv_skb): every message of the buffer is processed, in order, synchronously within
   * sendmsg, and an NLMSG_ERROR is queued for a message when it failed or when it asked for an
   * ACK. So the last message's reply comes after every other reply of the buffer, and a message
   * without a reply by then succeeded. Rejects with BatchLost when that cannot be known.
   */
  async sendBatch(bytes: Buffer, offsets: readonly number[]): Promise<Array<NetlinkErrno | undefined>> {
    if (offsets.length === 0) return [];
    await this.acquire();
    try {
      return await this.sendBatchNow(bytes, offsets);
    } finally {
      this.release();
    }
  }

  private sendBatchNow(bytes: Buffer, offsets: readonly number[]): Promise<Array<NetlinkErrno | undefined>> {
    if (this.closed) return Promise.reject(new BatchLost(errnoOf('ECONNRESET'), false));
    return new Promise((resolve, reject) => {
      const seqs: number[] = [];
      const timer = setTimeout(() => this.settleBatch(batch, new BatchLost(errnoOf('ETIMEDOUT'), true)), this.opts.timeoutMs);
      const batch: BatchPending = { seqs, errors: new Array(offsets.length).fill(undefined), timer, resolve, reject };
      offsets.forEach((off, index) => {
        const seq = this.nextSeq();
        seqs.push(seq);
        this.batched.set(seq, { batch, index });
        writeU32(bytes, seq, off + 8);
        const flags = readU16(bytes, off + 6) & ~NLM_F_ACK;
        writeU16(bytes, index === offsets.length - 1 ? flags | NLM_F_ACK : flags, off + 6);
      });
      if (this.pending.size === 0 && this.batched.size === seqs.length) this.socket.ref();
      this.opts.tap?.('send', bytes, this.opts.index ?? 0);
      this.socket.send(bytes, {}, (err) => {
        if (err) this.settleBatch(batch, new BatchLost(err.errno > 0 ? err.errno : -err.errno || errnoOf('EIO'), false));
      });
    });
  }

  private settleBatch(batch: BatchPending, outcome: Error | undefined): void {
    if (!this.batched.has(batch.seqs[0]!)) return;
    for (const seq of batch.seqs) this.batched.delete(seq);
    clearTimeout(batch.timer);
    if (this.pending.size === 0 && this.batched.size === 0 && !this.closed) this.socket.unref();
    if (outcome) batch.reject(outcome);
    else batch.resolve(batch.errors);
  }

  /** An NLMSG_ERROR (error or ACK) for a batched message; true when `m` was one. */
  private deliverBatched(m: NlMessage): boolean {
    const hit = this.batched.get(m.seq);
    if (!hit) return false;
    const { batch, index } = hit;
    if (m.type !== NLMSG_ERROR) return true; // IPVS writes have no reply payload; ignore any
    let e;
    try {
      e = parseError(m);
    } catch (err) {
      e = { errno: 0 };
      batch.errors[index] = new NetlinkProtocolError('NLMSG_ERROR', err);
    }
    if (e.errno !== 0) batch.errors[index] = new NetlinkErrno(e.errno, e.message);
    if (index === batch.seqs.length - 1) this.settleBatch(batch, undefined);
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.failAll(errnoOf('ECONNRESET'));
    this.closed = true;
    this.socket.close();
  }

  private send(family: number, cmd: number, version: number, attrs: Buffer, flags: number, dump: boolean): Promise<GenlMessage[]> {
    if (this.closed) return Promise.reject(new NetlinkErrno(errnoOf('ECONNRESET')));
    const seq = this.nextSeq();
    const bytes = encodeGenlRequest({ family, cmd, version, flags, seq, attrs });
    return new Promise<GenlMessage[]>((resolve, reject) => {
      const timer = setTimeout(() => this.settle(seq, new NetlinkErrno(errnoOf('ETIMEDOUT'))), this.opts.timeoutMs);
      if (this.pending.size === 0) this.socket.ref();
      this.pending.set(seq, { dump, replies: [], timer, resolve, reject });
      this.opts.tap?.('send', bytes, this.opts.index ?? 0);
      this.socket.send(bytes, {}, (err) => {
        if (err) this.settle(seq, new NetlinkErrno(err.errno > 0 ? err.errno : -err.errno || errnoOf('EIO')));
      });
    });
  }

  private nextSeq(): number {
    do this.seq = this.seq >= 0xffffffff ? 1 : this.seq + 1;
    while (this.pending.has(this.seq) || this.batched.has(this.seq));
    return this.seq;
  }

  private receive(buf: Buffer): void {
    this.opts.tap?.('recv', buf, this.opts.index ?? 0);
    let messages: NlMessage[];
    try {
      messages = splitMessages(buf);
    } catch (err) {
      // The datagram cannot be split, so no message in it can be told apart: every request then in
      // flight may have lost its reply and fails (each would otherwise only time out).
      for (const seq of [...this.pending.keys()]) this.settle(seq, new NetlinkProtocolError('datagram', err));
      for (const { batch } of [...this.batched.values()]) this.settleBatch(batch, new BatchLost(errnoOf('EBADMSG'), true));
      return;
    }
    // This runs in the socket's 'message' listener: a throw would escape to the event loop and kill
    // the agent. A message that cannot be read fails its own request; the socket stays usable.
    for (const m of messages) {
      try {
        this.deliver(m);
      } catch (err) {
        this.settle(m.seq, new NetlinkProtocolError(`message (type ${m.type})`, err));
      }
    }
  }

  private deliver(m: NlMessage): void {
    if (this.deliverBatched(m)) return;
    const p = this.pending.get(m.seq);
    if (!p) return; // a late reply to a request that already timed out
    if (m.type === NLMSG_ERROR) {
      let e;
      try {
        e = parseError(m);
      } catch (err) {
        this.settle(m.seq, new NetlinkProtocolError('NLMSG_ERROR', err));
        return;
      }
      // An ACK ends a do-request; a dump never gets one (its end is NLMSG_DONE).
      if (e.errno !== 0) this.settle(m.seq, new NetlinkErrno(e.errno, e.message));
      else if (!p.dump) this.settle(m.seq, p.replies);
      return;
    }
    if (m.type === NLMSG_DONE) {
      const errno = parseDone(m);
      this.settle(m.seq, errno ? new NetlinkErrno(errno) : p.replies);
      return;
    }
    try {
      p.replies.push(parseGenl(m));
    } catch (err) {
      this.settle(m.seq, new NetlinkProtocolError('generic netlink message', err));
    }
  }

  private settle(seq: number, outcome: GenlMessage[] | Error): void {
    const p = this.pending.get(seq);
    if (!p) return;
    this.pending.delete(seq);
    clearTimeout(p.timer);
    if (this.pending.size === 0 && this.batched.size === 0 && !this.closed) this.socket.unref();
    if (outcome instanceof Error) p.reject(outcome);
    else p.resolve(outcome);
  }

  private failAll(errno: number): void {
    for (const seq of [...this.pending.keys()]) this.settle(seq, new NetlinkErrno(errno));
    // A socket error (ENOBUFS: replies dropped) after sendmsg: what the kernel did is unknown.
    for (const { batch } of [...this.batched.values()]) this.settleBatch(batch, new BatchLost(errno, true));
  }

  private async acquire(): Promise<void> {
    if (this.inFlight < this.opts.window) { this.inFlight += 1; return; }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next(); // the slot passes straight to the next waiter
    else this.inFlight -= 1;
  }
}
