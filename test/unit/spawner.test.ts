// The spawner (dataplane/spawner.ts) with real processes: every command starts from one long-lived
// shell, never from this process, and each call resolves or fails as createRunner's would.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { CommandError } from '../../dataplane/exec.ts';
import { callScript, createSpawner, shellOf, type ShellKind, type Spawner } from '../../dataplane/spawner.ts';

const failure = (p: Promise<unknown>): Promise<CommandError> => p.then(() => { throw new Error('resolved'); }, (e: unknown) => {
  assert.instance(e, CommandError);
  return e as CommandError;
});

const freshWith = (shell: ShellKind) => (): { s: Spawner; dir: string } => {
  const dir = mkdtempSync(join(tmpdir(), 'lvs-spawner-test-'));
  return { s: createSpawner({ dir, shell }), dir };
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The parent pid of `pid`, from /proc. */
const parentOf = (pid: number): number => Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

// Every call's behaviour with bash (job control) and with plain sh (setsid), the two ways a job is started.
for (const shell of ['bash', 'sh'] as const) {
  const test = suite(`spawner (${shell})`);
  const fresh = freshWith(shell);

  test('each call gets its own stdout, stderr and exit status; arguments are passed as they are', async () => {
    const { s } = fresh();
    const odd = "no newline, 'quoted' $(not run) `nor this` \"x\" \\n\nsecond line; exit 9";
    const [a, b, d] = [
      s.run('printf', ['%s', odd]),
      failure(s.run('sh', ['-c', 'echo out; echo "Device \\"lvs0\\" does not exist." >&2; exit 3'])),
      s.run('sh', ['-c', 'printf "x\\n\\n0\\n"; echo warn >&2']),
    ];
    assert.equal(await a, { stdout: odd, stderr: '' });
    const err = await b;
    assert.is(err.exitCode, 3);
    assert.equal(err.argv, ['sh', '-c', 'echo out; echo "Device \\"lvs0\\" does not exist." >&2; exit 3']);
    assert.is(err.stdout, 'out\n');
    assert.is(err.stderr, 'Device "lvs0" does not exist.\n');
    assert.match(err.message, /exited 3: Device "lvs0" does not exist\.$/);
    assert.equal(await d, { stdout: 'x\n\n0\n', stderr: 'warn\n' });
    s.close();
  });

  test('a call with input gets it on stdin; one without reads /dev/null', async () => {
    const { s } = fresh();
    assert.equal(await s.run('cat', [], { input: "table inet x {\n}\n'q'\n" }), { stdout: "table inet x {\n}\n'q'\n", stderr: '' });
    assert.equal((await s.run('cat', [])).stdout, '');
    s.close();
  });

  test('the commands are started by the shell, not by this process', async () => {
    const { s } = fresh();
    // The command's parent is the job (a fork of bash, or the setsid'd `sh -c`); that one's parent is the spawner's shell.
    const { stdout } = await s.run('sh', ['-c', 'echo $PPID']);
    const job = Number(stdout.trim());
    assert.ok(s.shellPid !== undefined && s.shellPid !== process.pid);
    assert.is.not(job, process.pid);
    // The job shell exits once it reported; its parent was read from the command's own view.
    const { stdout: chain } = await s.run('sh', ['-c', 'grep PPid /proc/$PPID/status']);
    assert.is(Number(/(\d+)/.exec(chain)![1]), s.shellPid, 'the job shell is a child of the spawner shell');
    assert.is(parentOf(s.shellPid!), process.pid);
    s.close();
  });

  test('calls run side by side; their files are removed, and the directory on close', async () => {
    const { s, dir } = fresh();
    const t0 = Date.now();
    await Promise.all([s.run('sleep', ['0.6']), s.run('sleep', ['0.6']), s.run('sleep', ['0.6']), s.run('cat', [], { input: 'x' })]);
    const took = Date.now() - t0;
    assert.ok(took < 1500, `three 0.6 s sleeps took ${took} ms`);
    assert.equal(readdirSync(dir), []);
    s.close();
    for (let i = 0; i < 50 && existsSync(dir); i++) await sleep(20);
    assert.not.ok(existsSync(dir), 'the directory outlived close()');
  });

  test('a missing program exits 127 with the shell\'s message', async () => {
    const { s } = fresh();
    const err = await failure(s.run('/nonexistent/prog', ['x']));
    assert.is(err.exitCode, 127);
    assert.match(err.stderr, /nonexistent\/prog/);
    s.close();
  });

  test('when the time is up the whole process group is killed: no command outlives it; other calls are unaffected', async () => {
    const { s } = fresh();
    const marker = join(tmpdir(), `lvs-spawner-test-${shell}-${process.pid}`);
    const t0 = Date.now();
    const first = s.run('printf', ['done'], { timeoutMs: 300 });
    const slow = failure(s.run('sh', ['-c', `sleep 1 & sleep 1; echo late > ${marker}`], { timeoutMs: 300 }));
    assert.is((await first).stdout, 'done');
    const err = await slow;
    assert.match(err.message, /killed after 300 ms/);
    assert.is(err.exitCode, null);
    assert.is(err.signal, 'SIGKILL');
    assert.ok(Date.now() - t0 < 1000, `the call took ${Date.now() - t0} ms`);
    await sleep(1200);
    assert.not.ok(existsSync(marker), 'a command of the killed group went on running');
    assert.is((await s.run('printf', ['after'])).stdout, 'after');
    s.close();
  });

  test('a call whose time is up before its job has started: the job is killed as soon as it starts', async () => {
    const { s } = fresh();
    await s.run('true', []);
    const marker = join(tmpdir(), `lvs-spawner-test-late-${shell}-${process.pid}`);
    process.kill(s.shellPid!, 'SIGSTOP'); // the shell reads nothing: no job, no group to kill yet
    const late = failure(s.run('sh', ['-c', `sleep 0.5; echo late > ${marker}`], { timeoutMs: 50 }));
    await sleep(150);
    process.kill(s.shellPid!, 'SIGCONT');
    assert.match((await late).message, /killed after 50 ms/);
    await sleep(1000);
    assert.not.ok(existsSync(marker), 'the job ran although its time was up');
    assert.is((await s.run('printf', ['after'])).stdout, 'after');
    s.close();
  });

  test('when the shell dies a running call still reports; one that cannot fails; the next call starts a new shell', async () => {
    const { s } = fresh();
    await s.run('true', []);
    const first = s.shellPid!;
    // Running: its job outlives the shell and reports through the shell's stdout, which it holds.
    const running = s.run('sh', ['-c', 'sleep 0.5; printf late'], { timeoutMs: 8000 });
    // Its job shell killed: nothing will report it.
    const orphan = failure(s.run('sh', ['-c', 'kill -KILL $PPID; sleep 0.2'], { timeoutMs: 8000 }));
    await sleep(200);
    process.kill(first, 'SIGKILL');
    assert.is((await running).stdout, 'late');
    const err = await orphan;
    assert.match(err.message, /the command shell was killed by SIGKILL/);
    assert.is((await s.run('printf', ['again'])).stdout, 'again');
    assert.ok(s.shellPid !== undefined && s.shellPid !== first, 'a new shell');
    s.close();
  });

  test.run();
}

const test = suite('spawner');

test('bash is the shell where PATH has one, else sh', () => {
  assert.is(shellOf({ PATH: `/nonexistent:${dirname(spawnSync('sh', ['-c', 'command -v bash'], { encoding: 'utf8' }).stdout.trim())}` }), 'bash');
  assert.is(shellOf({ PATH: '/nonexistent' }), 'sh');
  assert.is(shellOf({}), 'sh');
});

test('bash forgets the jobs that ended: its job table does not grow by one entry a call', () => {
  const files = { out: '/dev/null', err: '/dev/null' };
  const calls = Array.from({ length: 200 }, (_, n) => callScript(n, ['true'], files, 'bash')).join('');
  // After the calls: wait until every job reported, then count the jobs bash still holds.
  const r = spawnSync('bash', ['-s'], { input: `set -m\n${calls}sleep 1\njobs | wc -l >&2\n`, encoding: 'utf8', timeout: 60_000 });
  assert.is(r.stdout.split('\n').filter((l) => l.startsWith('E ')).length, 200);
  const held = Number(r.stderr.trim().split('\n').pop());
  assert.ok(held < 10, `bash holds ${held} jobs after 200 calls`);
});

test('where no directory can be made (a read-only root without /tmp) the calls run as before, forked from this process', async () => {
  const s = createSpawner({ tmp: join(tmpdir(), `lvs-spawner-missing-${process.pid}`, 'below') });
  assert.equal(await s.run('cat', [], { input: 'in' }), { stdout: 'in', stderr: '' });
  const err = await failure(s.run('sh', ['-c', 'echo no >&2; exit 4']));
  assert.is(err.exitCode, 4);
  assert.is(err.stderr, 'no\n');
  assert.is(Number((await s.run('sh', ['-c', 'echo $PPID'])).stdout.trim()), process.pid, 'the fallback forks this process');
  s.close();
});

test('the shell does not keep the process alive: a program that never closes its spawner exits, and its directory goes with it', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lvs-spawner-exit-'));
  const script = `import { createSpawner } from ${JSON.stringify(new URL('../../dataplane/spawner.ts', import.meta.url).pathname)};
const s = createSpawner({ tmp: ${JSON.stringify(tmp)} });
const { stdout } = await s.run('printf', ['ran']);
console.log(stdout);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
  assert.is(r.signal, null, 'the program had to be killed: something kept it alive');
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stdout.trim(), 'ran');
  assert.equal(readdirSync(tmp), [], 'the exited program left its directory');
});

test('a new spawner removes the directories no running process owns, and keeps the others', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lvs-spawner-sweep-'));
  const gone = spawnSync('true').pid!; // exited: its pid is free (reuse within this test is unlikely)
  const sleeper = spawn('sleep', ['30']);
  const names = [`lvs-exec-${gone}-aaaaaa`, `lvs-exec-${process.pid}-bbbbbb`, `lvs-exec-${sleeper.pid}-cccccc`, 'lvs-exec-dddddd', 'other'];
  for (const n of names) { mkdirSync(join(tmp, n)); writeFileSync(join(tmp, n, '7.out'), 'left'); }
  try {
    const first = createSpawner({ tmp });
    assert.is((await first.run('printf', ['1'])).stdout, '1');
    const mine = readdirSync(tmp).filter((n) => !names.includes(n));
    assert.is(mine.length, 1, `one new directory: ${mine}`);
    assert.match(mine[0]!, new RegExp(`^lvs-exec-${process.pid}-`));
    assert.equal(readdirSync(tmp).filter((n) => names.includes(n)).sort(), [`lvs-exec-${sleeper.pid}-cccccc`, 'lvs-exec-dddddd', 'other'],
      'a gone pid\'s directory and one of this pid no spawner here made are removed; a live process\'s, an unnamed one and others are kept');
    const second = createSpawner({ tmp });
    assert.is((await second.run('printf', ['2'])).stdout, '2');
    assert.ok(existsSync(join(tmp, mine[0]!)), 'the second spawner removed the first one\'s directory');
    assert.is((await first.run('printf', ['3'])).stdout, '3');
    first.close();
    second.close();
    await sleep(100);
    assert.equal(readdirSync(tmp).sort(), [`lvs-exec-${sleeper.pid}-cccccc`, 'lvs-exec-dddddd', 'other']);
  } finally {
    sleeper.kill('SIGKILL');
  }
});

test.run();
