// The coalescing runner (dataplane/exec-batch.ts) with real processes: calls started together go
// through one shell, and each still resolves or fails as if it had run alone.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CommandError, createRunner, inNetns, type Runner } from '../../dataplane/exec.ts';
import { existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { coalescing } from '../../dataplane/exec-batch.ts';

const test = suite('exec: coalescing');

/** The real runner, counting the processes this process starts (what forks the agent). */
function counted(): { run: Runner; started: string[] } {
  const real = createRunner();
  const started: string[] = [];
  return { started, run: (cmd, args, opts) => { started.push(cmd); return real(cmd, args, opts); } };
}

const failure = (p: Promise<unknown>): Promise<CommandError> => p.then(() => { throw new Error('resolved'); }, (e: unknown) => {
  assert.instance(e, CommandError);
  return e as CommandError;
});

test('calls started together start one process and each gets its own stdout, stderr and exit status', async () => {
  const { run, started } = counted();
  const c = coalescing(run);
  const [a, b, d] = [
    c('printf', ['%s', "no newline, 'quoted' $(not run) \\n"]),
    failure(c('sh', ['-c', 'echo out; echo "Device \\"lvs0\\" does not exist." >&2; exit 3'])),
    c('sh', ['-c', 'printf "x\\n\\n0\\n"; echo warn >&2']),
  ];
  assert.equal(await a, { stdout: "no newline, 'quoted' $(not run) \\n", stderr: '' });
  const err = await b;
  assert.is(err.exitCode, 3);
  assert.equal(err.argv, ['sh', '-c', 'echo out; echo "Device \\"lvs0\\" does not exist." >&2; exit 3']);
  assert.is(err.stdout, 'out\n');
  assert.is(err.stderr, 'Device "lvs0" does not exist.\n');
  assert.match(err.message, /exited 3: Device "lvs0" does not exist\.$/);
  assert.equal(await d, { stdout: 'x\n\n0\n', stderr: 'warn\n' });
  assert.equal(started, ['sh'], 'one process for the three');
});

test('one call, or a call with input, runs as it is; a later tick is a new group', async () => {
  const { run, started } = counted();
  const c = coalescing(run);
  assert.equal(await c('printf', ['a']), { stdout: 'a', stderr: '' });
  const [x, y] = await Promise.all([c('cat', [], { input: 'in' }), c('printf', ['b'])]);
  assert.equal([x.stdout, y.stdout], ['in', 'b']);
  assert.equal(started, ['printf', 'cat', 'printf']);
  await Promise.all([c('true', []), c('true', [])]);
  assert.equal(started.slice(3), ['sh']);
});

test('namespaced calls combine too (nsenter in the group); a missing program exits 127', async () => {
  const { run, started } = counted();
  const c = coalescing(run);
  const seen: string[][] = [];
  const wrapped: Runner = (cmd, args, opts) => { seen.push([cmd, ...args]); return c(cmd, args, opts); };
  const host = inNetns(wrapped, { kind: 'host' });
  const [ok, missing] = [host('printf', ['ok']), failure(host('/nonexistent/prog', ['x']))];
  assert.is((await ok).stdout, 'ok');
  assert.is((await missing).exitCode, 127);
  assert.equal(started, ['sh']);
  assert.is(seen.length, 2);
});

test('the commands run side by side; the temporary directory is removed', async () => {
  const c = coalescing(createRunner());
  const before = readdirSync(tmpdir()).filter((f) => f.startsWith('lvs-exec-')).length;
  const t0 = Date.now();
  await Promise.all([c('sleep', ['0.6']), c('sleep', ['0.6']), c('sleep', ['0.6'])]);
  const took = Date.now() - t0;
  assert.ok(took < 1500, `three 0.6 s sleeps took ${took} ms`);
  assert.is(readdirSync(tmpdir()).filter((f) => f.startsWith('lvs-exec-')).length, before);
});

test('when the time is up the whole group is killed: the finished commands keep their results, no command outlives it', async () => {
  const c = coalescing(createRunner());
  const marker = join(tmpdir(), `lvs-exec-test-${process.pid}`);
  const t0 = Date.now();
  const first = c('printf', ['done'], { timeoutMs: 300 });
  const slow = failure(c('sh', ['-c', `sleep 1; echo late > ${marker}`], { timeoutMs: 300 }));
  assert.is((await first).stdout, 'done');
  const err = await slow;
  assert.match(err.message, /did not finish/);
  assert.is(err.exitCode, null);
  assert.ok(Date.now() - t0 < 1000, `the group took ${Date.now() - t0} ms`);
  await new Promise((r) => setTimeout(r, 1200));
  assert.not.ok(existsSync(marker), 'a command of the killed group went on running');
});

test.run();
