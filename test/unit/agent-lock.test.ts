// The one-agent-per-namespace lock with real processes: a second taker is refused and told the
// holder's pid; the lock dies with its holder, SIGKILL included (no stale lock to clean up).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { acquireAgentLock, AgentLockedError } from '../../dataplane/agent/lock.ts';

const test = suite('agent lock');
const CHILD = new URL('../fixtures/lock-holder.ts', import.meta.url).pathname;
// Unique per run, so a real agent (or a parallel run) on this machine cannot interfere.
const NAME = `lvs-agent-test/${process.pid}/${Date.now()}`;

interface Child { proc: ChildProcess; line: Promise<string> }

function start(command = 'apply'): Child {
  const proc = spawn(process.execPath, [CHILD, NAME, command], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = new Promise<string>((resolve) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('\n')) resolve(out.split('\n')[0]!); });
    proc.on('close', () => resolve(out.trim()));
  });
  return { proc, line };
}

test('a second process is refused and names the holder; after SIGKILL of the holder the lock is free', async () => {
  const first = start('apply --watch');
  try {
    assert.is(await first.line, `held ${first.proc.pid}`);
    const second = start();
    const refused = await second.line;
    assert.ok(refused.startsWith(`refused ${first.proc.pid} `), refused);
    assert.match(refused, new RegExp(`pid ${first.proc.pid}, lvs-agent apply --watch`));
    await once(second.proc, 'close');
    assert.is(second.proc.exitCode, 3);
    first.proc.kill('SIGKILL');
    await once(first.proc, 'close');
    const third = start();
    try {
      assert.is(await third.line, `held ${third.proc.pid}`, 'the SIGKILLed holder left no stale lock');
    } finally {
      third.proc.kill('SIGKILL');
      await once(third.proc, 'close');
    }
  } finally {
    if (first.proc.exitCode === null && first.proc.signalCode === null) first.proc.kill('SIGKILL');
  }
});

test('in one process: release() frees the lock; a taker meanwhile is refused with our pid', async () => {
  const lock = await acquireAgentLock('apply', `${NAME}/inproc`);
  const err = await acquireAgentLock('apply', `${NAME}/inproc`).then(() => undefined, (e: unknown) => e);
  assert.instance(err, AgentLockedError);
  assert.is((err as AgentLockedError).holderPid, process.pid);
  await lock.release();
  const again = await acquireAgentLock('apply', `${NAME}/inproc`);
  await again.release();
});

test.run();
