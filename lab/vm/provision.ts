// Provisioning for the real-kernel tests: host packages, Debian's stock kernel, and the test
// initramfs. Idempotent; everything is cached under ~/.cache/lvs-operator/kernel/<version>/:
//   root/                the linux-image package extracted (boot/vmlinuz-*, lib/modules/*), depmod'ed
//   initrd-<hash>.img    busybox-static + the virtio/9p module chain + guest-init.sh as /init
//   vmlinux              the uncompressed kernel, booted through its PVH entry point
// The warm path only queries dpkg and stats files (well under a second).
// Concurrent runs are safe: every artifact is built under a temporary name and renamed into place.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { packInitramfs, type CpioEntry } from './cpio.ts';

/** Debian packages the kernel tier needs on the host (qemu, module tools, traffic/IPVS tools). */
export const HOST_PACKAGES = ['qemu-system-x86', 'kmod', 'socat', 'ipvsadm', 'iproute2', 'busybox-static', 'nftables', 'xz-utils', 'iputils-arping', 'libndp-tools'];
/** Modules the initramfs loads (with their dependencies) to reach the 9p root share. */
const INITRD_MODULES = ['virtio_pci', '9pnet_virtio', '9p'];

export interface KernelImage {
  version: string; // e.g. 6.1.0-56-amd64 (= uname -r in the guest)
  dir: string; // the cache folder for this version
  kernel: string; // what qemu boots: vmlinux (PVH entry) when it could be extracted, else vmlinuz
  initrd: string; // path of the gzip'ed initramfs
  modulesRoot: string; // folder holding lib/modules/<version>; shared into the guest as /run/kmod
}

export interface ProvisionOptions {
  log?: (line: string) => void;
  cacheRoot?: string; // default ~/.cache/lvs-operator/kernel
}

const here = dirname(fileURLToPath(import.meta.url));
const sh = (cmd: string, args: string[], cwd?: string) =>
  execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

export class ProvisionError extends Error {}

function describeExecError(err: unknown): string {
  const e = err as { stderr?: string | Buffer; message?: string };
  const lines = (e.stderr?.toString() || e.message || String(err)).trim().split('\n');
  return lines.slice(-3).join(' | ');
}

/** Packages from `wanted` that dpkg does not report as installed. */
export function missingPackages(wanted: string[] = HOST_PACKAGES): string[] {
  let out = '';
  try {
    out = sh('dpkg-query', ['-W', '-f=${Package} ${db:Status-Status}\n', ...wanted]);
  } catch (err) {
    out = (err as { stdout?: string }).stdout ?? ''; // exits 1 when some package is unknown
  }
  const installed = new Set(out.split('\n').filter((l) => l.endsWith(' installed')).map((l) => l.split(' ')[0]));
  return wanted.filter((p) => !installed.has(p));
}

/** Installs missing host packages with apt-get (update once, then install). Needs root. */
export function ensureHostPackages(log: (l: string) => void = () => {}): void {
  const missing = missingPackages();
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) throw new ProvisionError(`missing packages ${missing.join(' ')} and not root to install them`);
  log(`installing ${missing.join(' ')} (apt-get)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    execFileSync('apt-get', ['update', '-q'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    execFileSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', '-o', 'DPkg::Lock::Timeout=300', ...missing],
      { env, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    throw new ProvisionError(`apt-get install ${missing.join(' ')} failed: ${describeExecError(err)}`);
  }
}

/**
 * The versioned image package behind the linux-image-amd64 meta package, e.g.
 * linux-image-6.1.0-56-amd64. apt-cache takes seconds on a busy machine, so the answer is
 * remembered in <cacheRoot>/current.json until the apt package lists change.
 */
export function kernelPackageName(cacheRoot: string): string {
  const memo = join(cacheRoot, 'current.json');
  let lists = '';
  try { lists = String(statSync('/var/lib/apt/lists').mtimeMs); } catch { /* no lists: always ask */ }
  try {
    const saved = JSON.parse(readFileSync(memo, 'utf8')) as { pkg?: string; lists?: string };
    if (lists && saved.lists === lists && saved.pkg) return saved.pkg;
  } catch { /* first run */ }
  const out = sh('apt-cache', ['depends', 'linux-image-amd64']);
  const m = /Depends:\s+(linux-image-\d\S*-amd64)\b/.exec(out);
  if (!m?.[1]) throw new ProvisionError(`apt-cache depends linux-image-amd64 names no linux-image package:\n${out}`);
  mkdirSync(cacheRoot, { recursive: true });
  const tmp = `${memo}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify({ pkg: m[1], lists }));
  renameSync(tmp, memo);
  return m[1];
}

function fetchKernelTree(pkg: string, version: string, dir: string, log: (l: string) => void): string {
  const root = join(dir, 'root');
  if (existsSync(join(root, 'lib/modules', version, 'modules.dep'))) return root;
  mkdirSync(dir, { recursive: true });
  const work = mkdtempSync(join(dir, 'tmp-'));
  try {
    log(`downloading ${pkg}`);
    try {
      sh('apt-get', ['download', pkg], work);
    } catch {
      // Stale package lists name a version the mirror no longer has: refresh once and retry.
      sh('apt-get', ['update', '-q']);
      sh('apt-get', ['download', pkg], work);
    }
    const deb = readdirSync(work).find((f) => f.endsWith('.deb'));
    if (!deb) throw new ProvisionError(`apt-get download ${pkg} produced no .deb`);
    log(`extracting ${deb}`);
    const tree = join(work, 'root');
    sh('dpkg-deb', ['-x', join(work, deb), tree]);
    sh('depmod', ['-b', tree, version]);
    try {
      renameSync(tree, root);
    } catch (err) {
      if (!existsSync(join(root, 'lib/modules', version, 'modules.dep'))) throw err; // else: a concurrent run won
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return root;
}

/** The .ko files (dependencies first, deduplicated) that INITRD_MODULES need, as modprobe resolves them. */
function initrdModuleFiles(root: string, version: string): string[] {
  const out = sh('modprobe', ['-d', root, '-S', version, '--show-depends', '-a', ...INITRD_MODULES]);
  const files: string[] = [];
  for (const line of out.split('\n')) {
    const m = /^insmod (\S+\.ko)/.exec(line.trim());
    if (m?.[1] && !files.includes(m[1])) files.push(m[1]);
  }
  if (files.length === 0) throw new ProvisionError(`modprobe --show-depends found none of ${INITRD_MODULES.join(' ')}`);
  return files;
}

function buildInitrd(root: string, version: string, dir: string, log: (l: string) => void): string {
  const busybox = '/bin/busybox';
  const init = readFileSync(join(here, 'guest-init.sh'));
  const modules = initrdModuleFiles(root, version);
  const bb = statSync(busybox);
  const key = createHash('sha256').update(init).update(modules.join('\n')).update(`${bb.size}:${bb.mtimeMs}`).digest('hex').slice(0, 12);
  const target = join(dir, `initrd-${key}.img`);
  if (existsSync(target)) return target;
  log(`building initramfs ${basename(target)} (${modules.length} modules)`);
  const entries: CpioEntry[] = [
    { path: 'bin', type: 'dir' },
    { path: 'bin/busybox', type: 'file', mode: 0o755, data: readFileSync(busybox) },
    { path: 'init', type: 'file', mode: 0o755, data: init },
    { path: 'modules', type: 'dir' },
    ...modules.map((f): CpioEntry => ({ path: `modules/${basename(f)}`, type: 'file', data: readFileSync(f) })),
    { path: 'modules.order', type: 'file', data: modules.map((f) => basename(f)).join('\n') + '\n' },
  ];
  const tmp = `${target}.tmp-${process.pid}`;
  writeFileSync(tmp, packInitramfs(entries));
  renameSync(tmp, target);
  return target;
}

/**
 * Decompressing Debian's xz bzImage is the slowest part of a TCG boot (~30 s on a busy machine):
 * extract the ELF vmlinux once; qemu boots it directly through the PVH entry note (CONFIG_PVH).
 * Returns undefined when that is not possible, and the caller boots the bzImage instead.
 */
function extractVmlinux(bzImage: string, config: string, dir: string, log: (l: string) => void): string | undefined {
  const target = join(dir, 'vmlinux');
  if (existsSync(target)) return target;
  if (!existsSync(config) || !/^CONFIG_PVH=y$/m.test(readFileSync(config, 'utf8'))) return undefined;
  const image = readFileSync(bzImage);
  const start = image.indexOf(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])); // xz stream magic
  if (start < 0) return undefined;
  log('extracting vmlinux from the bzImage (PVH boot)');
  const tmp = `${target}.tmp-${process.pid}`;
  // From a file, not stdin: xz stops reading after the stream, and the bzImage has more after it.
  const payload = `${tmp}.xz`;
  writeFileSync(payload, image.subarray(start));
  const fd = openSync(tmp, 'w');
  try {
    execFileSync('xz', ['-dc', '--single-stream', payload], { stdio: ['ignore', fd, 'pipe'] });
  } catch (err) {
    log(`vmlinux extraction failed, booting the bzImage: ${describeExecError(err)}`);
    rmSync(tmp, { force: true });
    return undefined;
  } finally {
    closeSync(fd);
    rmSync(payload, { force: true });
  }
  const elf = Buffer.alloc(4);
  const rfd = openSync(tmp, 'r');
  try { readSync(rfd, elf, 0, 4, 0); } finally { closeSync(rfd); }
  if (!elf.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) { rmSync(tmp, { force: true }); return undefined; }
  renameSync(tmp, target);
  return target;
}

/** Removes temporaries (`*.tmp-<pid>*`) left by provisioning runs that died midway. */
function sweepTemporaries(dir: string): void {
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) {
    const m = /\.tmp-(\d+)/.exec(name);
    if (!m) continue;
    try { process.kill(Number(m[1]), 0); continue; } catch { /* its writer is gone */ }
    rmSync(join(dir, name), { recursive: true, force: true });
  }
}

/** Makes sure packages, kernel tree and initramfs exist; returns their paths. Throws ProvisionError. */
export function provisionKernel(opts: ProvisionOptions = {}): KernelImage {
  const log = opts.log ?? (() => {});
  ensureHostPackages(log);
  const cacheRoot = opts.cacheRoot ?? join(homedir(), '.cache/lvs-operator/kernel');
  const pkg = kernelPackageName(cacheRoot);
  const version = pkg.replace(/^linux-image-/, '');
  const dir = join(cacheRoot, version);
  sweepTemporaries(dir);
  try {
    const root = fetchKernelTree(pkg, version, dir, log);
    const bzImage = join(root, 'boot', `vmlinuz-${version}`);
    if (!existsSync(bzImage)) throw new ProvisionError(`${pkg} has no boot/vmlinuz-${version}`);
    const kernel = extractVmlinux(bzImage, join(root, 'boot', `config-${version}`), dir, log) ?? bzImage;
    const initrd = buildInitrd(root, version, dir, log);
    return { version, dir, kernel, initrd, modulesRoot: root };
  } catch (err) {
    if (err instanceof ProvisionError) throw err;
    throw new ProvisionError(`provisioning ${pkg} failed: ${describeExecError(err)}`);
  }
}
