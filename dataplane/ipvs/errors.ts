// The one error class every IpvsKernel implementation throws (the netlink client and the unit-test
// fake alike), so callers branch on `code` ('EEXIST', 'ESRCH', 'ENOENT', 'EINVAL', ...) and never on
// message text. `errno` is the positive errno value the kernel returned in its netlink error.
import { constants } from 'node:os';

const codeByErrno = new Map<number, string>(
  Object.entries(constants.errno).map(([code, errno]) => [errno, code]),
);

/** The symbolic name of a positive errno value ('EEXIST' for 17), or 'E<n>' when unknown. */
export function errnoCode(errno: number): string {
  return codeByErrno.get(errno) ?? `E${errno}`;
}

/** The positive errno value for a symbolic name ('EEXIST' → 17). */
export function errnoOf(code: keyof typeof constants.errno): number {
  return constants.errno[code];
}

export class IpvsError extends Error {
  /** The operation that failed, e.g. 'addService', 'deleteDestination'. */
  readonly op: string;
  /** Positive errno value. */
  readonly errno: number;
  /** Symbolic errno name, e.g. 'EEXIST'. */
  readonly code: string;

  constructor(op: string, errno: number, detail?: string) {
    const code = errnoCode(errno);
    super(`${op}: ${code}${detail ? ` (${detail})` : ''}`);
    this.name = 'IpvsError';
    this.op = op;
    this.errno = errno;
    this.code = code;
  }
}

export function isIpvsError(err: unknown, code?: string): err is IpvsError {
  return err instanceof IpvsError && (code === undefined || err.code === code);
}
