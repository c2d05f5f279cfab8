import { mkdirSync, mkdtempSync, rmSync, symlinkSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createNetnsFinder } from '../../dataplane/agent/netns.ts';
import type { Runner } from '../../dataplane/exec.ts';

const test = suite('agent: finding a real server\'s namespace');

const addrJson = (...addrs: string[]) => JSON.stringify([{ ifname: 'eth0', flags: ['UP'], addr_info: addrs.map((a) => ({ family: 'inet', local: a, prefixlen: 24, scope: 'global' })) }]);

function fakeProc(pids: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'proc-'));
  for (const [pid, inode] of Object.entries(pids)) {
    mkdirSync(join(root, pid, 'ns'), { recursive: true });
    symlinkSync(`net:[${inode}]`, join(root, pid, 'ns', 'net'));
  }
  return root;
}

function runner(byNs: Record<string, string[]>, calls: string[]): Runner {
  return async (cmd, args) => {
    calls.push([cmd, ...args].join(' '));
    if (cmd === 'ip' && args[0] === 'netns') return { stdout: Object.keys(byNs).filter((k) => !k.startsWith('/') && k !== 'host').map((n) => `${n} (id: 1)`).join('\n'), stderr: '' };
    if (cmd === 'ip') return { stdout: addrJson(...(byNs.host ?? [])), stderr: '' };
    if (cmd === 'nsenter') {
      const path = args[0]!.replace('--net=', '');
      const key = path.startsWith('/run/netns/') ? path.slice('/run/netns/'.length) : path;
      if (!(key in byNs)) throw new Error(`no namespace ${path}`);
      return { stdout: addrJson(...byNs[key]!), stderr: '' };
    }
    throw new Error(`unexpected ${cmd}`);
  };
}

test('host first, then named namespaces, then process namespaces; results are cached', async () => {
  const proc = fakeProc({ self: '1', 1: '1', 200: '77', 201: '77', 300: '88' });
  try {
    const calls: string[] = [];
    const run = runner({ host: ['192.0.2.1'], 'cni-a': ['10.244.0.5'], 'cni-b': ['10.244.0.6'], '/proc/200/ns/net': ['10.244.0.9'], '/proc/300/ns/net': [] }, calls);
    const finder = createNetnsFinder(run, undefined, proc);
    const got = await finder.find(['192.0.2.1', '10.244.0.6', '10.244.0.9', '10.1.1.1']);
    assert.equal(Object.fromEntries(got), {
      '192.0.2.1': { kind: 'host' }, '10.244.0.6': { kind: 'named', name: 'cni-b' }, '10.244.0.9': { kind: 'pid', pid: 200 },
    });
    assert.not.ok(calls.some((c) => c.includes('/proc/201/')), 'a namespace shared by two processes is inspected once');
    const before = calls.length;
    await finder.find(['10.244.0.6', '192.0.2.1']);
    assert.is(calls.length, before, 'known addresses cost nothing');
    finder.forget('10.244.0.6');
    await finder.find(['10.244.0.6']);
    assert.ok(calls.length > before, 'a forgotten address is searched again');
  } finally {
    rmSync(proc, { recursive: true, force: true });
  }
});

test('PID reuse between the search and preparation: the stale pid is not trusted', async () => {
  const proc = fakeProc({ self: '1', 1: '1', 200: '77' });
  try {
    const calls: string[] = [];
    const byNs: Record<string, string[]> = { host: ['192.0.2.1'], '/proc/200/ns/net': ['10.244.0.9'] };
    const finder = createNetnsFinder(runner(byNs, calls), undefined, proc);
    assert.equal(Object.fromEntries(await finder.find(['10.244.0.9'])), { '10.244.0.9': { kind: 'pid', pid: 200 } });
    assert.equal(await finder.confirm({ kind: 'pid', pid: 200 }, ['10.244.0.9']), ['10.244.0.9'], 'still there: prepare it');
    // The pod's process exits; the kernel hands pid 200 to a process in the host namespace.
    unlinkSync(join(proc, '200', 'ns', 'net'));
    symlinkSync('net:[1]', join(proc, '200', 'ns', 'net'));
    byNs['/proc/200/ns/net'] = ['192.0.2.1'];
    assert.equal(await finder.confirm({ kind: 'pid', pid: 200 }, ['10.244.0.9']), [], 'pid 200 names another namespace now');
    assert.equal(Object.fromEntries(await finder.find(['10.244.0.9'])), {}, 'searched again: the address is nowhere');
  } finally {
    rmSync(proc, { recursive: true, force: true });
  }
});

test('an address that left its namespace after the search is not confirmed and is searched again', async () => {
  const proc = fakeProc({ self: '1', 1: '1', 300: '88' });
  try {
    const calls: string[] = [];
    const byNs: Record<string, string[]> = { host: [], 'cni-a': ['10.244.0.5', '10.244.0.6'], '/proc/300/ns/net': [] };
    const finder = createNetnsFinder(runner(byNs, calls), undefined, proc);
    await finder.find(['10.244.0.5', '10.244.0.6']);
    byNs['cni-a'] = ['10.244.0.6'];
    byNs['/proc/300/ns/net'] = ['10.244.0.5'];
    assert.equal(await finder.confirm({ kind: 'named', name: 'cni-a' }, ['10.244.0.5', '10.244.0.6']), ['10.244.0.6']);
    assert.equal(Object.fromEntries(await finder.find(['10.244.0.5', '10.244.0.6'])), {
      '10.244.0.5': { kind: 'pid', pid: 300 }, '10.244.0.6': { kind: 'named', name: 'cni-a' },
    });
  } finally {
    rmSync(proc, { recursive: true, force: true });
  }
});

test('the cache holds only the addresses of the last search', async () => {
  const proc = fakeProc({ self: '1', 1: '1' });
  try {
    const addrs = Array.from({ length: 50 }, (_, i) => `10.244.0.${i + 1}`);
    const finder = createNetnsFinder(runner({ host: [], 'cni-a': addrs }, []), undefined, proc);
    for (let i = 0; i < 50; i += 5) await finder.find(addrs.slice(i, i + 5));
    assert.is(finder.size(), 5);
    await finder.find([]);
    assert.is(finder.size(), 0);
  } finally {
    rmSync(proc, { recursive: true, force: true });
  }
});

test.run();
