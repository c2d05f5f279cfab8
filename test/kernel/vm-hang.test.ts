// The VM harness stops a guest whose kernel reports a long soft lockup (lab/vm/vm.ts HUNG_AFTER_S)
// instead of waiting for the run's timeout. A real lockup cannot be caused on purpose here, so the
// guest writes the watchdog's lines itself through /dev/kmsg at a level the console prints: first
// a short lockup, which a loaded host can cause and which must not stop the run, then a long one.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gated } from '../lib/prereq.ts';
import { HUNG_AFTER_S, kernelPrereqs, runInVm, softLockup } from '../../lab/vm/vm.ts';

const test = gated(suite('vm harness: a hung guest'), kernelPrereqs());

const lockup = (s: number) => `watchdog: BUG: soft lockup - CPU#1 stuck for ${s}s! [lvs-hang-test:1]`;

test('a soft lockup past the bound stops qemu at once and is reported; a shorter one does not', async () => {
  const timeoutMs = 900_000;
  const vm = await runInVm({
    command: [
      `echo '<2>${lockup(30)}' > /dev/kmsg`, 'sleep 3', 'echo AFTER-SHORT-LOCKUP',
      `echo '<2>${lockup(HUNG_AFTER_S + 7)}' > /dev/kmsg`, 'sleep 800', 'echo SURVIVED',
    ].join('\n'),
    timeoutMs,
    label: 'hang',
  });
  assert.ok(vm.hung, 'the run was not reported as hung');
  assert.equal(softLockup(vm.hung!), { cpu: 1, seconds: HUNG_AFTER_S + 7, task: 'lvs-hang-test:1' });
  assert.ok(vm.output.includes('AFTER-SHORT-LOCKUP'), 'the 30 s lockup stopped the run');
  assert.not.ok(vm.output.includes('SURVIVED'));
  assert.ok(vm.output.includes('LVS-VM-HUNG'), 'no LVS-VM-HUNG line in the output');
  assert.is(vm.exitCode, -1);
  assert.is(vm.timedOut, false);
  assert.ok(vm.totalMs < 300_000, `qemu ran ${vm.totalMs} ms after the lockup line (the guest sleeps 800 s)`);
});

test('softLockup() reads the watchdog line as the CI printed it', () => {
  assert.equal(softLockup('[node kernel] [ 2285.093382] watchdog: BUG: soft lockup - CPU#1 stuck for 2042s! [kube-proxy:218]'),
    { cpu: 1, seconds: 2042, task: 'kube-proxy:218' });
  assert.is(softLockup('[ 2322.593106] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:'), undefined);
});

test.run();
