// The agent's small state files under /run/lvs-agent (owner record, health record, return-path
// record): written whole to a temporary file and renamed over the old one, so a reader (or a
// restarted agent) never sees half a file.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export function writeFileAtomic(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}
