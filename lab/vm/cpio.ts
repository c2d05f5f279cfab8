// Minimal writer for the "newc" cpio format the kernel unpacks as an initramfs
// (Documentation/driver-api/early-userspace/buffer-format.rst). Only what an initramfs needs:
// directories, regular files and symlinks, all owned by root. Written here so provisioning does
// not depend on the cpio package.
import { gzipSync } from 'node:zlib';

export interface CpioEntry {
  path: string; // relative, no leading slash
  type: 'dir' | 'file' | 'symlink';
  mode?: number; // permission bits; defaults: dir 0755, file 0644, symlink 0777
  data?: Buffer | string; // file contents, or the symlink target
}

const TYPE_BITS = { dir: 0o040000, file: 0o100000, symlink: 0o120000 } as const;
const DEFAULT_MODE = { dir: 0o755, file: 0o644, symlink: 0o777 } as const;

const hex8 = (n: number) => n.toString(16).padStart(8, '0');
const pad4 = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);

function record(ino: number, name: string, mode: number, body: Buffer): Buffer[] {
  const nameBuf = Buffer.from(`${name}\0`);
  // Fields: ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
  const fields = [ino, mode, 0, 0, 1, 0, body.length, 0, 0, 0, 0, nameBuf.length, 0];
  const header = Buffer.from(`070701${fields.map(hex8).join('')}`);
  return [header, nameBuf, pad4(header.length + nameBuf.length), body, pad4(body.length)];
}

/** Packs entries (parents must come before children) into a gzip-compressed newc archive. */
export function packInitramfs(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  entries.forEach((e, i) => {
    const body = e.type === 'dir' ? Buffer.alloc(0) : Buffer.from(e.data ?? '');
    parts.push(...record(i + 1, e.path, TYPE_BITS[e.type] | (e.mode ?? DEFAULT_MODE[e.type]), body));
  });
  parts.push(...record(0, 'TRAILER!!!', 0, Buffer.alloc(0)));
  return gzipSync(Buffer.concat(parts), { level: 6 });
}
