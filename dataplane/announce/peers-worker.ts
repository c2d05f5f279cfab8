// The membership (./peers.ts) in a worker thread: heartbeats are sent and judged on an event
// loop of their own, so a busy agent — a sync of thousands of services, a large JSON parse, a
// child process being forked under emulation — never goes silent to its peers, and a stall of the
// main thread never drops live peers. Measured: in the ha tier's cluster suite, with the membership
// on the agent's main thread, two healthy agents dropped each other every ~10 s under load (dead
// interval 1.5 s).
//
// What the worker cannot see is whether the agent behind it still works: the main thread sends
// its eligibility every interval, and a value older than eligibleTtlMs counts as "not eligible",
// so an agent whose main thread is wedged gives its VIPs away (its kernel keeps forwarding what
// it has meanwhile: the data path does not need the agent).
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import pino from 'pino';
import type { Member } from './election.ts';
import { startPeers, type PeerEndpoint, type PeersStats } from './peers.ts';

/** What the main thread gives the worker (structured-clone safe). */
export interface PeersWorkerData {
  node: string;
  listen: { address: string; port: number };
  peers: PeerEndpoint[];
  key: Uint8Array;
  intervalMs?: number;
  deadAfterMs?: number;
  eligibleTtlMs: number;
  logLevel: string;
}

export type ToWorker = { type: 'eligible'; value: boolean; yielding?: boolean } | { type: 'peers'; peers: PeerEndpoint[] } | { type: 'close' };
export type FromWorker =
  | { type: 'ready'; members: Member[]; stats: PeersStats }
  | { type: 'change'; members: Member[]; stats: PeersStats }
  | { type: 'stats'; stats: PeersStats }
  | { type: 'failed'; error: string };

async function main(): Promise<void> {
  const port = parentPort!;
  const d = workerData as PeersWorkerData;
  let eligible = false;
  let yielding = false;
  let eligibleAt = -Infinity;
  const now = () => performance.now();
  const logger = pino({ level: d.logLevel }, pino.destination({ fd: 2, sync: true }));
  const peers = await startPeers({
    node: d.node, listen: d.listen, peers: d.peers, key: Buffer.from(d.key), clock: { now }, logger,
    ...(d.intervalMs !== undefined ? { intervalMs: d.intervalMs } : {}),
    ...(d.deadAfterMs !== undefined ? { deadAfterMs: d.deadAfterMs } : {}),
    eligible: () => eligible && now() - eligibleAt <= d.eligibleTtlMs,
    yielding: () => yielding,
    onChange: (members) => port.postMessage({ type: 'change', members, stats: peers.stats() } satisfies FromWorker),
  });
  const stats = setInterval(() => port.postMessage({ type: 'stats', stats: peers.stats() } satisfies FromWorker), 5_000);
  port.on('message', (m: ToWorker) => {
    if (m.type === 'eligible') { eligible = m.value; yielding = m.yielding === true; eligibleAt = now(); }
    else if (m.type === 'peers') peers.setPeers(m.peers);
    else if (m.type === 'close') { clearInterval(stats); void peers.close().then(() => port.close()); }
  });
  port.postMessage({ type: 'ready', members: peers.members(), stats: peers.stats() } satisfies FromWorker);
}

if (!isMainThread && parentPort) {
  main().catch((err: unknown) => parentPort!.postMessage({ type: 'failed', error: err instanceof Error ? err.message : String(err) } satisfies FromWorker));
}
