// apply --watch's path watch: a file replaced by rename (vim, sed -i) is followed — the change is
// seen, and so are later edits of the new file, whose inode the old inotify watch never sees.
import { appendFileSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { watchPaths } from '../../dataplane/cli/watch.ts';

const test = suite('cli: apply --watch follows renamed files');

/** Resolves once read() returns want (polled on every change), or rejects after timeoutMs. */
function waitFor(reads: string[], want: string, timeoutMs = 3_000): Promise<void> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (reads.includes(want)) return resolve();
      if (Date.now() - t0 > timeoutMs) return reject(new Error(`never re-read ${JSON.stringify(want)}; reads: ${JSON.stringify(reads)}`));
      setTimeout(tick, 20);
    };
    tick();
  });
}

test('a file renamed over the watched one is re-read, and so are later in-place edits of it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lvs-watch-'));
  const file = join(dir, 'vs.yaml');
  writeFileSync(file, 'one\n');
  const reads: string[] = [];
  const w = watchPaths([file], () => { try { reads.push(readFileSync(file, 'utf8')); } catch { /* mid-save */ } }, 20);
  try {
    // The way vim and sed -i save: write a new inode beside, rename it over the path.
    writeFileSync(join(dir, '.vs.yaml.tmp'), 'two\n');
    renameSync(join(dir, '.vs.yaml.tmp'), file);
    await waitFor(reads, 'two\n');
    appendFileSync(file, 'three\n');
    await waitFor(reads, 'two\nthree\n');
    // Twice over: the re-armed watch is itself re-armed.
    writeFileSync(join(dir, '.vs.yaml.tmp'), 'four\n');
    renameSync(join(dir, '.vs.yaml.tmp'), file);
    await waitFor(reads, 'four\n');
    appendFileSync(file, 'five\n');
    await waitFor(reads, 'four\nfive\n');
  } finally {
    w.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a file deleted and written again later (unlink, then create) is picked up', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lvs-watch-'));
  const file = join(dir, 'vs.yaml');
  writeFileSync(file, 'one\n');
  const reads: string[] = [];
  const w = watchPaths([file], () => { try { reads.push(readFileSync(file, 'utf8')); } catch { /* gone */ } }, 20);
  try {
    rmSync(file);
    await new Promise((r) => setTimeout(r, 100));
    writeFileSync(file, 'back\n');
    await waitFor(reads, 'back\n');
  } finally {
    w.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
