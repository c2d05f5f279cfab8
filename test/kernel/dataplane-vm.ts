// Host side of the director and real-server kernel suites: boot one VM (test/kernel/harness/vm.ts),
// run one guest uvu file in it, relay its output (uvu's summary reaches test/run.ts), and record
// the run time. Skips with its reason, via gated(), where VMs cannot run.
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import { gated } from '../lib/prereq.ts';
import { kernelPrereqs, REPO_ROOT, runInVm } from './harness/vm.ts';

export async function runGuest(hostFileUrl: string, guestFile: string, timeoutMs: number): Promise<void> {
  const name = relative(REPO_ROOT, fileURLToPath(hostFileUrl));
  const missing = kernelPrereqs();
  if (missing) {
    const test = suite(name);
    gated(test, missing)(`runs ${guestFile} in a VM`, () => {});
    test.run();
    return;
  }
  const result = await runInVm({ command: `node_modules/.bin/node ${guestFile}`, timeoutMs, label: 'vm' });
  console.log(`# ${name}: exit ${result.exitCode}, boot ${result.bootMs} ms, total ${result.totalMs} ms${result.timedOut ? ' (TIMED OUT)' : ''}`);
  if (result.exitCode !== 0) process.exitCode = 1;
}
