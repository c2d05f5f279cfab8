#!/usr/bin/env node
// Lab tool: what the kernel's IPVS destination trash costs a NEW_DEST. One VM boot; the guest
// (lab/guest/ipvs-trash-probe.guest.ts) programs N services × 10 NAT destinations in 5 chunks,
// timing each chunk and the CPU it used, three times in one namespace:
//   1. ours     — our netlink client's applyBatch, from an empty table (nothing deleted before);
//   2. ipvsadm  — `ipvsadm -R` of the same rules, after `ipvsadm -C` and a wait (LVS_TRASH_WAIT_S,
//                 default 200 s) for the deleted destinations to leave the trash;
//   3. ours     — again, right after `ipvsadm -C` of the 110,000 rules of step 2.
// Results: lab/IPVS-TRASH.md.
//
//   node_modules/.bin/node lab/ipvs-trash-probe.ts [out-file]   (default /tmp/ipvs-trash-probe.log)
//   LVS_TRASH_N=10000 services (default), LVS_TRASH_WAIT_S=200
import { writeFileSync } from 'node:fs';
import { kernelPrereqs, runInVm } from './vm/vm.ts';

const out = process.argv[2] ?? '/tmp/ipvs-trash-probe.log';
const missing = kernelPrereqs();
if (missing) { console.error(`cannot run: ${missing}`); process.exit(2); }
const lines: string[] = [];
const vm = await runInVm({
  command: 'node_modules/.bin/node lab/guest/ipvs-trash-probe.guest.ts',
  timeoutMs: 60 * 60_000, memoryMb: 2048, label: 'trash', echo: false,
  env: { LVS_TRASH_N: process.env.LVS_TRASH_N ?? '10000', LVS_TRASH_WAIT_S: process.env.LVS_TRASH_WAIT_S ?? '200' },
  onOutput: (l) => { if (l.includes('TRASH ')) { lines.push(l); console.log(l); } },
});
writeFileSync(out, `${lines.join('\n')}\nvm exit ${vm.exitCode} after ${Math.round(vm.totalMs / 1000)} s\n`);
console.log(`# vm exit ${vm.exitCode}; written to ${out}`);
process.exit(vm.exitCode === 0 ? 0 : 1);
