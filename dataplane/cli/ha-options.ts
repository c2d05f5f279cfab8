// `lvs-agent apply --watch --peer ...`: a standalone director pair (or more), keepalived's classic
// two-director setup. Every director applies the same manifests; the peers elect one announcer per
// VIP among themselves (../announce/ha.ts) and the kernel syncs connections between them.
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { canonicalIp } from '../../api/ip.ts';
import type { Endpoint, Ha, HaOptions } from '../announce/ha.ts';
import { UsageError } from './commands.ts';

export const DEFAULT_PEER_PORT = 7480;

export interface HaFlags {
  peer?: string[];
  'peer-listen'?: string;
  'peer-key-file'?: string;
  'peer-interval-ms'?: string;
  'peer-dead-ms'?: string;
  'peer-warmup-ms'?: string;
  'sync-interface'?: string;
  'sync-id'?: string;
  'node-name'?: string;
  watch?: boolean;
  announce?: string;
}

/** "ADDR", "ADDR:PORT", "[V6]:PORT" → endpoint; the flag is named in errors. */
export function parseEndpoint(text: string, flag: string): Endpoint {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([^:]+)(?::(\d+))?$/.exec(text) ?? [text, text, undefined];
  const address = canonicalIp(m[1] ?? '');
  const port = m[2] === undefined ? DEFAULT_PEER_PORT : Number(m[2]);
  if (!address) throw new UsageError(`${flag} ${JSON.stringify(text)}: not an IP address (ADDR, ADDR:PORT or [IPv6]:PORT)`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`${flag} ${JSON.stringify(text)}: port must be 1-65535`);
  return { address, port };
}

function ms(text: string | undefined, flag: string, min: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`${flag} must be an integer >= ${min}, got ${JSON.stringify(text)}`);
  return n;
}

type Settings = Omit<HaOptions, 'node' | 'healthy' | 'kernel' | 'onChange' | 'log'>;

/** The HA part of `apply`'s options, checked before anything is touched; undefined without --peer. */
export function haSettings(f: HaFlags): Settings | undefined {
  const peerOnly = (['peer-listen', 'peer-key-file', 'peer-interval-ms', 'peer-dead-ms', 'peer-warmup-ms', 'sync-interface', 'sync-id'] as const).filter((k) => f[k] !== undefined);
  if (!f.peer?.length) {
    if (peerOnly.length > 0) throw new UsageError(`--${peerOnly[0]} needs --peer`);
    return undefined;
  }
  if (!f.watch) throw new UsageError('--peer needs --watch: the election runs as long as the agent does');
  if (f.announce === 'none') throw new UsageError('--peer elects an announcer per VIP: it needs --announce l2');
  return {
    ...common(f, parseEndpoint(f['peer-listen'] ?? `0.0.0.0:${DEFAULT_PEER_PORT}`, '--peer-listen')),
    peers: f.peer.map((p) => parseEndpoint(p, '--peer')),
  };
}

/**
 * `lvs-agent run`'s HA options: --peer-key-file turns the election on; the peers come from the
 * AgentReports, where this agent publishes --peer-listen, so that must be this node's own address
 * (the source of its heartbeats), not 0.0.0.0. Undefined without --peer-key-file.
 */
export function clusterHaSettings(f: HaFlags): Omit<Settings, 'peers'> | undefined {
  if (f.peer?.length) throw new UsageError('run: --peer is for apply --watch; in a cluster the peers are read from the AgentReports');
  const haOnly = (['peer-listen', 'peer-interval-ms', 'peer-dead-ms', 'peer-warmup-ms', 'sync-interface', 'sync-id'] as const).filter((k) => f[k] !== undefined);
  if (!f['peer-key-file']) {
    if (haOnly.length > 0) throw new UsageError(`--${haOnly[0]} needs --peer-key-file (the director election)`);
    return undefined;
  }
  if (!f['peer-listen']) throw new UsageError('--peer-key-file needs --peer-listen ADDR[:PORT]: this node\'s address, published in its AgentReport for the other directors');
  const listen = parseEndpoint(f['peer-listen'], '--peer-listen');
  if (listen.address === '0.0.0.0' || listen.address === '::') throw new UsageError(`--peer-listen ${f['peer-listen']}: must be this node's own address (the others send heartbeats to it and match its heartbeats' source against it)`);
  return common(f, listen);
}

/** Key, timers and connection sync, shared by apply and run. */
function common(f: HaFlags, listen: Endpoint): Omit<Settings, 'peers'> {
  if (!f['peer-key-file']) throw new UsageError('--peer needs --peer-key-file: a shared secret of at least 16 bytes authenticates the peers');
  const key = readFileSync(f['peer-key-file']);
  if (key.length < 16) throw new UsageError(`--peer-key-file ${f['peer-key-file']}: ${key.length} bytes, at least 16 needed`);
  const syncId = ms(f['sync-id'], '--sync-id', 0) ?? 1;
  if (syncId > 255) throw new UsageError('--sync-id must be 0-255 (the kernel\'s sync messages carry it in one byte)');
  const out: Omit<Settings, 'peers'> = { listen, key };
  const interval = ms(f['peer-interval-ms'], '--peer-interval-ms', 10);
  const dead = ms(f['peer-dead-ms'], '--peer-dead-ms', 20);
  const warmup = ms(f['peer-warmup-ms'], '--peer-warmup-ms', 0);
  if (interval !== undefined) out.intervalMs = interval;
  if (dead !== undefined) out.deadAfterMs = dead;
  if (dead !== undefined && dead <= (interval ?? 100) * 2) throw new UsageError('--peer-dead-ms must be more than twice --peer-interval-ms (one lost heartbeat must not fail a peer over)');
  if (warmup !== undefined) out.warmupMs = warmup;
  if (f['sync-interface']) out.syncDaemon = { interface: f['sync-interface'], syncId };
  return out;
}

/**
 * Standalone (`peered`: --peer given): every peer directs every VIP of the (shared) manifests, so the announcer of a VIP
 * is the member the election picks among all of them; alone (no --peer), this host.
 */
export function standaloneAnnounce(mode: 'l2' | 'none', node: string, peered: boolean, ha: () => Ha | undefined, log?: Logger): (vip: string) => boolean {
  if (mode === 'none') return () => false;
  return (vip) => {
    const h = ha();
    // With peers, silence until the election runs: never two announcers.
    if (!h) return !peered;
    const active = h.active(vip, h.members().map((m) => m.node));
    log?.trace({ vip, active }, 'announcer');
    return active === node;
  };
}
