// How every VM runs lvs-agent: the JavaScript bundle scripts/build.ts compiles ahead of time
// (dist/lvs-agent.mjs), built on the host before each boot by lab/vm/vm.ts — never the .ts
// sources. It is what the images should run too (the Dockerfile still copies the sources; that
// changes with the real-cluster work). Guest-side code imports this file alone (no host-only imports).
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '../..');
/** The agent's entry point, as `node <AGENT_ENTRY> apply ...`. */
export const AGENT_ENTRY = join(REPO, 'dist', 'lvs-agent.mjs');
