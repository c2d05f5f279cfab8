// npm run demo: boots Debian's kernel under qemu (the host kernel has no IPVS), and inside it runs
// demo/guest.ts — namespaces as client, director, router and real servers, lvs-agent programming
// IPVS from examples/, real traffic, and the rewrites each hop saw. Exits 0 when it all worked.
import { execFileSync } from 'node:child_process';
import { kernelPrereqs, runInVm } from '../test/kernel/harness/vm.ts';

const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0)}s`;

console.log('lvs-operator demo: IPVS NAT, DR and TUN on a real Linux kernel\n');
console.log(`[${elapsed()}] provisioning: Debian packages (qemu, ipvsadm, tcpdump, ...) and Debian's kernel`);
execFileSync('bash', ['scripts/provision.sh'], { stdio: 'inherit' });
const missing = kernelPrereqs();
if (missing) {
  console.error(`cannot run the demo here: ${missing}`);
  process.exit(1);
}
console.log(`[${elapsed()}] booting the kernel under qemu (TCG emulation: expect a few minutes in all)`);
// The console shows firmware and harness markers first; the demo's own output starts after
// LVS-VM-START.
let first = true;
let inDemo = false;
const result = await runInVm({
  command: 'node_modules/.bin/node demo/guest.ts',
  timeoutMs: 1_800_000,
  memoryMb: 1536,
  echo: false,
  label: 'demo',
  onOutput: (line) => {
    if (!inDemo) {
      if (line.includes('LVS-VM-START')) { inDemo = true; first = false; console.log(`[${elapsed()}] kernel up; running the demo inside it\n`); }
      return;
    }
    if (!line.startsWith('LVS-VM-')) console.log(line);
  },
});
console.log(`\n[${elapsed()}] VM: boot ${(result.bootMs / 1000).toFixed(1)} s, total ${(result.totalMs / 1000).toFixed(1)} s, exit ${result.exitCode}${result.timedOut ? ' (timed out)' : ''}`);
if (result.exitCode !== 0) {
  if (first) console.log(result.kernelLog.split('\n').slice(-40).join('\n'));
  process.exit(1);
}
