// Sysctls through LVS_PROC_SYS (a read-write mount of the host's /proc/sys, for agents whose own
// /proc/sys is read-only): key -> file mapping, and the real shell scripts reading and writing
// files under a stand-in root in a temp dir. The kernel side (per-netns resolution through a
// bind mount, a read-only /proc/sys) is proven in test/kernel/guest/agent-procsys.guest.ts.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createRunner } from '../../dataplane/exec.ts';
import { procSysRoot, readSysctls, sysctlPath, writeSysctls } from '../../dataplane/realserver/iproute.ts';

const test = suite('realserver: sysctls under LVS_PROC_SYS');
const run = createRunner();
let root = '';

test.before.each(() => {
  root = mkdtempSync(join(tmpdir(), 'procsys-'));
  process.env.LVS_PROC_SYS = `${root}/`;
  for (const [key, value] of [['net.ipv4.conf.all.arp_ignore', '0'], ['net.ipv4.conf.eth0.100.rp_filter', '2'], ['net.ipv4.ip_forward', '0']] as const) {
    const f = sysctlPath(root, key);
    mkdirSync(dirname(f), { recursive: true });
    writeFileSync(f, `${value}\n`);
  }
});

test.after.each(() => {
  delete process.env.LVS_PROC_SYS;
  rmSync(root, { recursive: true, force: true });
});

test('procSysRoot: unset or empty means the sysctl tool; a trailing slash is dropped', () => {
  assert.is(procSysRoot({}), undefined);
  assert.is(procSysRoot({ LVS_PROC_SYS: '' }), undefined);
  assert.is(procSysRoot({ LVS_PROC_SYS: '/host/proc/sys/' }), '/host/proc/sys');
});

test('sysctlPath: dots separate, except inside a device name (VLAN eth0.100)', () => {
  assert.is(sysctlPath('/r', 'net.ipv4.ip_forward'), '/r/net/ipv4/ip_forward');
  assert.is(sysctlPath('/r', 'net.ipv4.vs.conntrack'), '/r/net/ipv4/vs/conntrack');
  assert.is(sysctlPath('/r', 'net.ipv4.conf.tunl0.rp_filter'), '/r/net/ipv4/conf/tunl0/rp_filter');
  assert.is(sysctlPath('/r', 'net.ipv4.conf.eth0.100.rp_filter'), '/r/net/ipv4/conf/eth0.100/rp_filter');
  assert.is(sysctlPath('/r', 'net.ipv6.conf.all.forwarding'), '/r/net/ipv6/conf/all/forwarding');
});

test('readSysctls reads the files; keys without a file are absent (like sysctl -e)', async () => {
  const got = await readSysctls(run, ['net.ipv4.conf.all.arp_ignore', 'net.ipv4.conf.eth0.100.rp_filter', 'net.ipv4.vs.conntrack']);
  assert.equal(Object.fromEntries(got), { 'net.ipv4.conf.all.arp_ignore': '0', 'net.ipv4.conf.eth0.100.rp_filter': '2' });
});

test('readSysctls keeps a value\'s inner whitespace and reads a file without a final newline', async () => {
  mkdirSync(dirname(sysctlPath(root, 'net.ipv4.vs.conntrack')), { recursive: true });
  writeFileSync(sysctlPath(root, 'net.ipv4.vs.conntrack'), '1');
  writeFileSync(sysctlPath(root, 'net.ipv4.vs.sync_threshold'), '3\t0\n');
  const got = await readSysctls(run, ['net.ipv4.vs.conntrack', 'net.ipv4.vs.sync_threshold', 'net.ipv4.ip_forward']);
  assert.equal(Object.fromEntries(got), { 'net.ipv4.vs.conntrack': '1', 'net.ipv4.vs.sync_threshold': '3\t0', 'net.ipv4.ip_forward': '0' });
});

test('writeSysctls writes each value to its file', async () => {
  await writeSysctls(run, [['net.ipv4.conf.all.arp_ignore', '1'], ['net.ipv4.ip_forward', '1']]);
  assert.is(readFileSync(sysctlPath(root, 'net.ipv4.conf.all.arp_ignore'), 'utf8'), '1\n');
  assert.is(readFileSync(sysctlPath(root, 'net.ipv4.ip_forward'), 'utf8'), '1\n');
});

test('a write that fails (here: a missing key) fails the call and names the file', async () => {
  try {
    await writeSysctls(run, [['net.ipv4.conf.nosuchdev.rp_filter', '0']]);
    assert.unreachable('the write should fail');
  } catch (err) {
    assert.match(String(err), `${root}/net/ipv4/conf/nosuchdev/rp_filter`);
  }
});

test.run();
