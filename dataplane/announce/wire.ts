// The heartbeat datagram between directors. Fixed binary layout, big-endian:
//
//   0  u8   version (1)
//   1  u8   flags: bit 0 = eligible, bit 1 = yielding (./election.ts); other bits must be zero
//   2  u8   node name length n (1..253)
//   3  u8   reserved, zero
//   4  u64  incarnation (random per agent start)
//  12  u64  seq (strictly increasing within an incarnation)
//  20  u64  sender's wall clock, ms since the epoch
//  28  n    node name (Kubernetes node name: lowercase RFC 1123 subdomain)
//  28+n 32  HMAC-SHA256(key, bytes 0 .. 28+n)
//
// Why an HMAC: anyone on the segment can send UDP to our port, and a forged "I am eligible" from a
// node name that wins the hash would make every real director stop answering ARP for its VIPs (a
// one-packet outage); a forged "ineligible" could make two directors answer. The shared key makes
// a heartbeat provable; seq and incarnation (checked in table.ts) make a captured one useless.
// Every field is checked before use: a datagram is hostile until its HMAC verifies, and its
// contents are still only trusted as far as the checks below go.
//
// The yielding bit came after the first release. An agent from before it rejects a heartbeat with
// the bit set as malformed, so during a rolling upgrade a yielding director is silent, as if down,
// to the old agents: they take its VIPs, which is what yielding asks for, and it yields them to
// every eligible peer it hears. Heartbeats without the bit are what old agents sent.
import { createHmac, timingSafeEqual } from 'node:crypto';

export const VERSION = 1;
/** Largest datagram we look at; ours are at most 28 + 253 + 32 = 313 bytes. */
export const MAX_DATAGRAM = 512;
export const MIN_KEY_BYTES = 16;
const HEADER = 28;
const MAC = 32;
const MAX_NODE = 253;
const NODE_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export interface Heartbeat {
  node: string;
  incarnation: bigint;
  seq: bigint;
  eligible: boolean;
  /** Eligible only when no other eligible director is there (its node is being drained). */
  yielding?: boolean;
  /** Sender's wall clock, ms since the epoch. */
  wallMs: bigint;
}

export type WireReject = 'length' | 'version' | 'hmac' | 'malformed';

export function validNodeName(node: string): boolean {
  return node.length >= 1 && Buffer.byteLength(node) <= MAX_NODE && NODE_NAME.test(node);
}

export function encodeHeartbeat(hb: Heartbeat, key: Buffer): Buffer {
  if (!validNodeName(hb.node)) throw new Error(`node: not a valid node name: ${JSON.stringify(hb.node)}`);
  const name = Buffer.from(hb.node, 'utf8');
  const buf = Buffer.alloc(HEADER + name.length + MAC);
  buf.writeUInt8(VERSION, 0);
  buf.writeUInt8((hb.eligible ? 1 : 0) | (hb.yielding ? 2 : 0), 1);
  buf.writeUInt8(name.length, 2);
  buf.writeBigUInt64BE(hb.incarnation, 4);
  buf.writeBigUInt64BE(hb.seq, 12);
  buf.writeBigUInt64BE(hb.wallMs, 20);
  name.copy(buf, HEADER);
  mac(key, buf.subarray(0, HEADER + name.length)).copy(buf, HEADER + name.length);
  return buf;
}

function mac(key: Buffer, body: Buffer): Buffer {
  return createHmac('sha256', key).update(body).digest();
}

/**
 * Checks in order of cost, so junk is dropped before any hashing: size, version, exact length
 * from the header, then the HMAC (constant-time compare), then the fields it vouches for.
 */
export function decodeHeartbeat(buf: Buffer, key: Buffer): Heartbeat | WireReject {
  if (buf.length < HEADER + 1 + MAC || buf.length > MAX_DATAGRAM) return 'length';
  if (buf.readUInt8(0) !== VERSION) return 'version';
  const n = buf.readUInt8(2);
  if (buf.length !== HEADER + n + MAC) return 'length';
  const body = buf.subarray(0, HEADER + n);
  const got = buf.subarray(HEADER + n);
  if (!timingSafeEqual(mac(key, body), got)) return 'hmac';
  const flags = buf.readUInt8(1);
  if ((flags & ~3) !== 0 || buf.readUInt8(3) !== 0) return 'malformed';
  const node = buf.toString('utf8', HEADER, HEADER + n);
  if (!validNodeName(node)) return 'malformed';
  return {
    node,
    eligible: (flags & 1) === 1,
    ...((flags & 2) === 2 ? { yielding: true } : {}),
    incarnation: buf.readBigUInt64BE(4),
    seq: buf.readBigUInt64BE(12),
    wallMs: buf.readBigUInt64BE(20),
  };
}
