// IPVS write requests encoded straight into one growable Buffer, for batches: no per-attribute
// Buffers, no SocketAddress, no Buffer.concat. Every message is byte-identical to what
// encodeGenlRequest(encodeService/encodeDestination/...) of codec.ts produces for the same input
// (test/unit/ipvs-encoder.test.ts checks that, and against a request echoed by Linux 6.1), and bad
// input fails with the same NetlinkCodecError naming the same field, checked in the same order.
import { addressToBytes, afOf } from './address.ts';
import {
  CMD, CMD_ATTR, DEST_ATTR, destinationNumbers, family, IPVS_GENL_VERSION, lookup, name, PROTO_NUM, SVC_ATTR, SVC_F_HASHED, uint,
} from './codec.ts';
import { align4, GENL_HDRLEN, NetlinkCodecError, NLA_F_NESTED, NLA_HDRLEN, NLMSG_HDRLEN, writeU16, writeU32 } from './nla.ts';
import type { IpvsDestination, IpvsService, IpvsServiceKey, IpvsWrite } from './types.ts';

const COMMAND: Record<IpvsWrite['kind'], number> = {
  addService: CMD.NEW_SERVICE, updateService: CMD.SET_SERVICE, deleteService: CMD.DEL_SERVICE,
  addDestination: CMD.NEW_DEST, updateDestination: CMD.SET_DEST, deleteDestination: CMD.DEL_DEST,
};

type DestKey = Pick<IpvsDestination, 'family' | 'address' | 'port'>;

/** Strict dotted quad (no leading zeros, as node:net's isIP) into b[pos..pos+4); false otherwise. */
function putIpv4(s: string, b: Buffer, pos: number): boolean {
  let octet = 0, digits = 0, i = 0;
  for (let k = 0; k < s.length; k++) {
    const c = s.charCodeAt(k);
    if (c === 46) {
      if (digits === 0 || i === 3) return false;
      b[pos + i++] = octet; octet = 0; digits = 0;
      continue;
    }
    if (c < 48 || c > 57 || (digits > 0 && octet === 0)) return false;
    octet = octet * 10 + (c - 48);
    if (++digits > 3 || octet > 255) return false;
  }
  if (i !== 3 || digits === 0) return false;
  b[pos + 3] = octet;
  return true;
}

function hexGroups(s: string): number[] | undefined {
  if (s === '') return [];
  const parts = s.split(':');
  const out: number[] = [];
  for (const p of parts) {
    if (p.length < 1 || p.length > 4) return undefined;
    const v = parseInt(p, 16);
    if (!/^[0-9a-fA-F]+$/.test(p)) return undefined;
    out.push(v);
  }
  return out;
}

/** Plain hex IPv6 text (at most one "::", no dotted tail, no zone) into 16 bytes; false otherwise. */
function putIpv6(s: string, b: Buffer, pos: number): boolean {
  const dbl = s.indexOf('::');
  if (dbl !== s.lastIndexOf('::')) return false;
  const head = hexGroups(dbl < 0 ? s : s.slice(0, dbl));
  const tail = hexGroups(dbl < 0 ? '' : s.slice(dbl + 2));
  if (!head || !tail) return false;
  if (dbl < 0 ? head.length !== 8 : head.length + tail.length > 7) return false;
  const at = (g: number, v: number) => { b[pos + 2 * g] = v >> 8; b[pos + 2 * g + 1] = v & 0xff; };
  head.forEach((v, g) => at(g, v));
  tail.forEach((v, g) => at(8 - tail.length + g, v));
  return true;
}

export class MessageWriter {
  private buf: Buffer;
  private off = 0;
  /** Start of every message written since reset(), in order. */
  readonly offsets: number[] = [];

  constructor(initialBytes = 64 * 1024) {
    this.buf = Buffer.alloc(initialBytes);
  }

  get length(): number { return this.off; }
  get count(): number { return this.offsets.length; }
  reset(): void { this.off = 0; this.offsets.length = 0; }
  /** Forgets the last message written. */
  dropLast(): void { const at = this.offsets.pop(); if (at !== undefined) this.off = at; }
  /** The messages written since reset() (a view: valid until the next write or reset). */
  bytes(): Buffer { return this.buf.subarray(0, this.off); }

  /**
   * Appends one request (nlmsghdr, genlmsghdr, attributes) and returns its service's identity: the
   * bytes of the service key attributes, equal for every write addressing the same kernel service.
   * On bad input throws NetlinkCodecError and leaves the writer as it was.
   */
  write(genlFamily: number, w: IpvsWrite, flags: number, seq: number): string {
    const start = this.off;
    try {
      this.room(NLMSG_HDRLEN + GENL_HDRLEN);
      writeU16(this.buf, genlFamily, start + 4);
      writeU16(this.buf, flags, start + 6);
      writeU32(this.buf, seq >>> 0, start + 8);
      writeU32(this.buf, 0, start + 12);
      this.buf[start + 16] = COMMAND[w.kind];
      this.buf[start + 17] = IPVS_GENL_VERSION;
      this.buf[start + 18] = 0; this.buf[start + 19] = 0;
      this.off += NLMSG_HDRLEN + GENL_HDRLEN;
      const key = this.attrs(w);
      writeU32(this.buf, this.off - start, start);
      this.offsets.push(start);
      return key;
    } catch (err) {
      this.off = start;
      throw err;
    }
  }

  private attrs(w: IpvsWrite): string {
    switch (w.kind) {
      case 'addService':
      case 'updateService': return this.service(w.service);
      case 'deleteService': return this.serviceKeyOnly(w.service);
      case 'addDestination':
      case 'updateDestination': return this.destination(w.service, w.destination);
      case 'deleteDestination': {
        const key = this.serviceKeyOnly(w.service);
        const at = this.open(CMD_ATTR.DEST);
        this.destKey(w.destination, 'destination');
        this.close(at);
        return key;
      }
    }
  }

  /** As codec.ts encodeService: scheduler, pe and flags are checked before the key. */
  private service(svc: IpvsService): string {
    const scheduler = name(svc.scheduler, 'service.scheduler', false);
    const pe = name(svc.pe, 'service.pe', true);
    const flags = uint(svc.flags, 0xffffffff, 'service.flags') & ~SVC_F_HASHED;
    const at = this.open(CMD_ATTR.SERVICE);
    const key = this.serviceKey(svc);
    this.str(SVC_ATTR.SCHED_NAME, scheduler);
    if (pe) this.str(SVC_ATTR.PE_NAME, pe);
    // struct ip_vs_flags { flags, mask }: every bit replaced (HASHED is the kernel's own).
    const p = this.attr(SVC_ATTR.FLAGS, 8);
    writeU32(this.buf, flags >>> 0, p);
    writeU32(this.buf, 0xffffffff, p + 4);
    this.u32(SVC_ATTR.TIMEOUT, uint(svc.timeout, 0xffffffff, 'service.timeout'));
    this.netmask(svc.family, svc.netmask);
    this.close(at);
    return key;
  }

  /** IPv4: the __be32 mask's bytes; IPv6: a prefix length 1..128 in host order (ip_vs_ctl.c). */
  private netmask(fam: 4 | 6, mask: string): void {
    if (fam === 4) {
      const p = this.attr(SVC_ATTR.NETMASK, 4);
      if (!putIpv4(mask, this.buf, p)) addressToBytes(4, mask, 'service.netmask').copy(this.buf, p, 0, 4);
      return;
    }
    const n = /^\d{1,3}$/.test(mask) ? Number(mask) : NaN;
    if (!(n >= 1 && n <= 128)) throw new NetlinkCodecError('service.netmask', `${JSON.stringify(mask)} is not an IPv6 prefix length 1..128`);
    this.u32(SVC_ATTR.NETMASK, n);
  }

  private serviceKeyOnly(k: IpvsServiceKey): string {
    const at = this.open(CMD_ATTR.SERVICE);
    const key = this.serviceKey(k);
    this.close(at);
    return key;
  }

  /** AF plus FWMARK, or PROTOCOL/ADDR/PORT; returns those bytes as the service's identity. */
  private serviceKey(k: IpvsServiceKey): string {
    const from = this.off;
    const fam = family(k.family, 'service.family');
    this.u16(SVC_ATTR.AF, afOf(fam));
    if (k.fwmark) {
      this.u32(SVC_ATTR.FWMARK, uint(k.fwmark, 0xffffffff, 'service.fwmark'));
    } else {
      this.u16(SVC_ATTR.PROTOCOL, lookup(PROTO_NUM, k.protocol, 'service.protocol'));
      this.address(SVC_ATTR.ADDR, fam, k.address, 'service.address');
      this.be16(SVC_ATTR.PORT, uint(k.port, 0xffff, 'service.port'));
    }
    return this.buf.toString('latin1', from, this.off);
  }

  /** As codec.ts encodeDestination: the destination's numbers are checked before the service key. */
  private destination(svc: IpvsServiceKey, d: IpvsDestination): string {
    const f = 'destination';
    const { fwd, weight, upper, lower, tunType, tunPort, tunFlags } = destinationNumbers(d, f);
    const key = this.serviceKeyOnly(svc);
    const at = this.open(CMD_ATTR.DEST);
    this.destKey(d, f);
    this.u32(DEST_ATTR.FWD_METHOD, fwd);
    this.u32(DEST_ATTR.WEIGHT, weight);
    this.u32(DEST_ATTR.U_THRESH, upper);
    this.u32(DEST_ATTR.L_THRESH, lower);
    if (tunType !== undefined) { const p = this.attr(DEST_ATTR.TUN_TYPE, 1); this.buf[p] = tunType; }
    if (tunPort !== undefined) this.be16(DEST_ATTR.TUN_PORT, tunPort);
    if (tunFlags !== undefined) this.u16(DEST_ATTR.TUN_FLAGS, tunFlags);
    this.close(at);
    return key;
  }

  private destKey(d: DestKey, field: string): void {
    const fam = family(d.family, `${field}.family`);
    this.address(DEST_ATTR.ADDR, fam, d.address, `${field}.address`);
    this.be16(DEST_ATTR.PORT, uint(d.port, 0xffff, `${field}.port`));
    this.u16(DEST_ATTR.ADDR_FAMILY, afOf(fam));
  }

  // ---- attributes (nla_put semantics: 4-byte aligned, padding zeroed) ----------------------------

  private room(n: number): void {
    if (this.off + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.off + n) size *= 2;
    const bigger = Buffer.alloc(size);
    this.buf.copy(bigger, 0, 0, this.off);
    this.buf = bigger;
  }

  /** Writes an attribute header and zeroed, padded room for `size` payload bytes; returns the payload's offset. */
  private attr(type: number, size: number): number {
    const total = NLA_HDRLEN + size;
    const padded = align4(total);
    this.room(padded);
    const at = this.off;
    writeU16(this.buf, total, at);
    writeU16(this.buf, type, at + 2);
    this.buf.fill(0, at + NLA_HDRLEN, at + padded);
    this.off += padded;
    return at + NLA_HDRLEN;
  }

  // attr() may grow (replace) this.buf: take the offset first, then the buffer.
  private u16(type: number, v: number): void { const p = this.attr(type, 2); writeU16(this.buf, v, p); }
  private be16(type: number, v: number): void { const p = this.attr(type, 2); this.buf.writeUInt16BE(v, p); }
  private u32(type: number, v: number): void { const p = this.attr(type, 4); writeU32(this.buf, v >>> 0, p); }
  /** NUL-terminated; names were checked to be ASCII word characters. */
  private str(type: number, s: string): void { const p = this.attr(type, s.length + 1); this.buf.write(s, p, 'latin1'); }

  private address(type: number, fam: 4 | 6, address: string, field: string): void {
    const p = this.attr(type, 16);
    const ok = typeof address === 'string' && (fam === 4 ? putIpv4(address, this.buf, p) : putIpv6(address, this.buf, p));
    // Anything else (a dotted IPv6 tail, or not an address at all) takes codec.ts's path and its error.
    if (!ok) addressToBytes(fam, address, field).copy(this.buf, p);
  }

  private open(type: number): number {
    const at = this.attr(type | NLA_F_NESTED, 0);
    return at - NLA_HDRLEN;
  }

  private close(at: number): void {
    const total = this.off - at;
    if (total > 0xffff) throw new NetlinkCodecError(`attribute ${this.buf.readUInt16LE(at + 2)}`, 'nested attributes do not fit a netlink attribute');
    writeU16(this.buf, total, at);
  }
}
