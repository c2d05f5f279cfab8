// The values the director's sysctls had before the agent first changed them, kept in a file beside
// the agent's state (/run/lvs-agent, a hostPath in the chart: it survives agent restarts and, like
// the sysctls themselves, not a reboot). An agent that stops with nothing of ours left on the node
// (no VIP on lvs0) puts them back, so `helm uninstall` after the VirtualServers are gone leaves
// the node's sysctls as it found them. A value recorded once is never overwritten: a restarted
// agent sees its own earlier settings as "previous", not the node's.
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { DirectorReport } from './setup.ts';

export type SysctlOriginals = Record<string, string>;

/**
 * Never put back: forwarding is the node's, not ours alone. A node whose forwarding was off when
 * the agent first turned it on may have gained pods, a CNI or kube-proxy that need it since;
 * turning it off at uninstall would cut them off.
 */
const NOT_RESTORED: ReadonlySet<string> = new Set(['net.ipv4.ip_forward', 'net.ipv6.conf.all.forwarding']);

export function readOriginals(path: string): SysctlOriginals {
  let text: string;
  try { text = readFileSync(path, 'utf8'); } catch { return {}; }
  const parsed = JSON.parse(text) as unknown;
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(`${path}: not a JSON object`);
  const out: SysctlOriginals = {};
  for (const [k, v] of Object.entries(parsed)) {
    // Only keys the director writes (net.*) with plain values: the file is read back into `sysctl -w`.
    if (!/^net\.[\w.-]+$/.test(k) || typeof v !== 'string' || !/^[\w\t .:-]*$/.test(v)) throw new Error(`${path}: bad entry ${JSON.stringify(k)}`);
    out[k] = v;
  }
  return out;
}

/** Adds the first-seen previous value of every sysctl `report` changed; true when the file changed. */
export function recordOriginals(path: string, report: Pick<DirectorReport, 'sysctls'>): boolean {
  const changed = report.sysctls.filter((s) => s.previous !== undefined && !NOT_RESTORED.has(s.key));
  if (changed.length === 0) return false;
  const record = readOriginals(path);
  const fresh = changed.filter((s) => !(s.key in record));
  if (fresh.length === 0) return false;
  for (const s of fresh) record[s.key] = s.previous!;
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(record, Object.keys(record).sort(), 2) + '\n');
  renameSync(tmp, path);
  return true;
}

export function forgetOriginals(path: string): void {
  rmSync(path, { force: true });
}
