// Loaded into every Node process in the VM (NODE_OPTIONS=--import=<this file>, set by lab/vm/vm.ts).
// It serves each of the repository's .ts modules from dist-js/, where the host stripped their
// types before the boot (lab/vm/precompiled.ts, Node's own stripTypeScriptTypes, positions kept),
// as plain JavaScript modules. So no process in the guest runs Node's type stripper, which is a
// WebAssembly module: under qemu's TCG its code allocation trips V8's JIT page bookkeeping
// ("Check failed: it->second.Size() > offset"); lab/vm/NODE-UNDER-TCG.md has the measurements.
// Module URLs stay those of the sources, so import.meta.url, relative paths and stack traces
// (same lines and columns) are unchanged. This file is plain JavaScript on purpose.
import { readFileSync } from 'node:fs';
import { registerHooks } from 'node:module';

const ROOT = new URL('../../', import.meta.url).href;
const CACHE = new URL('../../dist-js/', import.meta.url).href;

registerHooks({
  load(url, context, nextLoad) {
    if (!url.startsWith(ROOT) || !url.endsWith('.ts') || url.includes('/node_modules/')) return nextLoad(url, context);
    let source;
    try {
      source = readFileSync(new URL(url.slice(ROOT.length), CACHE), 'utf8');
    } catch (err) {
      // A module the host did not precompile would silently fall back to the wasm stripper.
      throw new Error(`lab/vm/precompiled-hook.mjs: ${url} has no precompiled copy in dist-js/ (lab/vm/precompiled.ts runs before every boot): ${err.message}`);
    }
    return { format: 'module', source, shortCircuit: true };
  },
});
