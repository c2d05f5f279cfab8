// The health record: what the running agent last saw of every checked real server, written beside
// the owner record (../agent/show.ts) so `lvs-agent show` (another process) can print it.
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from '../agent/state-file.ts';
import { useKey } from './targets.ts';
import type { RealServerHealth } from './agent-health.ts';

export interface HealthRecord {
  version: 1;
  writtenAt: string;
  /** useKey ("serviceKey|address:port") → state. */
  realServers: Record<string, { up: boolean; message: string; since: string }>;
}

export function healthFileOf(stateFile: string): string {
  return `${stateFile.replace(/\.json$/, '')}.health.json`;
}

export function healthRecord(states: readonly RealServerHealth[], now: Date): HealthRecord {
  const realServers: HealthRecord['realServers'] = {};
  for (const s of states) realServers[useKey(s.serviceKey, s.address, s.port)] = { up: s.up, message: s.message, since: new Date(s.since).toISOString() };
  return { version: 1, writtenAt: now.toISOString(), realServers };
}

export function writeHealthRecord(path: string, rec: HealthRecord): void {
  writeFileAtomic(path, JSON.stringify(rec));
}

export function readHealthRecord(path: string): HealthRecord | undefined {
  try {
    const rec = JSON.parse(readFileSync(path, 'utf8')) as HealthRecord;
    return rec.version === 1 ? rec : undefined;
  } catch {
    return undefined;
  }
}
