// The injected command runner (dataplane/exec.ts) and namespace targeting, with real processes.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CommandError, commandLine, createRunner, inNetns, netnsPath, type Runner } from '../../dataplane/exec.ts';

const test = suite('exec');
const run = createRunner();
const node = process.execPath;

test('runs without a shell, feeds stdin, captures stdout and stderr', async () => {
  const r = await run(node, ['-e', 'process.stdin.pipe(process.stdout); console.error("warn $HOME")'], { input: 'a b; $(x)\n' });
  assert.is(r.stdout, 'a b; $(x)\n');
  assert.is(r.stderr, 'warn $HOME\n');
});

test('a non-zero exit is a CommandError with the command line, exit code and stderr', async () => {
  try {
    await run(node, ['-e', 'console.error("Device \\"lvs0\\" does not exist."); process.exit(2)']);
    assert.unreachable();
  } catch (err) {
    assert.instance(err, CommandError);
    const e = err as CommandError;
    assert.is(e.exitCode, 2);
    assert.is(e.stderr.trim(), 'Device "lvs0" does not exist.');
    assert.equal(e.argv.slice(1, 2), ['-e']);
    assert.match(e.message, /exited 2: Device "lvs0" does not exist\.$/);
  }
});

test('a missing program and a timeout are CommandErrors too', async () => {
  await run('/nonexistent/prog', []).then(() => assert.unreachable(), (e: unknown) => {
    assert.instance(e, CommandError);
    assert.match((e as Error).message, /could not start/);
  });
  await run(node, ['-e', 'setTimeout(() => {}, 10000)'], { timeoutMs: 200 }).then(() => assert.unreachable(), (e: unknown) => {
    assert.instance(e, CommandError);
    assert.is((e as CommandError).signal, 'SIGTERM');
  });
});

test('commandLine quotes only what needs it', () => {
  assert.is(commandLine(['ip', 'link', 'set', 'dev', 'lo', 'alias', 'a b', "it's"]), `ip link set dev lo alias 'a b' 'it'\\''s'`);
});

test('inNetns: host runs as is, other targets go through nsenter --net', async () => {
  const seen: string[][] = [];
  const fake: Runner = async (cmd, args) => { seen.push([cmd, ...args]); return { stdout: '', stderr: '' }; };
  await inNetns(fake, { kind: 'host' })('ip', ['addr']);
  await inNetns(fake, { kind: 'pid', pid: 42 })('ip', ['addr']);
  await inNetns(fake, { kind: 'named', name: 'rs1' })('sysctl', ['-e', 'x']);
  assert.equal(seen, [
    ['ip', 'addr'],
    ['nsenter', '--net=/proc/42/ns/net', '--', 'ip', 'addr'],
    ['nsenter', '--net=/run/netns/rs1', '--', 'sysctl', '-e', 'x'],
  ]);
});

test('bad targets are refused with the reason', () => {
  assert.throws(() => netnsPath({ kind: 'pid', pid: 0 }), /pid must be a positive integer/);
  assert.throws(() => netnsPath({ kind: 'named', name: '../etc' }), /not a valid namespace name/);
  assert.throws(() => netnsPath({ kind: 'path', path: 'relative' }), /path must be absolute/);
});

test.run();
