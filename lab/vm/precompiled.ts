// Host side of lab/vm/precompiled-hook.mjs: strips the types of every .ts file of the repository
// (outside node_modules and dist*) into dist-js/<same path>, with Node's own stripTypeScriptTypes
// (the stripper Node would run at load time, here natively on the host, where it is safe), so
// the guest's Node processes load plain JavaScript. Whitespace replaces the types: lines and
// columns are those of the sources. Files whose copy is current are left alone; copies of
// deleted sources are removed. Runs before every VM boot (lab/vm/vm.ts) and takes well under a
// second when nothing changed.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { dirname, join, relative } from 'node:path';

// Besides these, every name starting with "dist": the bundles, their build folders and dist-js itself.
const SKIP = new Set(['node_modules', '.git', '.cache', 'tmp']);

function tsFiles(root: string, dir = root, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name.startsWith('dist') || SKIP.has(e.name)) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) tsFiles(root, p, out);
    else if (e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(relative(root, p));
  }
  return out;
}

function cached(root: string, cache: string, out: Set<string>, dir = cache): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) cached(root, cache, out, p);
    else out.add(relative(cache, p));
  }
}

/** Node's stripper warns that it is experimental on first use; that line would only be noise here. */
function quietly<T>(fn: () => T): T {
  const emit = process.emitWarning;
  process.emitWarning = ((w: string | Error, ...rest: unknown[]) => {
    if (String(typeof w === 'string' ? w : w.message).includes('stripTypeScriptTypes')) return;
    (emit as (...a: unknown[]) => void).call(process, w, ...rest);
  }) as typeof process.emitWarning;
  try { return fn(); } finally { process.emitWarning = emit; }
}

/** Brings dist-js/ up to date with the sources; returns how many files it (re)wrote. */
export function precompile(root: string): { written: number; total: number } {
  // Beside dist/, not inside it: scripts/build.ts replaces dist/ as a whole when a bundle changes.
  const cache = join(root, 'dist-js');
  const files = tsFiles(root);
  let written = 0;
  for (const rel of files) {
    const src = join(root, rel);
    const dst = join(cache, rel);
    if (existsSync(dst) && statSync(dst).mtimeMs >= statSync(src).mtimeMs) continue;
    let js: string;
    try {
      const source = readFileSync(src, 'utf8');
      js = quietly(() => stripTypeScriptTypes(source, { mode: 'strip' }));
    } catch (err) {
      throw new Error(`precompile ${rel}: ${(err as Error).message}`);
    }
    mkdirSync(dirname(dst), { recursive: true });
    writeFileSync(dst, js);
    written += 1;
  }
  const stale = new Set<string>();
  cached(root, cache, stale);
  for (const f of files) stale.delete(f);
  for (const f of stale) rmSync(join(cache, f), { force: true });
  return { written, total: files.length };
}
