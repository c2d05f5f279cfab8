// Compiles the agent and the controller ahead of time into JavaScript bundles under dist/ (what
// every VM runs, and what the images run: the Dockerfile's build stage runs this file;
// `npm run build`):
//   dist/lvs-agent.mjs          dataplane/cli/main.ts (standalone commands; `run` loads its chunk)
//   dist/lvs-agent-cluster.mjs  the cluster agent's entry alone (start-up measurements)
//   dist/lvs-controller.mjs     operator/main.ts (the controller image's entrypoint; on the host
//                               the tests and the demo run the controller from its sources)
// Why: inside the TCG guest Node starting from .ts files strips types with a WebAssembly module
// and reads hundreds of files over 9p; see lab/vm/NODE-UNDER-TCG.md for what that cost.
// All outputs and their shared chunks sit directly in dist/, one level below the repository root,
// as the sources' own folders are: api/schema.ts finds crds/ relative to its module's URL.
// `netlink` stays external (a native addon with prebuilt binaries, loaded from node_modules).
// First the CRD's precompiled validator is brought up to date (scripts/generate-validator.ts), so
// the agent's bundle validates without ajv's compiler.
import { build, type BuildOptions } from 'esbuild';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeValidator } from './generate-validator.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const DIST = join(ROOT, 'dist');

/** Same file names with the same bytes: a rebuild that changed nothing leaves dist/ untouched. */
function sameTree(a: string, b: string): boolean {
  if (!existsSync(a) || !existsSync(b)) return false;
  const fa = readdirSync(a).sort(), fb = readdirSync(b).sort();
  return fa.length === fb.length && fa.every((f, i) => f === fb[i] && readFileSync(join(a, f)).equals(readFileSync(join(b, f))));
}

/** esbuild's options for the bundles, written to outdir (the unit tier builds them in memory). */
export function bundleOptions(outdir: string): BuildOptions & { metafile: true } {
  return {
    absWorkingDir: ROOT,
    entryPoints: {
      'lvs-agent': 'dataplane/cli/main.ts',
      'lvs-agent-cluster': 'dataplane/cluster/agent.ts',
      // The director heartbeat thread (dataplane/announce/peers-thread.ts loads it by this name).
      'lvs-agent-peers': 'dataplane/announce/peers-worker.ts',
      'lvs-controller': 'operator/main.ts',
    },
    outdir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node24',
    outExtension: { '.js': '.mjs' },
    chunkNames: 'chunk-[hash]',
    external: ['netlink'],
    // Bundled CommonJS dependencies (pino, yaml, ...) call require() for Node built-ins.
    banner: { js: "import { createRequire as __lvsCreateRequire } from 'node:module'; const require = __lvsCreateRequire(import.meta.url);" },
    sourcemap: 'linked',
    logLevel: 'warning',
    metafile: true,
  };
}

let built: Promise<void> | undefined;
/** buildBundles() once per process (every VM boot of a test run uses the same bundles). */
export function ensureBundles(opts: { log?: (line: string) => void } = {}): Promise<void> {
  return (built ??= buildBundles(opts));
}

/**
 * Builds into a fresh folder and swaps it in only when something changed, so a VM that is
 * running from dist/ (its 9p view caches directory entries) never sees files vanish under it.
 */
export async function buildBundles(opts: { log?: (line: string) => void } = {}): Promise<void> {
  const started = Date.now();
  const next = `${DIST}.next-${process.pid}`;
  rmSync(next, { recursive: true, force: true });
  if (writeValidator()) opts.log?.('build: regenerated api/precompiled/virtualserver.js (it was stale)');
  const result = await build(bundleOptions(next));
  const outputs = Object.entries(result.metafile.outputs).filter(([f]) => f.endsWith('.mjs'));
  const bytes = outputs.reduce((n, [, o]) => n + o.bytes, 0);
  const unchanged = sameTree(next, DIST);
  if (unchanged) rmSync(next, { recursive: true, force: true });
  else {
    const old = `${DIST}.old-${process.pid}`;
    if (existsSync(DIST)) renameSync(DIST, old);
    renameSync(next, DIST);
    rmSync(old, { recursive: true, force: true });
  }
  opts.log?.(`build: ${outputs.length} files, ${(bytes / 1048576).toFixed(1)} MiB in dist/${unchanged ? ' (unchanged)' : ''} (${Date.now() - started} ms)`);
}

if (import.meta.main) await buildBundles({ log: console.log });
