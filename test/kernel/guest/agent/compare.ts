// The cross-check every agent scenario ends with: the kernel table as the independent `ipvsadm -Ln`
// prints it must be the table `lvs-agent show --json --all` reports (same services, schedulers,
// persistence, destinations, weights and forwarding methods). Connection counters are left out:
// the two reads are a moment apart and the kernel expires entries in between.
import { execFile } from 'node:child_process';
import type { ForwardMethod } from '../../../../dataplane/ipvs/types.ts';
import type { ShownService } from '../../../../dataplane/agent/show.ts';
import { parseIpvsList, type IpvsService } from '../../../../lab/guest/ipvsadm.ts';
import { AGENT, NODE } from './cli.ts';

/** One service in a form both sources can produce: "TCP 203.0.113.5:80", dests "172.16.0.2:80 Masq 1". */
export interface TableRow { service: string; scheduler: string; persistent: number; dests: string[] }

const FWD: Record<ForwardMethod, string> = { masq: 'Masq', local: 'Local', tunnel: 'Tunnel', droute: 'Route', bypass: 'Bypass' };
const hostPort = (address: string, port: number) => (address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`);
const byService = (a: TableRow, b: TableRow) => (a.service < b.service ? -1 : a.service > b.service ? 1 : 0);

/** Pure: rows from `ipvsadm -Ln` (parsed by the shared guest lib). */
export function rowsFromIpvsadm(list: readonly IpvsService[]): TableRow[] {
  return list.map((s) => ({
    service: `${s.proto} ${s.address}`,
    scheduler: s.scheduler,
    persistent: Number(/persistent (\d+)/.exec(s.flags)?.[1] ?? 0),
    dests: s.dests.map((d) => `${d.address} ${d.forward} ${d.weight}`).sort(),
  })).sort(byService);
}

/** Pure: rows from `lvs-agent show --json --all`. */
export function rowsFromShow(view: readonly ShownService[]): TableRow[] {
  return view.map((s) => ({
    service: s.fwmark ? `FWM ${s.fwmark}` : `${s.protocol} ${hostPort(s.address, s.port)}`,
    scheduler: s.scheduler,
    persistent: s.persistent,
    dests: s.destinations.map((d) => `${hostPort(d.address, d.port)} ${FWD[d.forward]} ${d.weight}`).sort(),
  })).sort(byService);
}

export interface Views {
  ipvsadm: IpvsService[];
  show: ShownService[];
  /** Services `show` marks as ours (their VIP is bound on lvs0), as "TCP 203.0.113.5:80". */
  ours: string[];
}

const MARK = '@@lvs-agent-show@@';

/**
 * Reads both views in namespace `ns` with one bash process (every process spawned from Node costs
 * up to a second under TCG; bash forks cheaply): `ipvsadm -Ln`, then the agent's show. Both only
 * read, so callers may overlap this with other work (it resolves when the agent is done).
 */
export function readViews(ns: string, stateFile: string): Promise<Views> {
  const script = `ipvsadm -Ln\necho '${MARK}'\nexec '${NODE}' '${AGENT}' show --json --all --state-file '${stateFile}'\n`;
  return new Promise((resolve, reject) => {
    execFile('ip', ['netns', 'exec', ns, 'bash', '-e', '-c', script], { encoding: 'utf8', maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`readViews in ${ns}: ${err.message}\n${stderr}`));
      else {
        try { resolve(parseViews(stdout)); } catch (e) { reject(e as Error); }
      }
    });
  });
}

function parseViews(out: string): Views {
  const at = out.indexOf(MARK);
  if (at < 0) throw new Error(`readViews: no show output in ${JSON.stringify(out)}`);
  const show = JSON.parse(out.slice(at + MARK.length)) as ShownService[];
  return {
    ipvsadm: parseIpvsList(out.slice(0, at)),
    show,
    ours: rowsFromShow(show.filter((s) => s.ours)).map((r) => r.service),
  };
}

/** The two tables, side by side, for assertion messages. */
export function describeViews(v: Views): string {
  const fmt = (rows: TableRow[]) => rows.map((r) => `  ${r.service} ${r.scheduler}${r.persistent ? ` persistent ${r.persistent}` : ''}\n${r.dests.map((d) => `    -> ${d}`).join('\n')}`).join('\n');
  return `ipvsadm -Ln:\n${fmt(rowsFromIpvsadm(v.ipvsadm))}\nlvs-agent show --json --all:\n${fmt(rowsFromShow(v.show))}`;
}
