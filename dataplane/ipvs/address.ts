// IP addresses as IPVS carries them: union nf_inet_addr, 16 bytes, an IPv4 address in the first 4
// (the rest zero). Text forms are canonical (inet_ntop's, the same as node:net SocketAddress and
// `ipvsadm -Ln`), so a read-back address compares equal to the desired one as a string.
import { SocketAddress } from 'node:net';
import { canonicalIp as canonical, ipFamily } from '../../api/ip.ts';
import { NetlinkCodecError } from './nla.ts';

export const AF_INET = 2;
export const AF_INET6 = 10;

export function afOf(family: 4 | 6): number {
  return family === 4 ? AF_INET : AF_INET6;
}

export function familyOfAf(af: number, field: string): 4 | 6 {
  if (af === AF_INET) return 4;
  if (af === AF_INET6) return 6;
  throw new NetlinkCodecError(field, `address family ${af} is neither AF_INET (2) nor AF_INET6 (10)`);
}

/** Canonical text of an IPv4/IPv6 literal of the given family; throws naming `field` otherwise. */
export function canonicalIp(family: 4 | 6, address: string, field: string): string {
  const c = typeof address === 'string' && ipFamily(address) === family ? canonical(address) : undefined;
  if (c === undefined) throw new NetlinkCodecError(field, `${JSON.stringify(address)} is not an IPv${family} address`);
  return c;
}

function ipv4Bytes(a: string): number[] {
  return a.split('.').map(Number);
}

function ipv6Bytes(a: string): number[] {
  // Canonical text has at most one "::" and possibly a dotted IPv4 tail (::ffff:192.0.2.1).
  let tail: number[] = [];
  let text = a;
  const lastColon = a.lastIndexOf(':');
  if (a.includes('.', lastColon)) {
    tail = ipv4Bytes(a.slice(lastColon + 1));
    text = a.slice(0, lastColon + 1) + '0:0';
  }
  const [head = '', rest] = text.split('::');
  const groups = (s: string) => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const left = groups(head);
  const right = rest === undefined ? [] : groups(rest);
  const all = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  const bytes = all.flatMap((g) => [g >> 8, g & 0xff]);
  if (tail.length) bytes.splice(12, 4, ...tail);
  return bytes;
}

/** 16 bytes of nf_inet_addr. */
export function addressToBytes(family: 4 | 6, address: string, field: string): Buffer {
  const canonical = canonicalIp(family, address, field);
  const out = Buffer.alloc(16);
  Buffer.from(family === 4 ? ipv4Bytes(canonical) : ipv6Bytes(canonical)).copy(out);
  return out;
}

export function bytesToAddress(family: 4 | 6, b: Buffer): string {
  if (family === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return new SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address;
}

/** "addr:port" or "[v6]:port", as ipvsadm prints them. */
export function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}
