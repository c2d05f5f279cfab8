// startPeers in a worker thread (./peers-worker.ts says why): the same Peers interface, the
// member list as the worker last reported it. The worker's file is the sibling .ts in a source
// checkout and dist/lvs-agent-peers.mjs in the bundle (scripts/build.ts builds both entries).
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { Member } from './election.ts';
import type { PeerEndpoint, Peers, PeersOptions, PeersStats } from './peers.ts';
import type { FromWorker, PeersWorkerData, ToWorker } from './peers-worker.ts';

const WORKER = new URL(import.meta.url.endsWith('.ts') ? './peers-worker.ts' : './lvs-agent-peers.mjs', import.meta.url);

export interface ThreadPeersOptions extends Omit<PeersOptions, 'clock' | 'wallClock' | 'socketFactory' | 'logger'> {
  /** An eligibility older than this counts as "not eligible" (the main thread is wedged). Default 30 s. */
  eligibleTtlMs?: number;
  logger: Logger;
}

const EMPTY_STATS: PeersStats = { sent: 0, sendErrors: 0, received: 0, accepted: 0, rejected: { source: 0, length: 0, version: 0, hmac: 0, malformed: 0, self: 0, replay: 0, 'stale-incarnation': 0, capacity: 0 } };

export async function startPeersThread(o: ThreadPeersOptions): Promise<Peers> {
  const data: PeersWorkerData = {
    node: o.node, listen: o.listen, peers: o.peers, key: new Uint8Array(o.key), eligibleTtlMs: o.eligibleTtlMs ?? 30_000, logLevel: o.logger.level,
    ...(o.intervalMs !== undefined ? { intervalMs: o.intervalMs } : {}),
    ...(o.deadAfterMs !== undefined ? { deadAfterMs: o.deadAfterMs } : {}),
  };
  const worker = new Worker(WORKER, { workerData: data });
  const post = (m: ToWorker) => worker.postMessage(m);
  const sample = () => { try { return o.eligible() === true; } catch { return false; } };
  const yielding = () => { try { return o.yielding?.() === true; } catch { return false; } };
  const state = (): ToWorker => ({ type: 'eligible', value: sample(), yielding: yielding() });
  let members: Member[] = [];
  let stats = EMPTY_STATS;
  let closing = false;
  const ready = new Promise<void>((resolve, reject) => {
    worker.on('message', (m: FromWorker) => {
      if (m.type === 'failed') return reject(new Error(m.error));
      if (m.type !== 'stats') members = m.members;
      stats = m.stats;
      if (m.type === 'ready') resolve();
      if (m.type === 'change') o.onChange(members.map((x) => ({ ...x })));
    });
    worker.once('error', reject);
  });
  worker.on('exit', (code) => {
    if (closing) return;
    // Our heartbeats stopped: the peers take our VIPs; we stop announcing them too.
    o.logger.error({ code }, 'the director heartbeat thread ended; this director is out of the election');
    members = [];
    o.onChange([]);
  });
  post(state());
  const tick = setInterval(() => post(state()), o.intervalMs ?? 100);
  try {
    await ready;
  } catch (err) {
    clearInterval(tick);
    closing = true;
    await worker.terminate();
    throw err;
  }
  return {
    members: () => members.map((m) => ({ ...m })),
    stats: () => ({ ...stats, rejected: { ...stats.rejected } }),
    setPeers: (peers: readonly PeerEndpoint[]) => post({ type: 'peers', peers: [...peers] }),
    async close() {
      if (closing) return;
      closing = true;
      clearInterval(tick);
      const exited = new Promise<void>((r) => worker.once('exit', () => r()));
      post({ type: 'close' });
      const t = setTimeout(() => void worker.terminate(), 2_000);
      await exited;
      clearTimeout(t);
    },
  };
}
