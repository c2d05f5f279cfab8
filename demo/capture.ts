// Packet captures for the demo: tcpdump in a namespace, one line per packet, parsed into the
// addresses each hop saw. These are the kernel's own rewrites, seen on the wire.
import { spawn, type ChildProcess } from 'node:child_process';

export interface Packet {
  where: string;
  /** Outer header for IP-in-IP (TUN): director -> real server. */
  outer?: { src: string; dst: string };
  src: string;
  dst: string;
  srcMac: string;
  dstMac: string;
  flags: string;
}

export interface Capture {
  where: string;
  stop(): Promise<Packet[]>;
}

// tcpdump -e -n -l: "MAC > MAC, ethertype IPv4 (0x0800), length 74: A.p > B.q: Flags [S], ..."
// and for ipip: "...: A > B: B1.p > C.q: Flags [S], ..." (outer then inner header).
const LINE = /^\S+ (\S+) > (\S+), ethertype IPv4 \(0x0800\), length \d+: (?:(\d+\.\d+\.\d+\.\d+) > (\d+\.\d+\.\d+\.\d+): )?(\d+\.\d+\.\d+\.\d+\.\d+) > (\d+\.\d+\.\d+\.\d+\.\d+): Flags \[([^\]]*)\]/;

export function parseTcpdump(where: string, text: string): Packet[] {
  const out: Packet[] = [];
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    const hp = (s: string) => s.replace(/\.(\d+)$/, ':$1');
    out.push({
      where, srcMac: m[1]!, dstMac: m[2]!.replace(/,$/, ''),
      ...(m[3] ? { outer: { src: m[3], dst: m[4]! } } : {}),
      src: hp(m[5]!), dst: hp(m[6]!), flags: m[7]!,
    });
  }
  return out;
}

/** Starts tcpdump on `iface` in `ns` for SYN / SYN-ACK packets (and IP-in-IP); resolves once listening. */
export function startCapture(ns: string, iface: string, where: string): Promise<Capture> {
  const filter = '(tcp[tcpflags] & tcp-syn != 0) or (ip proto 4)';
  const child: ChildProcess = spawn('ip', ['netns', 'exec', ns, 'tcpdump', '-e', '-n', '-l', '-U', '-i', iface, filter], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  return new Promise((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`tcpdump in ${ns} on ${iface}: not listening after 30 s: ${err}`)); }, 30_000);
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      if (!err.includes('listening on')) return;
      clearTimeout(timer);
      resolve({
        where,
        stop: () => new Promise((done) => {
          child.once('close', () => done(parseTcpdump(where, out)));
          // Give the last packets time to be printed before stopping.
          setTimeout(() => child.kill('SIGINT'), 300);
        }),
      });
    });
    child.once('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

/** A rewrite table in the seeds' style: one row per hop, client's SYN first, then the reply. */
export function formatHops(packets: readonly Packet[], showMacs: boolean): string {
  const rows = packets.map((p) => {
    const kind = p.flags === 'S.' ? 'SYN-ACK' : 'SYN';
    const outer = p.outer ? `  [outer IP ${p.outer.src} -> ${p.outer.dst}]` : '';
    const macs = showMacs ? `  [MAC ${p.srcMac} -> ${p.dstMac}]` : '';
    return `    ${p.where.padEnd(34)} ${kind.padEnd(8)} ${p.src.padEnd(20)} -> ${p.dst.padEnd(20)}${outer}${macs}`;
  });
  return [`    ${'hop'.padEnd(34)} ${'packet'.padEnd(8)} ${'source'.padEnd(20)}    destination`, ...rows].join('\n');
}
