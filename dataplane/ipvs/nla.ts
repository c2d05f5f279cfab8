// Netlink framing and attributes (TLV), pure: no sockets here. Layouts from include/uapi/linux/
// netlink.h and genetlink.h. Integers in netlink headers and attributes are in the host's byte
// order (the kernel never swaps them); only fields the kernel itself declares __be16/__be32 (IPVS
// ports, the IPv4 persistence netmask) are big-endian, and the callers say so explicitly.
import { endianness } from 'node:os';

const LE = endianness() === 'LE';

export const NLMSG_HDRLEN = 16;
export const GENL_HDRLEN = 4;
export const NLA_HDRLEN = 4;
/** nla_type bits: payload is a nested attribute set / payload is big-endian (informational only). */
export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
export const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;

export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
/** NLM_F_ROOT | NLM_F_MATCH. */
export const NLM_F_DUMP = 0x300;
/** On NLMSG_ERROR: the echoed request was cut to its header / extended-ack TLVs follow. */
export const NLM_F_CAPPED = 0x100;
export const NLM_F_ACK_TLVS = 0x200;
/** enum nlmsgerr_attrs: NLMSGERR_ATTR_MSG carries the kernel's human-readable reason. */
const NLMSGERR_ATTR_MSG = 1;

export const align4 = (n: number): number => (n + 3) & ~3;

/** Malformed bytes from the kernel, or input that cannot be encoded; `field` names the culprit. */
export class NetlinkCodecError extends Error {
  readonly field: string;
  constructor(field: string, reason: string) {
    super(`${field}: ${reason}`);
    this.name = 'NetlinkCodecError';
    this.field = field;
  }
}

// ---- integers in host order -------------------------------------------------------------------

export function readU16(b: Buffer, off = 0): number { return LE ? b.readUInt16LE(off) : b.readUInt16BE(off); }
export function readU32(b: Buffer, off = 0): number { return LE ? b.readUInt32LE(off) : b.readUInt32BE(off); }
export function readS32(b: Buffer, off = 0): number { return LE ? b.readInt32LE(off) : b.readInt32BE(off); }
export function readU64(b: Buffer, off = 0): bigint { return LE ? b.readBigUInt64LE(off) : b.readBigUInt64BE(off); }
export function writeU16(b: Buffer, v: number, off: number): void { if (LE) b.writeUInt16LE(v, off); else b.writeUInt16BE(v, off); }
export function writeU32(b: Buffer, v: number, off: number): void { if (LE) b.writeUInt32LE(v, off); else b.writeUInt32BE(v, off); }
/** u32 values in host order, back to back (for small structs such as struct ip_vs_flags). */
export function hostU32s(...values: number[]): Buffer {
  const b = Buffer.alloc(4 * values.length);
  values.forEach((v, i) => writeU32(b, v >>> 0, 4 * i));
  return b;
}

// ---- attribute writer -------------------------------------------------------------------------

/** Builds an attribute stream; every attribute starts 4-byte aligned (nla_put semantics). */
export class AttrWriter {
  private readonly chunks: Buffer[] = [];
  private length = 0;

  put(type: number, payload: Buffer): this {
    const total = NLA_HDRLEN + payload.length;
    if (total > 0xffff) throw new NetlinkCodecError(`attribute ${type}`, `payload of ${payload.length} bytes does not fit a netlink attribute`);
    const header = Buffer.alloc(NLA_HDRLEN);
    writeU16(header, total, 0);
    writeU16(header, type, 2);
    this.chunks.push(header, payload);
    const pad = align4(total) - total;
    if (pad) this.chunks.push(Buffer.alloc(pad));
    this.length += align4(total);
    return this;
  }

  u8(type: number, v: number): this { return this.put(type, Buffer.from([v])); }
  u16(type: number, v: number): this { const b = Buffer.alloc(2); writeU16(b, v, 0); return this.put(type, b); }
  u32(type: number, v: number): this { const b = Buffer.alloc(4); writeU32(b, v >>> 0, 0); return this.put(type, b); }
  be16(type: number, v: number): this { const b = Buffer.alloc(2); b.writeUInt16BE(v, 0); return this.put(type, b); }
  /** NUL-terminated, as NLA_NUL_STRING / NLA_STRING policies expect. */
  str(type: number, s: string): this { return this.put(type, Buffer.concat([Buffer.from(s, 'utf8'), Buffer.alloc(1)])); }
  nested(type: number, fill: (w: AttrWriter) => void): this {
    const inner = new AttrWriter();
    fill(inner);
    return this.put(type | NLA_F_NESTED, inner.bytes());
  }

  bytes(): Buffer { return Buffer.concat(this.chunks, this.length); }
}

// ---- attribute reader -------------------------------------------------------------------------

/**
 * One attribute set: type (flags stripped) → payload. Like the kernel's nla_parse, a repeated
 * type keeps the last occurrence. `where` names the set in errors ("service", "destination.stats").
 */
export class Attrs {
  readonly where: string;
  private readonly map = new Map<number, Buffer>();

  constructor(buf: Buffer, where: string) {
    this.where = where;
    let off = 0;
    while (off + NLA_HDRLEN <= buf.length) {
      const len = readU16(buf, off);
      const type = readU16(buf, off + 2) & NLA_TYPE_MASK;
      if (len < NLA_HDRLEN || off + len > buf.length) {
        throw new NetlinkCodecError(where, `attribute ${type} at offset ${off} claims ${len} bytes, ${buf.length - off} left`);
      }
      this.map.set(type, buf.subarray(off + NLA_HDRLEN, off + len));
      off += align4(len);
    }
  }

  has(type: number): boolean { return this.map.has(type); }
  types(): number[] { return [...this.map.keys()]; }
  raw(type: number): Buffer | undefined { return this.map.get(type); }

  private sized(type: number, name: string, size: number): Buffer | undefined {
    const b = this.map.get(type);
    if (b && b.length < size) throw new NetlinkCodecError(`${this.where}.${name}`, `${b.length} bytes, expected ${size}`);
    return b;
  }

  u8(type: number, name: string): number | undefined { const b = this.sized(type, name, 1); return b && b[0]; }
  u16(type: number, name: string): number | undefined { const b = this.sized(type, name, 2); return b && readU16(b); }
  be16(type: number, name: string): number | undefined { const b = this.sized(type, name, 2); return b && b.readUInt16BE(0); }
  u32(type: number, name: string): number | undefined { const b = this.sized(type, name, 4); return b && readU32(b); }
  u64(type: number, name: string): bigint | undefined { const b = this.sized(type, name, 8); return b && readU64(b); }
  bytes(type: number, name: string, size: number): Buffer | undefined { return this.sized(type, name, size); }
  /** A string attribute, up to its first NUL. */
  str(type: number): string | undefined {
    const b = this.map.get(type);
    if (!b) return undefined;
    const nul = b.indexOf(0);
    return b.subarray(0, nul < 0 ? b.length : nul).toString('utf8');
  }
  nested(type: number, name: string): Attrs | undefined {
    const b = this.map.get(type);
    return b && new Attrs(b, `${this.where}.${name}`);
  }

  /** A value the kernel always sends: its absence means the bytes are not what we think. */
  need<T>(value: T | undefined, name: string): T {
    if (value === undefined) throw new NetlinkCodecError(`${this.where}.${name}`, 'missing');
    return value;
  }
}

// ---- messages ---------------------------------------------------------------------------------

export interface NlMessage {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  /** Everything after the 16-byte nlmsghdr. */
  payload: Buffer;
}

/** Splits one datagram into its netlink messages (a dump reply packs many into one datagram). */
export function splitMessages(buf: Buffer): NlMessage[] {
  const out: NlMessage[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = readU32(buf, off);
    if (len < NLMSG_HDRLEN || off + len > buf.length) {
      throw new NetlinkCodecError('nlmsghdr', `message at offset ${off} claims ${len} bytes, ${buf.length - off} left`);
    }
    out.push({
      type: readU16(buf, off + 4),
      flags: readU16(buf, off + 6),
      seq: readU32(buf, off + 8),
      pid: readU32(buf, off + 12),
      payload: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

export interface GenlRequest {
  /** Generic netlink family id (the nlmsg_type). */
  family: number;
  cmd: number;
  version: number;
  flags: number;
  seq: number;
  /** Sender port id; 0 lets the kernel fill in the socket's. */
  pid?: number;
  attrs: Buffer;
}

export function encodeGenlRequest(r: GenlRequest): Buffer {
  const len = NLMSG_HDRLEN + GENL_HDRLEN + r.attrs.length;
  const head = Buffer.alloc(NLMSG_HDRLEN + GENL_HDRLEN);
  writeU32(head, len, 0);
  writeU16(head, r.family, 4);
  writeU16(head, r.flags, 6);
  writeU32(head, r.seq >>> 0, 8);
  writeU32(head, r.pid ?? 0, 12);
  head[16] = r.cmd;
  head[17] = r.version;
  return Buffer.concat([head, r.attrs], len);
}

export interface GenlMessage { cmd: number; version: number; attrs: Buffer }

export function parseGenl(m: NlMessage): GenlMessage {
  if (m.payload.length < GENL_HDRLEN) throw new NetlinkCodecError('genlmsghdr', `${m.payload.length} bytes, expected ${GENL_HDRLEN}`);
  return { cmd: m.payload[0]!, version: m.payload[1]!, attrs: m.payload.subarray(GENL_HDRLEN) };
}

export interface NlError {
  /** Positive errno; 0 for an ACK. */
  errno: number;
  /** The kernel's extended-ack message, when it sent one. */
  message?: string;
}

/** struct nlmsgerr { int error; struct nlmsghdr msg; } + optional extended-ack TLVs. */
export function parseError(m: NlMessage): NlError {
  if (m.payload.length < 4 + NLMSG_HDRLEN) throw new NetlinkCodecError('nlmsgerr', `${m.payload.length} bytes, expected at least ${4 + NLMSG_HDRLEN}`);
  const errno = -readS32(m.payload, 0);
  if (!(m.flags & NLM_F_ACK_TLVS)) return { errno };
  // The extended ack is only a comment on the errno: unreadable TLVs lose the text, not the errno.
  try {
    const echoed = m.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : align4(readU32(m.payload, 4));
    const tlvs = m.payload.subarray(Math.min(m.payload.length, 4 + echoed));
    const msg = new Attrs(tlvs, 'nlmsgerr').str(NLMSGERR_ATTR_MSG);
    return msg ? { errno, message: msg } : { errno };
  } catch {
    return { errno };
  }
}

/** NLMSG_DONE carries an int: 0, or the negative errno a dump stopped with. */
export function parseDone(m: NlMessage): number {
  return m.payload.length >= 4 ? -readS32(m.payload, 0) : 0;
}
