// Host side of a kernel scenario: one VM runs one or more guest uvu suites with the repo's node.
// A scenario file test/kernel/<name>.test.ts is just:
//
//   import { runGuestSuite } from './harness/suite.ts';
//   await runGuestSuite(import.meta.url, 'test/kernel/guest/<name>.guest.ts', { timeoutMs: 300_000 });
//
// The guest console is relayed with a `[vm] ` prefix, so each guest suite's uvu summary
// ("Total/Passed/Skipped") reaches stdout and test/run.ts counts the guest tests. The process
// exits non-zero when the VM failed, timed out, or any guest suite failed. When the kernel tier
// cannot run here it prints `# skipped: <reason>` and a uvu summary with one skipped test
// (which test/run.ts turns into a failure under CI=true).
import { suite } from 'uvu';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gated } from '../../lib/prereq.ts';
import { kernelPrereqs, REPO_ROOT, runInVm, type VmOptions } from '../../../lab/vm/vm.ts';

export type GuestSuiteOptions = Omit<VmOptions, 'command'>;

const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export async function runGuestSuite(hostFileUrl: string, guestFiles: string | string[], opts: GuestSuiteOptions): Promise<void> {
  const name = relative(REPO_ROOT, fileURLToPath(hostFileUrl));
  const files = typeof guestFiles === 'string' ? [guestFiles] : guestFiles;
  const missing = kernelPrereqs();
  if (missing) {
    const test = suite(name);
    gated(test, missing)(`runs ${files.join(', ')} in a VM`, () => {});
    test.run();
    return;
  }
  // Each suite runs even if an earlier one failed; the command's status is the worst of them.
  const command = [
    'rc=0',
    // A suite killed by a signal (status 128+N) names the signal: under emulation that is Node
    // crashing (lab/vm/NODE-UNDER-TCG.md), and it is a failure, never retried.
    ...files.map((f) => `echo "# guest suite ${f}"; node_modules/.bin/node ${shq(f)}; s=$?; if [ $s -ge 128 ]; then echo "# guest suite ${f} was KILLED by SIG$(kill -l $((s - 128))) (status $s): Node crashed in the guest"; rc=1; elif [ $s -ne 0 ]; then echo "# guest suite ${f} exited $s"; rc=1; fi`),
    'exit $rc',
  ].join('\n');
  const result = await runInVm({ ...opts, command });
  console.log(`# ${name}: exit ${result.exitCode}, boot ${result.bootMs} ms, total ${result.totalMs} ms${result.timedOut ? ' (TIMED OUT)' : ''}`);
  if (result.exitCode !== 0) process.exitCode = 1;
}
