// Guest suite of test/kernel/agent.test.ts: the agent where /proc/sys is read-only, as container
// runtimes mount it in every non-privileged container (the chart's agent is not privileged).
// Each agent runs in its own mount namespace with /proc/sys bound read-only over itself and the
// real /proc/sys/net bound read-write at /run/hostproc/sys/net — what the DaemonSet's hostPath
// volume gives it at /host/proc/sys/net. Without LVS_PROC_SYS the agent fails clearly and changes
// no sysctl; with it, every sysctl lands in the namespace the agent entered (pod or director),
// never in the agent's own, because /proc/sys/net resolves per opener's network namespace.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { nsRun, sh } from '../../../lab/guest/netns.ts';
import { agentArgv, timed } from './agent/cli.ts';

const uvuSuite = suite('lvs-agent with a read-only /proc/sys: LVS_PROC_SYS');
const test = timed(uvuSuite);
const VIP = '198.51.100.40';
const HOST_SYS = '/run/hostproc/sys';
const MANIFEST = '/run/tmp/ro-nat.yaml';
/** Mount namespace as in a non-privileged container: /proc/sys read-only, host's /proc/sys/net read-write elsewhere. */
const CONTAINER = [
  `mkdir -p ${HOST_SYS}/net`, `mount --bind /proc/sys/net ${HOST_SYS}/net`,
  'mount --bind /proc/sys /proc/sys', 'mount -o remount,bind,ro /proc/sys',
  'exec "$@"',
].join(' && ');

function agentInContainer(args: string[], procSys?: string, ns?: string): { code: number; out: string } {
  const env = { ...process.env, LVS_PROC_SYS: procSys ?? '' };
  const argv = ['unshare', '-m', '--propagation', 'private', 'bash', '-c', CONTAINER, 'bash', ...agentArgv(undefined, args)];
  const r = ns ? spawnSync('ip', ['netns', 'exec', ns, ...argv], { env, encoding: 'utf8' }) : spawnSync(argv[0]!, argv.slice(1), { env, encoding: 'utf8' });
  console.log(`\n#   lvs-agent ${args[0]} (read-only /proc/sys${procSys ? `, LVS_PROC_SYS=${procSys}` : ''}): exit ${r.status}`);
  return { code: r.status ?? 128, out: `${r.stdout}${r.stderr}` };
}

const sysctl = (ns: string | undefined, key: string) => (ns ? nsRun(ns, ['sysctl', '-n', key]) : sh(`sysctl -n ${key}\n`)).trim();

uvuSuite.after(() => {
  sh('ip netns del ro-pod 2>/dev/null || true\nip netns del ro-director 2>/dev/null || true\n');
});

test('setup: a pod namespace and a director namespace, defaults everywhere', () => {
  sh('ip netns add ro-pod\nip -n ro-pod link set lo up\nip netns add ro-director\nip -n ro-director link set lo up\n');
  assert.is(sysctl('ro-pod', 'net.ipv4.conf.all.arp_ignore'), '0');
  assert.is(sysctl(undefined, 'net.ipv4.conf.all.arp_ignore'), '0');
});

test('without LVS_PROC_SYS: prepare fails naming the read-only /proc/sys and the fix; no sysctl changed', () => {
  const r = agentInContainer(['prepare', '--forwarding', 'DR', '--vip', VIP, '--netns', 'ro-pod']);
  assert.is.not(r.code, 0, r.out);
  assert.ok(r.out.includes('permission denied on key "net.ipv4.conf.all.arp_ignore"'), r.out);
  assert.match(r.out, 'set LVS_PROC_SYS to a read-write mount of the host\'s /proc/sys');
  assert.is(sysctl('ro-pod', 'net.ipv4.conf.all.arp_ignore'), '0');
  assert.is(sysctl(undefined, 'net.ipv4.conf.all.arp_ignore'), '0');
});

test('with LVS_PROC_SYS: prepare sets the pod\'s ARP sysctls, in the pod\'s namespace only', () => {
  const r = agentInContainer(['prepare', '--forwarding', 'DR', '--vip', VIP, '--netns', 'ro-pod'], HOST_SYS);
  assert.is(r.code, 0, r.out);
  assert.match(r.out, `prepared for ${VIP} (DR)`);
  for (const key of ['net.ipv4.conf.all.arp_ignore', 'net.ipv4.conf.lo.arp_ignore']) assert.is(sysctl('ro-pod', key), '1', key);
  for (const key of ['net.ipv4.conf.all.arp_announce', 'net.ipv4.conf.lo.arp_announce']) assert.is(sysctl('ro-pod', key), '2', key);
  // The agent's own namespace (here the VM's root) is untouched although it wrote through its mount.
  assert.is(sysctl(undefined, 'net.ipv4.conf.all.arp_ignore'), '0');
  assert.is(sysctl(undefined, 'net.ipv4.conf.all.arp_announce'), '0');
});

test('with LVS_PROC_SYS: cleanup restores the pod\'s recorded values', () => {
  const r = agentInContainer(['cleanup', '--netns', 'ro-pod'], HOST_SYS);
  assert.is(r.code, 0, r.out);
  assert.is(sysctl('ro-pod', 'net.ipv4.conf.all.arp_ignore'), '0');
  assert.is(sysctl('ro-pod', 'net.ipv4.conf.all.arp_announce'), '0');
});

test('with LVS_PROC_SYS: a director (hostNetwork agent) sets its IPVS sysctls in its own namespace', () => {
  writeFileSync(MANIFEST, `apiVersion: lvs.dev/v1alpha1
kind: VirtualServer
metadata: {name: ro-nat}
spec:
  addresses: [198.51.100.41]
  ports: [{name: web, port: 80, protocol: TCP}]
  forwarding: NAT
  backends: {static: [{address: 10.77.0.9}]}
`);
  const rootForward = sysctl(undefined, 'net.ipv4.ip_forward');
  assert.is(sysctl('ro-director', 'net.ipv4.ip_forward'), '0');
  const r = agentInContainer(['apply', '-f', MANIFEST, '--state-file', '/run/tmp/ro-director.json'], HOST_SYS, 'ro-director');
  assert.is(r.code, 0, r.out);
  assert.match(r.out, '1 service(s) from 1 VirtualServer(s)');
  assert.is(sysctl('ro-director', 'net.ipv4.ip_forward'), '1');
  assert.is(sysctl('ro-director', 'net.ipv4.vs.expire_nodest_conn'), '1');
  assert.match(nsRun('ro-director', ['ipvsadm', '-Ln']), '198.51.100.41:80');
  assert.is(sysctl(undefined, 'net.ipv4.ip_forward'), rootForward);
});

uvuSuite.run();
