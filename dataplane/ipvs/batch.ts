// IpvsKernel.applyBatch over generic netlink: the writes packed into few sendmsg buffers (the
// channel numbers them and asks for an ACK on the last message of each buffer only), every
// kernel error mapped back to its write by sequence number.
//
// Ordering: buffers go out one at a time, and the kernel runs the messages of a buffer in order
// (netlink_rcv_skb), so a destination always follows its service's NEW_SERVICE. When an
// addService fails, the later writes of that service are not sent (reported 'skipped'); those
// already in the same buffer were run by the kernel: a refusal of theirs is reported 'skipped'
// too (the kernel had no service to add them to), an acceptance 'ok' (the service existed after
// all, e.g. NEW_SERVICE answered EEXIST), so the result never claims a write the kernel did not do.
//
// Fallback: when a buffer's replies are lost (socket error such as ENOBUFS: the receive buffer
// overflowed and the kernel dropped replies; or a timeout), its writes are retried one request at a
// time (an add answering EEXIST then may be our own lost write: counted 'ok'), and the rest is sent
// in buffers of half the size. When sendmsg itself failed, nothing was run and the same applies
// without that EEXIST reading.
import { MessageWriter } from './encoder.ts';
import { errnoCode } from './errors.ts';
import { NLM_F_REQUEST } from './nla.ts';
import { BatchLost, type GenlChannel, type NetlinkErrno } from './transport.ts';
import type { IpvsWrite, IpvsWriteResult } from './types.ts';

export interface BatchDeps {
  genlFamily: number;
  channel: GenlChannel;
  /** The one-op method for a write (throws its IpvsError). */
  single: (w: IpvsWrite) => Promise<void>;
  /** A codec or kernel failure of one write as the one-op method would throw it. */
  error: (w: IpvsWrite, err: unknown) => Error;
  /** Messages per buffer. The kernel queues one NLMSG_ERROR (~1 KiB of receive buffer) per failed message. */
  maxMessages: number;
  maxBytes: number;
}

interface State {
  results: IpvsWriteResult[];
  /** Identity (service key bytes) of every service whose addService failed. */
  failed: Set<string>;
  maxMessages: number;
}

const OK: IpvsWriteResult = { status: 'ok' };
const SKIPPED: IpvsWriteResult = { status: 'skipped' };

export async function applyBatch(deps: BatchDeps, writes: readonly IpvsWrite[]): Promise<IpvsWriteResult[]> {
  const st: State = { results: new Array<IpvsWriteResult>(writes.length), failed: new Set(), maxMessages: deps.maxMessages };
  const w = new MessageWriter(Math.min(deps.maxBytes + 4096, 1 << 20));
  let next = 0;
  while (next < writes.length) {
    const { sent, keys, end } = pack(deps, st, w, writes, next);
    next = end;
    if (sent.length === 0) continue;
    let errors: Array<NetlinkErrno | undefined>;
    try {
      errors = await deps.channel.sendBatch(w.bytes(), w.offsets);
    } catch (err) {
      const lost = err instanceof BatchLost && err.maybeApplied;
      for (const i of sent) await one(deps, st, writes[i]!, i, keys.get(i)!, lost);
      st.maxMessages = Math.max(1, st.maxMessages >> 1);
      continue;
    }
    sent.forEach((i, j) => settle(deps, st, writes[i]!, i, keys.get(i)!, errors[j]));
  }
  return st.results;
}

/** Fills the writer from writes[from]: returns the indexes sent, their service identities, the next index. */
function pack(deps: BatchDeps, st: State, w: MessageWriter, writes: readonly IpvsWrite[], from: number) {
  w.reset();
  const sent: number[] = [];
  const keys = new Map<number, string>();
  let i = from;
  for (; i < writes.length && w.count < st.maxMessages && w.length < deps.maxBytes; i++) {
    const write = writes[i]!;
    let key: string;
    try {
      key = w.write(deps.genlFamily, write, NLM_F_REQUEST, 0);
    } catch (err) {
      // Refused before the kernel (a NetlinkCodecError naming the field), as the one-op call would.
      st.results[i] = { status: 'failed', error: deps.error(write, err) };
      continue;
    }
    if (st.failed.has(key)) {
      w.dropLast(); // its service's addService failed in an earlier buffer: not sent
      st.results[i] = SKIPPED;
      continue;
    }
    sent.push(i);
    keys.set(i, key);
  }
  return { sent, keys, end: i };
}

function settle(deps: BatchDeps, st: State, write: IpvsWrite, i: number, key: string, err: NetlinkErrno | undefined): void {
  const afterFailedAdd = st.failed.has(key);
  if (!err) {
    st.results[i] = OK;
    return;
  }
  if (afterFailedAdd) {
    st.results[i] = SKIPPED;
    return;
  }
  st.results[i] = { status: 'failed', error: deps.error(write, err) };
  if (write.kind === 'addService') st.failed.add(key);
}

/** One write on its own (fallback). `maybeDone`: an earlier, lost attempt may have applied it. */
async function one(deps: BatchDeps, st: State, write: IpvsWrite, i: number, key: string, maybeDone: boolean): Promise<void> {
  if (st.failed.has(key)) {
    st.results[i] = SKIPPED;
    return;
  }
  try {
    await deps.single(write);
    st.results[i] = OK;
  } catch (err) {
    const code = (err as { code?: string }).code ?? errnoCode((err as { errno?: number }).errno ?? 0);
    if (maybeDone && code === 'EEXIST' && (write.kind === 'addService' || write.kind === 'addDestination')) {
      st.results[i] = OK;
      return;
    }
    st.results[i] = { status: 'failed', error: err instanceof Error ? err : new Error(String(err)) };
    if (write.kind === 'addService') st.failed.add(key);
  }
}
