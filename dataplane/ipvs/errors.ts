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

/** The IpvsKernel operations, plus the client's own ('open', 'dumpDestinations'). */
export type IpvsOp =
  | 'open' | 'dump' | 'dumpServices' | 'dumpDestinations' | 'getService' | 'readService'
  | 'addService' | 'updateService' | 'deleteService'
  | 'addDestination' | 'updateDestination' | 'deleteDestination'
  | 'info' | 'getTimeouts' | 'setTimeouts' | 'listDaemons' | 'startDaemon' | 'stopDaemon' | 'close';

/** What a failed request was about, for the message: `<verb> <object>: <CODE> — <hint>`. */
export interface IpvsErrorContext {
  /** e.g. "TCP 203.0.113.10:80", or "10.0.0.3:8080 to TCP 203.0.113.10:80". */
  object?: string;
  /** Likely cause; derived from (op, errno) when absent. */
  hint?: string;
  /** For ENOENT on addService/updateService: which module the kernel could not find. */
  scheduler?: string;
  pe?: string;
}

const VERB: Record<IpvsOp, string> = {
  open: 'open IPVS netlink', dump: 'dump IPVS', dumpServices: 'dump services', dumpDestinations: 'dump destinations of', getService: 'read service', readService: 'read service',
  addService: 'add service', updateService: 'update service', deleteService: 'delete service',
  addDestination: 'add destination', updateDestination: 'update destination', deleteDestination: 'delete destination',
  info: 'read IPVS info', getTimeouts: 'read IPVS timeouts', setTimeouts: 'set IPVS timeouts',
  listDaemons: 'list IPVS sync daemons', startDaemon: 'start IPVS sync daemon', stopDaemon: 'stop IPVS sync daemon', close: 'close IPVS netlink',
};

const isDestOp = (op: string) => op === 'addDestination' || op === 'updateDestination' || op === 'deleteDestination';
const isServiceWrite = (op: string) => op === 'addService' || op === 'updateService';

/** The likely cause of a kernel errno for one operation, in the words of ip_vs_ctl.c's checks. */
export function ipvsHint(op: string, errno: number, ctx: IpvsErrorContext = {}): string {
  switch (errnoCode(errno)) {
    // start_sync_thread (ip_vs_sync.c): one master and one backup per network namespace.
    case 'EEXIST': return op === 'startDaemon' ? 'a sync daemon of this state already runs in this network namespace' : 'already exists';
    // stop_sync_thread: ESRCH when no daemon of that state runs.
    case 'ESRCH': return op === 'stopDaemon' ? 'no sync daemon of this state is running' : 'no such service';
    // start_sync_thread looks the interface up by name in the caller's namespace.
    case 'ENODEV': return op === 'startDaemon' ? 'no such multicast interface in this network namespace' : 'no such device';
    case 'ENOENT':
      if (op === 'open') return 'kernel has no IPVS (modprobe ip_vs)';
      if (isDestOp(op)) return 'no such destination in this service';
      if (isServiceWrite(op)) {
        const mods = [ctx.scheduler && `scheduler module ip_vs_${ctx.scheduler}`, ctx.pe && `persistence engine module ip_vs_pe_${ctx.pe}`];
        return `${mods.filter(Boolean).join(' or ') || 'scheduler or persistence engine module'} not available`;
      }
      return 'not found';
    case 'EINVAL':
      if (op === 'addDestination' || op === 'updateDestination') {
        // ip_vs_ctl.c checks the address type in the director's namespace (inet_addr_type /
        // ipv6_addr_type), not reachability: a unicast address without a route is accepted.
        return 'real server address is not unicast in this namespace (broadcast, multicast, 0.0.0.0, IPv6 link-local), or an IPv4/IPv6 mix without TUN';
      }
      if (isServiceWrite(op)) return 'invalid service attributes (e.g. IPv6 persistence netmask outside 1..128)';
      if (op === 'startDaemon') {
        // ip_vs_genl_new_daemon: a group that is not multicast, or mixed-family destinations
        // (the sync protocol cannot carry them); start_sync_thread: a state other than 1 or 2.
        return 'invalid daemon attributes (group not multicast, interface name too long), or this namespace has destinations of another family than their service';
      }
      return 'invalid request';
    case 'EPERM': return 'needs CAP_NET_ADMIN';
    case 'ERANGE': return 'weight negative or lower threshold above upper threshold';
    case 'EAFNOSUPPORT': return 'address family not supported by this kernel\'s IPVS';
    case 'EPROTONOSUPPORT': return 'IPVS supports only TCP, UDP and SCTP';
    case 'EBUSY': return 'a dump is already running on this netlink socket';
    case 'ENOBUFS': return 'netlink receive buffer overrun: replies were lost, read the kernel state again';
    case 'ETIMEDOUT': return 'no reply from the kernel';
    case 'ECONNRESET': return 'netlink socket closed with the request outstanding';
    default: return 'kernel rejected the request';
  }
}

export class IpvsError extends Error {
  /** The operation that failed, e.g. 'addService', 'deleteDestination'. */
  readonly op: string;
  /** Positive errno value. */
  readonly errno: number;
  /** Symbolic errno name, e.g. 'EEXIST'. */
  readonly code: string;
  /** What the operation was about ("TCP 203.0.113.10:80"), when known. */
  readonly object?: string;
  /** The likely cause given in the message, when known. */
  readonly hint?: string;

  /**
   * `detail` as a string keeps the short form `<op>: <CODE> (<detail>)`; as a context it gives
   * the full form, e.g. `add service TCP 203.0.113.10:80: ENOENT — scheduler module ip_vs_foo not available`.
   */
  constructor(op: string, errno: number, detail?: string | IpvsErrorContext) {
    const code = errnoCode(errno);
    let message: string;
    let object: string | undefined;
    let hint: string | undefined;
    if (typeof detail === 'object') {
      object = detail.object;
      hint = detail.hint ?? ipvsHint(op, errno, detail);
      const verb = VERB[op as IpvsOp] ?? op;
      message = `${object ? `${verb} ${object}` : verb}: ${code} — ${hint}`;
    } else {
      message = `${op}: ${code}${detail ? ` (${detail})` : ''}`;
    }
    super(message);
    this.name = 'IpvsError';
    this.op = op;
    this.errno = errno;
    this.code = code;
    if (object !== undefined) this.object = object;
    if (hint !== undefined) this.hint = hint;
  }
}

export function isIpvsError(err: unknown, code?: string): err is IpvsError {
  return err instanceof IpvsError && (code === undefined || err.code === code);
}
