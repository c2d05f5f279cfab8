#!/usr/bin/env node
// Lab tool: one director sync (lvs0, sysctls, our nft tables) at N VIPs on the real kernel, in
// one VM boot (lab/guest/director-scale.guest.ts). `node lab/director-scale.ts [out-file]`,
// LVS_DIRSCALE_N (default 10000). With `--check`: the agent's periodic director check instead
// (lab/guest/director-check.guest.ts; N default 400, LVS_DIRCHECK_CHECKS checks, default 10).
import { writeFileSync } from 'node:fs';
import { kernelPrereqs, runInVm } from './vm/vm.ts';

const checkMode = process.argv.includes('--check');
const out = process.argv.slice(2).find((a) => !a.startsWith('--')) ?? '/tmp/director-scale.txt';
const missing = kernelPrereqs();
if (missing) { console.error(`cannot run: ${missing}`); process.exit(2); }
const lines: string[] = [];
const vm = await runInVm({
  command: `node_modules/.bin/node lab/guest/${checkMode ? 'director-check' : 'director-scale'}.guest.ts`,
  timeoutMs: 30 * 60_000, memoryMb: 2048, label: 'dirscale', echo: false,
  env: { LVS_DIRSCALE_N: process.env.LVS_DIRSCALE_N ?? (checkMode ? '400' : '10000'), LVS_DIRCHECK_CHECKS: process.env.LVS_DIRCHECK_CHECKS ?? '10' },
  onOutput: (l) => { if (l.includes('DIRSCALE ') || l.includes('DIRCHECK ') || /Error|error:/.test(l)) { lines.push(l); console.log(l); } },
});
writeFileSync(out, `${lines.join('\n')}\nvm exit ${vm.exitCode} after ${Math.round(vm.totalMs / 1000)} s\n`);
console.log(`# vm exit ${vm.exitCode}; written to ${out}`);
process.exit(vm.exitCode === 0 ? 0 : 1);
