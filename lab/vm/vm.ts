// Real-kernel test harness: boots Debian's stock kernel under qemu (TCG) with the host's / shared
// read-only over 9p as the guest root, runs one bash command inside, and returns its exit status.
// Scenario files normally use runGuestSuite() from ./suite.ts; guest-side helpers (namespaces,
// traffic, ipvsadm) are in test/kernel/guest/lib/. Provisioning: ./provision.ts.
//
// API (the whole of it):
//   kernelPrereqs(): string | undefined
//       Provisions (idempotent, cached) and returns why VMs cannot run here, or undefined. Feed it
//       to gated() from test/lib/prereq.ts.
//   runInVm({ command, timeoutMs, memoryMb?, guestfwd?, hostfwd?, modules?, env?, cwd?, onOutput?, echo?, label? })
//       -> Promise<{ exitCode, output, kernelLog, bootMs, totalMs, timedOut }>
//       command   bash -c script run as root in the guest, cwd = repo root (the same path as on the host).
//       guestfwd  [{ guestPort, hostPort }]: the guest reaches host 127.0.0.1:hostPort at
//                 10.0.2.100:guestPort (eth0 = 10.0.2.15/24, qemu user net with restrict=on: nothing
//                 else leaves the VM). Without it the VM has no NIC at all.
//       hostfwd   [{ guestPort, hostPort }]: host 127.0.0.1:hostPort reaches the guest at
//                 10.0.2.15:guestPort (needs a guestfwd; the cluster tier's apiserver → kubelet).
//       modules   extra kernel modules to load; DEFAULT_MODULES are always loaded.
//       echo      print the command's output to stdout prefixed with `[label] ` (default true; a
//                 function chooses the lines of the command's output), and
//                 kernel messages as `[label kernel] ` (live once the command runs; the last 60
//                 lines of the boot log too when the VM failed). The kernel console is a separate
//                 serial port, so its messages never split a line of test output.
//       exitCode  the command's status; -1 when the VM died or timed out before reporting one.
//       bootMs    spawn -> command start (kernel, 9p root, module loading); totalMs spawn -> qemu exit.
//
// Inside the guest: /run is a tmpfs (TMPDIR=/run/tmp, HOME=/run/home; /var/run -> /run, so `ip
// netns` works); everything else is the host's file system, read-only. `modprobe` on PATH is a
// wrapper for `modprobe -d /run/kmod` (the extracted Debian kernel tree). LVS_IN_VM=1 and
// LVS_KERNEL_VERSION (the provisioned version) are set; with guestfwd, LVS_HOST_ADDR=10.0.2.100.
// The root share is mounted with cache=loose (node starts ~3x faster): the guest may not notice
// host files changed after it first read them, so pass data from host to a running guest over
// guestfwd, not through files. Under TCG every process spawn costs ~0.2-1 s: batch shell commands.
// qemu is always killed on timeout/failure/exit of this process; as a last resort it runs under
// `timeout(1)`, so even an orphaned qemu dies shortly after its deadline.
import { spawn } from 'node:child_process';
import { StringDecoder } from 'node:string_decoder';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ProvisionError, provisionKernel, type KernelImage } from './provision.ts';
import { precompile } from './precompiled.ts';
import { ensureBundles } from '../../scripts/build.ts';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

const SCHEDULERS = ['rr', 'wrr', 'lc', 'wlc', 'lblc', 'lblcr', 'dh', 'sh', 'sed', 'nq', 'mh', 'fo', 'ovf'];
/** Modules every VM loads before the command: IPVS and all schedulers, tunnels, test links, NAT. */
export const DEFAULT_MODULES = [
  'ip_vs', ...SCHEDULERS.map((s) => `ip_vs_${s}`), 'ipip', 'dummy', 'veth', 'bridge',
  'nf_conntrack', 'nf_nat', 'nf_tables', 'nft_chain_nat', 'nft_nat', 'nft_masq', 'nft_ct', 'virtio_net',
];

export interface GuestForward { guestPort: number; hostPort: number }

/** qemu's CPU model and TCG threading: the VM definition below, or an experiment's choice. */
export interface QemuCpu { cpu: string; smp: number; tcgThread: 'multi' | 'single' }

/**
 * The one VM definition every boot uses (demo, kernel and system tiers, benchmarks); chosen from
 * the measurements in lab/vm/NODE-UNDER-TCG.md (Node crashed in the guest under other choices).
 */
export const VM_CPU: QemuCpu = { cpu: 'max', smp: 2, tcgThread: 'multi' };
/**
 * Options for every Node process in the guest, through NODE_OPTIONS (children of children get
 * them too); same source as VM_CPU. No process in the guest strips TypeScript itself: Node's
 * stripper is WebAssembly, and V8 crashed compiling it under TCG (lab/vm/NODE-UNDER-TCG.md). The
 * hook serves the host-precompiled JavaScript (lab/vm/precompiled.ts); with stripping off, a
 * module that was not precompiled fails loudly instead of falling back. The agent itself runs as
 * its compiled bundle (lab/vm/guest-agent.ts).
 */
export const GUEST_NODE_OPTIONS = `--no-experimental-strip-types --import=${join(REPO_ROOT, 'lab/vm/precompiled-hook.mjs')}`;

export interface VmOptions {
  command: string;
  timeoutMs: number;
  memoryMb?: number; // default 1024
  guestfwd?: GuestForward[];
  /** host 127.0.0.1:hostPort forwarded to the guest's eth0 address at guestPort (needs guestfwd: eth0 is up only then) */
  hostfwd?: GuestForward[];
  modules?: string[];
  env?: Record<string, string>;
  cwd?: string; // default REPO_ROOT
  onOutput?: (line: string) => void;
  echo?: boolean | ((line: string) => boolean); // default true; a function says which lines
  label?: string; // default 'vm'
  /** Experiments only (lab/vm/node-starts.ts): another CPU model or TCG threading than VM_CPU. */
  qemuCpu?: QemuCpu;
  /** Experiments only: NODE_OPTIONS in the guest instead of GUEST_NODE_OPTIONS ('' for none). */
  guestNodeOptions?: string;
}

export interface VmResult {
  exitCode: number;
  output: string; // what init and the command printed (ttyS0)
  kernelLog: string; // the kernel console (ttyS1), boot messages included
  bootMs: number;
  totalMs: number;
  timedOut: boolean;
  /** The kernel's soft-lockup line that made the harness stop a guest which no longer scheduled. */
  hung?: string;
}

/**
 * A CPU that has not scheduled for this long is taken as a hung guest, and qemu is stopped then
 * instead of at the run's timeout. The kernel's watchdog reports a soft lockup after 20 s and
 * again every ~28 s while it lasts. A loaded host can delay an emulated CPU for tens of seconds,
 * which the guest then sees as a short lockup that ends; 120 s is well past those. Seen in the
 * CI of 2026-12-07 (cluster tier): CPU#1 stuck in kube-proxy from guest second ~243 to the
 * 2,400 s timeout, and the RCU kthread on CPU#0 starved all along, the pattern of an
 * inter-processor interrupt the emulator never delivered. No suite can pass after that.
 */
export const HUNG_AFTER_S = 120;

/** The CPU, how long it has been stuck and the task on it, from a kernel soft-lockup line. */
export function softLockup(line: string): { cpu: number; seconds: number; task: string } | undefined {
  const m = /soft lockup - CPU#(\d+) stuck for (\d+)s! \[([^\]]*)\]/.exec(line);
  return m ? { cpu: Number(m[1]), seconds: Number(m[2]), task: m[3]! } : undefined;
}

let image: KernelImage | undefined;
let prereqVerdict: { missing: string | undefined } | undefined;

/** Why real-kernel tests cannot run on this machine, or undefined when they can. Cached per process. */
export function kernelPrereqs(): string | undefined {
  if (prereqVerdict) return prereqVerdict.missing;
  let missing: string | undefined;
  if (process.platform !== 'linux' || process.arch !== 'x64') missing = `needs linux/x64, this is ${process.platform}/${process.arch}`;
  else {
    try {
      image = provisionKernel({ log: (l) => console.log(`# provision: ${l}`) });
    } catch (err) {
      missing = err instanceof ProvisionError ? err.message : `provisioning failed: ${String(err)}`;
    }
  }
  prereqVerdict = { missing };
  return missing;
}

const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const PORT_OK = (p: number) => Number.isInteger(p) && p > 0 && p < 65536;

function validate(opts: VmOptions): void {
  if (typeof opts.command !== 'string' || !opts.command.trim()) throw new Error('runInVm: command must be a non-empty string');
  if (!(opts.timeoutMs > 0)) throw new Error(`runInVm: timeoutMs must be a positive number, got ${opts.timeoutMs}`);
  if (opts.memoryMb !== undefined && !(Number.isInteger(opts.memoryMb) && opts.memoryMb >= 256)) throw new Error(`runInVm: memoryMb must be an integer >= 256, got ${opts.memoryMb}`);
  for (const f of [...opts.guestfwd ?? [], ...opts.hostfwd ?? []]) {
    if (!PORT_OK(f.guestPort) || !PORT_OK(f.hostPort)) throw new Error(`runInVm: guestfwd and hostfwd ports must be 1-65535, got ${JSON.stringify(f)}`);
  }
  if (opts.hostfwd?.length && !opts.guestfwd?.length) throw new Error('runInVm: hostfwd needs a guestfwd (the guest brings eth0 up only then)');
  for (const m of opts.modules ?? []) if (!/^[\w-]+$/.test(m)) throw new Error(`runInVm: modules: bad module name ${JSON.stringify(m)}`);
  for (const k of Object.keys(opts.env ?? {})) if (!/^[A-Za-z_]\w*$/.test(k)) throw new Error(`runInVm: env: bad variable name ${JSON.stringify(k)}`);
}

/** The script init chroots into: environment, modules, loopback (and eth0), then the command. */
function guestScript(img: KernelImage, opts: VmOptions, commandFile: string): string {
  const modules = [...DEFAULT_MODULES, ...(opts.modules ?? [])];
  const nodeOptions = opts.guestNodeOptions ?? GUEST_NODE_OPTIONS;
  const env = { ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}), LVS_IN_VM: '1', LVS_KERNEL_VERSION: img.version, LVS_KMOD_DIR: '/run/kmod', TMPDIR: '/run/tmp', HOME: '/run/home', NO_COLOR: '1', TERM: 'dumb', ...opts.env };
  const lines = [
    'set -u',
    'export PATH=/run/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    ...Object.entries(env).map(([k, v]) => `export ${k}=${shq(v)}`),
    'mkdir -p /run/tmp /run/home /run/bin /run/netns /run/lock',
    `printf '#!/bin/sh\\nexec /usr/sbin/modprobe -d /run/kmod "$@"\\n' > /run/bin/modprobe && chmod 755 /run/bin/modprobe`,
    `modprobe -a ${modules.join(' ')} || { echo "LVS-VM-SETUP-ERROR: modprobe failed"; exit 124; }`,
    'ip link set lo up',
  ];
  if (opts.guestfwd?.length) {
    lines.push(
      'for i in $(seq 50); do [ -e /sys/class/net/eth0 ] && break; sleep 0.1; done',
      'ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 || { echo "LVS-VM-SETUP-ERROR: eth0"; exit 124; }',
      'export LVS_HOST_ADDR=10.0.2.100',
    );
  }
  // The boot log is kept whole; from here on only warnings and worse reach the kernel console.
  lines.push('echo 4 > /proc/sys/kernel/printk', 'echo LVS-VM-START', `cd ${shq(opts.cwd ?? REPO_ROOT)} || exit 124`, `exec bash -c "$(cat ${shq(commandFile)})"`);
  return lines.join('\n') + '\n';
}

function qemuArgs(img: KernelImage, opts: VmOptions, runScript: string, kernelLog: string): string[] {
  const share = (path: string, tag: string) =>
    `local,path=${path.replace(/,/g, ',,')},mount_tag=${tag},security_model=none,readonly=on,multidevs=remap`;
  // restrict=on isolates the guest; the explicit forwards still work (qemu's documentation).
  const nic = opts.guestfwd?.length
    ? ['user,restrict=on,model=virtio-net-pci',
      ...opts.guestfwd.map((f) => `guestfwd=tcp:10.0.2.100:${f.guestPort}-cmd:socat - TCP:127.0.0.1:${f.hostPort}`),
      ...(opts.hostfwd ?? []).map((f) => `hostfwd=tcp:127.0.0.1:${f.hostPort}-10.0.2.15:${f.guestPort}`)].join(',')
    : 'none';
  const cpu = opts.qemuCpu ?? VM_CPU;
  return [
    '-accel', `tcg,thread=${cpu.tcgThread}`, '-cpu', cpu.cpu, '-smp', String(cpu.smp), '-m', String(opts.memoryMb ?? 1024),
    '-nographic', '-no-reboot',
    // ttyS0: init and the command (stdio); ttyS1: the kernel console, into a file.
    '-serial', 'mon:stdio', '-serial', `file:${kernelLog}`,
    '-kernel', img.kernel, '-initrd', img.initrd,
    '-append', `console=ttyS1 panic=-1 lvs.run=${runScript}`,
    '-virtfs', share('/', 'host'), '-virtfs', share(img.modulesRoot, 'kmod'),
    '-nic', nic,
  ];
}

const live = new Set<number>(); // process-group ids of running qemu wrappers
const killGroup = (pgid: number) => { try { process.kill(-pgid, 'SIGKILL'); } catch { /* already gone */ } };
let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => { for (const g of live) killGroup(g); });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => { for (const g of live) killGroup(g); process.kill(process.pid, sig); });
  }
}

/** Boots a VM, runs opts.command inside, and resolves when qemu has exited (never rejects on guest failure). */
export async function runInVm(opts: VmOptions): Promise<VmResult> {
  validate(opts);
  const missing = kernelPrereqs();
  if (missing || !image) throw new Error(`runInVm: real-kernel prerequisites missing: ${missing}`);
  // What the guest runs: the agent bundle and the precompiled TypeScript, current with the sources.
  await ensureBundles();
  precompile(REPO_ROOT);
  const dir = mkdtempSync(join(tmpdir(), 'lvs-vm-'));
  if (/\s/.test(dir)) throw new Error(`runInVm: temporary folder ${dir} contains whitespace`);
  writeFileSync(join(dir, 'command.sh'), opts.command);
  writeFileSync(join(dir, 'run.sh'), guestScript(image, opts, join(dir, 'command.sh')));
  try {
    return await boot(image, opts, join(dir, 'run.sh'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Splits a byte stream into lines (UTF-8 characters may straddle chunks). */
function lineSplitter(onLine: (line: string) => void) {
  const decoder = new StringDecoder('utf8');
  let partial = '';
  return {
    write(chunk: Buffer) {
      const parts = (partial + decoder.write(chunk)).split('\n');
      partial = parts.pop() ?? '';
      for (const p of parts) onLine(p);
    },
    flush() { if (partial) onLine(partial); partial = ''; },
  };
}

/** Follows a file qemu appends to (the kernel console); returns a function that reads the rest and stops. */
function followFile(path: string, onLine: (line: string) => void): () => void {
  const lines = lineSplitter(onLine);
  const buf = Buffer.alloc(65536);
  let offset = 0;
  const poll = () => {
    let fd: number;
    try { fd = openSync(path, 'r'); } catch { return; } // not created yet
    try {
      for (let n; (n = readSync(fd, buf, 0, buf.length, offset)) > 0; offset += n) lines.write(buf.subarray(0, n));
    } finally { closeSync(fd); }
  };
  const timer = setInterval(poll, 500);
  return () => { clearInterval(timer); poll(); lines.flush(); };
}

const clean = (raw: string) => raw.replace(/\r/g, '').replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1bc/g, ''); // CRLF, SeaBIOS escapes

function boot(img: KernelImage, opts: VmOptions, runScript: string): Promise<VmResult> {
  hookExit();
  const label = opts.label ?? 'vm';
  const echo = opts.echo ?? true;
  const started = Date.now();
  const kernelLogPath = join(dirname(runScript), 'kernel.log');
  const hardLimit = `${Math.ceil(opts.timeoutMs / 1000) + 30}s`;
  const child = spawn('timeout', ['-s', 'KILL', hardLimit, 'qemu-system-x86_64', ...qemuArgs(img, opts, runScript, kernelLogPath)],
    { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const pgid = child.pid!;
  live.add(pgid);
  let output = '';
  let kernelLog = '';
  let bootMs = -1;
  let exitCode = -1;
  let timedOut = false;
  let hung: string | undefined;
  let afterExit: NodeJS.Timeout | undefined;
  const onLine = (raw: string) => {
    const line = clean(raw);
    output += line + '\n';
    if (bootMs < 0 && line.includes('LVS-VM-START')) bootMs = Date.now() - started;
    const m = /LVS-VM-EXIT=(\d+)/.exec(line);
    if (m) {
      exitCode = Number(m[1]);
      afterExit ??= setTimeout(() => killGroup(pgid), 10_000); // do not wait on a hung power-off
    }
    if (echo === true || (echo !== false && echo(line))) process.stdout.write(`[${label}] ${line}\n`);
    opts.onOutput?.(line);
  };
  // Kernel messages are echoed live once the command runs (IPVS warnings, oopses); the boot log
  // is shown only when the VM failed.
  const stopKernel = followFile(kernelLogPath, (raw) => {
    const line = clean(raw);
    kernelLog += line + '\n';
    if (echo && bootMs >= 0) process.stdout.write(`[${label} kernel] ${line}\n`);
    if (!hung && (softLockup(line)?.seconds ?? 0) >= HUNG_AFTER_S) { hung = line.trim(); killGroup(pgid); }
  });
  const streams = [child.stdout, child.stderr].map((stream) => {
    const lines = lineSplitter(onLine);
    stream.on('data', (chunk: Buffer) => lines.write(chunk));
    return lines;
  });
  const timer = setTimeout(() => { timedOut = true; killGroup(pgid); }, opts.timeoutMs);
  return new Promise((resolveRun) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (afterExit) clearTimeout(afterExit);
      live.delete(pgid);
      killGroup(pgid); // anything left in the group (there should be nothing)
      for (const s of streams) s.flush();
      stopKernel();
      if (hung) onLine(`LVS-VM-HUNG the guest's kernel stopped scheduling, qemu stopped: ${hung}`);
      else if (timedOut) onLine(`LVS-VM-TIMEOUT after ${opts.timeoutMs} ms`);
      else if (exitCode < 0) onLine(`LVS-VM-DIED qemu exited ${code ?? signal} without an exit marker`);
      if (echo && (exitCode < 0 || timedOut || hung || bootMs < 0)) {
        for (const l of kernelLog.trimEnd().split('\n').slice(-60)) process.stdout.write(`[${label} kernel] ${l}\n`);
      }
      resolveRun({ exitCode: timedOut || hung ? -1 : exitCode, output, kernelLog, bootMs, totalMs: Date.now() - started, timedOut, ...(hung ? { hung } : {}) });
    });
  });
}
