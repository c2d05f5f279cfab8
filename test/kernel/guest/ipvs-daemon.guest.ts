// Guest suite of test/kernel/ipvs-daemon.test.ts (runs inside the VM): the IPVS sync daemons
// started, listed and stopped through our generic-netlink client in a network namespace of their
// own, with ipvsadm (`-L --daemon`, an independent client) as the witness, and ipvsadm's own
// NEW_DAEMON request bytes (seen with strace) compared with our encoding.
//
// The process re-executes itself inside the namespace `sync` (dummy d0, MTU 1500; veth v0, MTU
// 9000, its peer in the root namespace), since a netlink socket talks to the namespace its process
// is in.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CMD } from '../../../dataplane/ipvs/codec.ts';
import { encodeDaemon } from '../../../dataplane/ipvs/daemon-codec.ts';
import { syncDaemons } from '../../../dataplane/ipvs/daemon.ts';
import { IpvsError, IpvsNetlink } from '../../../dataplane/ipvs/netlink.ts';
import { NLMSG_ERROR, splitMessages } from '../../../dataplane/ipvs/nla.ts';
import type { Tap } from '../../../dataplane/ipvs/transport.ts';
import type { IpvsService, SyncDaemon } from '../../../dataplane/ipvs/types.ts';
import { assertInVm, run } from '../../../lab/guest/netns.ts';

assertInVm();
const NS = 'sync';
if (process.env.IPVS_DAEMON_IN_NS !== '1') {
  run(['bash', '-ec', [
    `ip netns add ${NS}`, `ip -n ${NS} link set lo up`,
    `ip -n ${NS} link add d0 type dummy`, `ip -n ${NS} link set d0 up`,
    `ip link add v1 type veth peer name v0 netns ${NS}`, `ip -n ${NS} link set v0 mtu 9000 up`, 'ip link set v1 mtu 9000 up',
  ].join('; ')]);
  const child = spawnSync('ip', ['netns', 'exec', NS, process.execPath, fileURLToPath(import.meta.url)],
    { stdio: 'inherit', env: { ...process.env, IPVS_DAEMON_IN_NS: '1' } });
  process.exit(child.status ?? 1);
}

const ipvsadm = (...args: string[]) => run(['ipvsadm', ...args]);
/** `ipvsadm -L --daemon`, one parsed line per daemon. */
function witness(): SyncDaemon[] {
  return ipvsadm('-L', '--daemon').split('\n').filter(Boolean).map((line) => {
    const m = /^(master|backup) sync daemon \(mcast=(\S+), syncid=(\d+), maxlen=(\d+), group=([^,]+), port=(\d+), ttl=(\d+)\)$/.exec(line);
    if (!m) throw new Error(`unexpected ipvsadm -L --daemon line: ${line}`);
    return { state: m[1] as SyncDaemon['state'], interface: m[2]!, syncId: +m[3]!, maxLen: +m[4]!, group: m[5]!, port: +m[6]!, ttl: +m[7]! };
  });
}
async function rejects(p: Promise<unknown>): Promise<IpvsError> {
  try { await p; } catch (err) { assert.instance(err, IpvsError); return err as IpvsError; }
  throw new Error('expected an IpvsError');
}
const MASTER: SyncDaemon = { state: 'master', interface: 'd0', syncId: 5 };
const BACKUP: SyncDaemon = { state: 'backup', interface: 'v0', syncId: 6 };
const defaults = { group: '224.0.0.81', port: 8848, ttl: 1 };

/** The socket's recent traffic, one line per netlink message: time, direction, sequence number, type. */
const traffic: Array<{ at: number; line: string }> = [];
const tap: Tap = (direction, bytes) => {
  for (const m of splitMessages(bytes)) {
    const what = m.type === NLMSG_ERROR && m.payload.length >= 4 ? `error ${m.payload.readInt32LE(0)}` : `type ${m.type}`;
    traffic.push({ at: Date.now(), line: `${direction} seq ${m.seq} ${what}` });
  }
  traffic.splice(0, Math.max(0, traffic.length - 40));
};
const TIMEOUT_MS = 60_000;

/**
 * k.stopDaemon, plus what to do when its reply does not come in time. Seen in CI (the fresh-clone
 * run of 8c35530) and here in about 1 run of 12-30, always for the master stopped right after its
 * start: no reply within the client's 60 s, after which the daemon was gone. The traffic printed
 * the one time this path ran here showed no reply at the timeout, no IPVS kernel thread left, this
 * process in epoll_wait, and the timer on time (60,013 ms). Why is not known. The netlink module
 * calls sendmsg synchronously on the event loop, so a kernel that held DEL_DAEMON would stall the
 * loop; a reply lost or a request held in the module's write queue would not. So the loop's
 * longest stall is measured and the socket read once more before judging: a reply that arrived
 * while the loop ran freely and was not matched fails the test (our client's bug); otherwise the
 * daemon must be gone by ipvsadm's word, and the stall and the reply's time are printed.
 */
async function stopDaemon(state: SyncDaemon['state']): Promise<void> {
  const t0 = Date.now();
  let tick = t0, stall = 0;
  const meter = setInterval(() => { const now = Date.now(); stall = Math.max(stall, now - tick); tick = now; }, 100);
  try {
    await k.stopDaemon(state);
    return;
  } catch (err) {
    if (!(err instanceof IpvsError) || err.code !== 'ETIMEDOUT') throw err;
  } finally {
    clearInterval(meter);
  }
  const timedOut = Date.now();
  await new Promise((r) => setTimeout(r, 1000)); // a poll phase reads what the socket holds
  const seq = traffic.filter((t) => t.line.startsWith('send ')).at(-1)?.line.split(' ')[2];
  const reply = traffic.find((t) => t.line.startsWith(`recv seq ${seq} `));
  console.log(`# stop ${state}: ETIMEDOUT after ${timedOut - t0} ms; event loop's longest stall ${stall} ms; the socket's last messages (ms from the request):\n#   ${traffic.map((t) => `${t.at - t0} ${t.line}`).join('\n#   ')}`);
  console.log(`# kernel stacks of the IPVS threads and of this process's threads:\n${kernelStacks()}`);
  assert.not.ok(reply && stall < TIMEOUT_MS / 2, `a reply to seq ${seq} reached the socket ${reply ? reply.at - t0 : '-'} ms after the request while the event loop ran (longest stall ${stall} ms) and was not matched`);
  while (witness().some((d) => d.state === state)) {
    assert.ok(Date.now() - timedOut < TIMEOUT_MS, `the ${state} sync daemon still runs ${Date.now() - t0} ms after DEL_DAEMON`);
    await new Promise((r) => setTimeout(r, 500));
  }
  console.log(`# stop ${state}: the kernel held DEL_DAEMON: event loop stalled ${stall} ms, reply ${reply ? `read ${reply.at - t0} ms after the request` : 'not read'}; ipvsadm shows the daemon gone ${Date.now() - t0} ms after it`);
}

/** Where the IPVS kernel threads and this process's threads are in the kernel (/proc/PID/stack). */
function kernelStacks(): string {
  return run(['sh', '-c', 'for t in /proc/[0-9]*/task/[0-9]*; do c=$(cat $t/comm 2>/dev/null); case "$c" in ipvs*|node*|MainThread|libuv*) echo "== $t $c $(cut -d" " -f3 $t/stat 2>/dev/null)"; cat $t/stack 2>/dev/null;; esac; done; true']);
}

let k: IpvsNetlink;
const test = suite('ipvs sync daemons through our netlink client (Linux in the VM)');
test.before(async () => { k = await IpvsNetlink.open({ timeoutMs: TIMEOUT_MS, tap }); });
test.after(async () => { await k?.close(); });

test('master and backup started by us: ipvsadm shows both, our list equals it, the root namespace has none', async () => {
  assert.equal(witness(), [], 'no daemon before');
  await k.startDaemon(MASTER);
  await k.startDaemon(BACKUP);
  const expected = [
    // A master's maxlen is 1500 - 28 (IPv4 + UDP headers); a backup's follows its link's MTU (9000 - 28).
    { ...MASTER, maxLen: 1472, ...defaults },
    { ...BACKUP, maxLen: 8972, ...defaults },
  ];
  assert.equal(witness(), expected);
  assert.equal(await k.listDaemons(), expected);
  assert.is(run(['nsenter', '-t', '1', '-n', 'ipvsadm', '-L', '--daemon']), '', 'daemons are per network namespace');
});

test('a second start of a running state: EEXIST; an unknown interface: ENODEV, even while that state runs', async () => {
  const again = await rejects(k.startDaemon({ ...MASTER, syncId: 9 }));
  assert.equal([again.op, again.code], ['startDaemon', 'EEXIST']);
  assert.is(again.message, 'start IPVS sync daemon master on d0 (syncid 9): EEXIST — a sync daemon of this state already runs in this network namespace');
  const noDev = await rejects(k.startDaemon({ ...MASTER, interface: 'nosuch0' }));
  assert.equal([noDev.op, noDev.code], ['startDaemon', 'ENODEV']);
  assert.equal(witness().map((d) => [d.state, d.syncId]), [['master', 5], ['backup', 6]], 'nothing changed');
});

test('stop master: ipvsadm shows the backup only; stopping it again: ESRCH; stop backup: none', async () => {
  await stopDaemon('master');
  assert.equal(witness().map((d) => d.state), ['backup']);
  assert.equal((await k.listDaemons()).map((d) => d.state), ['backup']);
  const gone = await rejects(k.stopDaemon('master'));
  assert.equal([gone.op, gone.code, gone.message], ['stopDaemon', 'ESRCH', 'stop IPVS sync daemon master: ESRCH — no sync daemon of this state is running']);
  await stopDaemon('backup');
  assert.equal(witness(), []);
  assert.equal(await k.listDaemons(), []);
});

test('every option, IPv4 and IPv6 groups, the backup\'s maxlen floor: ipvsadm and our list agree', async () => {
  await k.startDaemon({ ...MASTER, syncId: 7, maxLen: 1400, group: '239.1.2.3', port: 8849, ttl: 3 });
  await k.startDaemon({ ...BACKUP, maxLen: 100, group: 'ff02::1:2' });
  const expected = [
    { ...MASTER, syncId: 7, maxLen: 1400, group: '239.1.2.3', port: 8849, ttl: 3 },
    { ...BACKUP, maxLen: 1024, group: 'ff02::1:2', port: 8848, ttl: 1 },
  ];
  assert.equal(witness(), expected);
  assert.equal(await k.listDaemons(), expected);
  await stopDaemon('master');
  await stopDaemon('backup');
});

test('EINVAL: a group that is not multicast; mixed-family destinations in the namespace', async () => {
  assert.is((await rejects(k.startDaemon({ ...MASTER, group: '192.0.2.1' }))).code, 'EINVAL');
  const v6: IpvsService = { family: 6, protocol: 'TCP', address: '2001:db8::10', port: 80, scheduler: 'rr', flags: 0, timeout: 0, netmask: '128' };
  await k.addService(v6);
  await k.addDestination(v6, { family: 4, address: '10.0.0.6', port: 80, forward: 'tunnel', weight: 1, upperThreshold: 0, lowerThreshold: 0 });
  assert.is((await rejects(k.startDaemon(MASTER))).code, 'EINVAL');
  await k.deleteService(v6);
  await k.startDaemon(MASTER);
  await stopDaemon('master');
  assert.equal(witness(), []);
});

/** The NEW_DAEMON payload (genlmsghdr + attributes) ipvsadm sent, from strace's hex. */
function ipvsadmRequest(args: string[]): Buffer {
  const out = join(tmpdir(), 'ipvsadm-strace.txt');
  spawnSync('strace', ['-f', '-xx', '-s', '4096', '-e', 'trace=sendmsg', '-o', out, 'ipvsadm', ...args]);
  const payloads = [...readFileSync(out, 'utf8').matchAll(/nlmsg_flags=NLM_F_REQUEST\|NLM_F_ACK, [^}]*\}, "((?:\\x[0-9a-f]{2})+)"/g)]
    .map((m) => Buffer.from(m[1]!.replaceAll('\\x', ''), 'hex'))
    .filter((b) => b[0] === CMD.NEW_DAEMON);
  assert.is(payloads.length, 1, `one NEW_DAEMON request from ipvsadm ${args.join(' ')}`);
  return payloads[0]!;
}

test('our NEW_DAEMON attributes are byte for byte those ipvsadm sends for the same daemon', async () => {
  const cases: Array<[SyncDaemon, string[]]> = [
    [MASTER, ['--start-daemon', 'master', '--mcast-interface', 'd0', '--syncid', '5']],
    [{ ...BACKUP, maxLen: 1400, group: '239.1.2.3', port: 8849, ttl: 3 },
      ['--start-daemon', 'backup', '--mcast-interface', 'v0', '--syncid', '6', '--sync-maxlen', '1400', '--mcast-group', '239.1.2.3', '--mcast-port', '8849', '--mcast-ttl', '3']],
    [{ ...MASTER, group: 'ff02::1:2' }, ['--start-daemon', 'master', '--mcast-interface', 'd0', '--syncid', '5', '--mcast-group', 'ff02::1:2']],
  ];
  for (const [d, args] of cases) {
    const theirs = ipvsadmRequest(args);
    assert.is(encodeDaemon(d).toString('hex'), theirs.subarray(4).toString('hex'), args.join(' '));
    ipvsadm('--stop-daemon', d.state);
  }
  assert.equal(witness(), []);
});

test('syncDaemons converges against the kernel\'s filled-in defaults, restarts a changed daemon, stops unwanted ones', async () => {
  const steps = (s: Awaited<ReturnType<typeof syncDaemons>>) => s.map((x) => `${x.op} ${x.daemon.state} ${x.daemon.syncId}`);
  assert.equal(steps(await syncDaemons(k, [MASTER, BACKUP])), ['start master 5', 'start backup 6']);
  assert.equal(steps(await syncDaemons(k, [MASTER, BACKUP])), [], 'nothing to do once running');
  assert.equal(steps(await syncDaemons(k, [{ ...MASTER, syncId: 8 }, BACKUP])), ['stop master 5', 'start master 8']);
  assert.equal(witness().map((d) => [d.state, d.syncId]), [['master', 8], ['backup', 6]]);
  assert.equal(steps(await syncDaemons(k, [])), ['stop master 8', 'stop backup 6']);
  assert.equal(witness(), []);
});

test.run();
