// A stress of the one WebAssembly user in a TypeScript start: Node's type stripper (amaro, wasm).
// Strips every .ts file under api/ operator/ dataplane/ test/ (about 180 files) PASSES times in
// one process, so its wasm functions run hot and tier up (Liftoff -> TurboFan) while the main
// thread walks stacks. lab/vm/node-starts.ts runs it as the `strip*` process configurations:
// the crash seen in Node starts came from exactly this path (Runtime_WasmTriggerTierUp -> stack
// walk -> ThreadIsolation::StartOfJitAllocationAt), so this reproduces it faster than starts do.
// Plain JavaScript on purpose (it must not need the stripper to load).
import { readdirSync, readFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { join } from 'node:path';

const PASSES = Number(process.argv[2] ?? 3);
const files = [];
const walk = (d) => {
  for (const e of readdirSync(d, { withFileTypes: true })) {
    if (e.isDirectory()) walk(join(d, e.name));
    else if (e.name.endsWith('.ts')) files.push(join(d, e.name));
  }
};
for (const d of ['api', 'operator', 'dataplane', 'test']) walk(d);
process.removeAllListeners('warning');
const sources = files.map((f) => readFileSync(f, 'utf8'));
let bytes = 0;
for (let p = 0; p < PASSES; p++) for (const s of sources) bytes += stripTypeScriptTypes(s, { mode: 'strip' }).length;
console.log(`stripped ${files.length} files x ${PASSES}: ${bytes} bytes`);
