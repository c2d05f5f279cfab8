// Reads the kernel's IPVS table with the independent `ipvsadm` tool (per network namespace), to
// cross-check what the agent programmed. Parsers are pure and exported for unit tests.
import { nsRun, run } from './netns.ts';

export interface IpvsDest { address: string; forward: string; weight: number; activeConn: number; inactConn: number }
export interface IpvsService { proto: string; address: string; scheduler: string; flags: string; dests: IpvsDest[] }
export interface IpvsCounters { conns: number; inPkts: number; outPkts: number; inBytes: number; outBytes: number }
export interface IpvsServiceStats extends IpvsCounters { proto: string; address: string; dests: Array<IpvsCounters & { address: string }> }

const SERVICE = /^(TCP|UDP|SCTP|FWM)\s+(\S+)\s*(.*)$/;
const DEST = /^\s+->\s+(\S+)\s*(.*)$/;

/**
 * Parses `ipvsadm -Ln` output:
 *   TCP  198.51.100.10:80 wrr persistent 300
 *     -> 10.0.0.11:80                 Masq    1      0          0
 * (address is printed as shown, "[v6]:port" for IPv6 and the mark number for FWM).
 */
export function parseIpvsList(text: string): IpvsService[] {
  const services: IpvsService[] = [];
  for (const line of text.split('\n')) {
    const s = SERVICE.exec(line);
    if (s) {
      const [scheduler = '', ...flags] = (s[3] ?? '').trim().split(/\s+/);
      services.push({ proto: s[1]!, address: s[2]!, scheduler, flags: flags.join(' '), dests: [] });
      continue;
    }
    const d = DEST.exec(line);
    if (d && d[1] !== 'RemoteAddress:Port' && services.length) {
      const [forward = '', weight = '0', active = '0', inact = '0'] = (d[2] ?? '').trim().split(/\s+/);
      services.at(-1)!.dests.push({ address: d[1]!, forward, weight: Number(weight), activeConn: Number(active), inactConn: Number(inact) });
    }
  }
  return services;
}

function counters(fields: string): IpvsCounters {
  const [conns, inPkts, outPkts, inBytes, outBytes] = fields.trim().split(/\s+/).map(Number);
  return { conns: conns ?? 0, inPkts: inPkts ?? 0, outPkts: outPkts ?? 0, inBytes: inBytes ?? 0, outBytes: outBytes ?? 0 };
}

/** Parses `ipvsadm -Ln --stats --exact` output (Conns InPkts OutPkts InBytes OutBytes per line). */
export function parseIpvsStats(text: string): IpvsServiceStats[] {
  const services: IpvsServiceStats[] = [];
  for (const line of text.split('\n')) {
    const s = SERVICE.exec(line);
    if (s) { services.push({ proto: s[1]!, address: s[2]!, ...counters(s[3] ?? ''), dests: [] }); continue; }
    const d = DEST.exec(line);
    if (d && d[1] !== 'RemoteAddress:Port' && services.length) services.at(-1)!.dests.push({ address: d[1]!, ...counters(d[2] ?? '') });
  }
  return services;
}

const ipvsadm = (ns: string | undefined, args: string[]) => (ns ? nsRun(ns, ['ipvsadm', ...args]) : run(['ipvsadm', ...args]));

/** The IPVS table of namespace `ns` (or the current one). */
export const listIpvs = (ns?: string): IpvsService[] => parseIpvsList(ipvsadm(ns, ['-Ln']));
/** Exact per-service and per-destination counters of namespace `ns` (or the current one). */
export const ipvsStats = (ns?: string): IpvsServiceStats[] => parseIpvsStats(ipvsadm(ns, ['-Ln', '--stats', '--exact']));
