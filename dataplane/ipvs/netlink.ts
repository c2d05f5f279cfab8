// IpvsKernel over generic netlink: the family is resolved through npm `netlink`'s genl controller
// client, requests and replies go through our GenlChannel sockets and our own attribute codec.
// Every failure is an IpvsError naming the operation, the object and the likely cause.
import { constants } from 'node:os';
import { createGenericNetlink, genl } from 'netlink';
import pino, { type Logger } from 'pino';
import {
  CMD, compareDestinations, decodeDestination, decodeInfo, decodeService, decodeTimeouts,
  describeDestination, describeService, encodeDestination, encodeDestinationKey, encodeService, encodeServiceKey,
  encodeTimeouts, IPVS_GENL_NAME, IPVS_GENL_VERSION, sortedByServiceKey,
} from './codec.ts';
import { applyBatch as runBatch } from './batch.ts';
import { compareDaemons, decodeDaemon, describeDaemon, encodeDaemon, encodeDaemonState } from './daemon-codec.ts';
import { errnoOf, IpvsError, type IpvsErrorContext, type IpvsOp } from './errors.ts';
import { Attrs, NetlinkCodecError, type GenlMessage } from './nla.ts';
import { GenlChannel, NetlinkErrno, type Tap } from './transport.ts';
import {
  performWrite, type IpvsDestination, type IpvsInfo, type IpvsKernel, type IpvsService, type IpvsServiceKey,
  type IpvsServiceState, type IpvsTimeouts, type IpvsWrite, type IpvsWriteResult, type SyncDaemon,
} from './types.ts';

export { IpvsError } from './errors.ts';

export interface IpvsNetlinkOptions {
  logger?: Logger;
  /** Per-request reply deadline; default 10 s (TCG guests are slow). */
  timeoutMs?: number;
  /**
   * Sockets used by dump(): one destination dump runs on each at a time (a netlink socket allows
   * one dump at a time), so this is how many are in flight together. Default 4.
   */
  dumpConcurrency?: number;
  /** Do-requests (add/update/delete) in flight at once on the command socket; default 64. */
  window?: number;
  /** applyBatch: messages per sendmsg buffer (default 128) and bytes per buffer (default 64 KiB). */
  batchMessages?: number;
  batchBytes?: number;
  /** Sees every datagram sent and received, e.g. to capture kernel replies as test fixtures. */
  tap?: Tap;
  /** Resolves the generic netlink family id; default: ask the genl controller through npm `netlink`. */
  resolveFamily?: (name: string) => Promise<number>;
}

type DestKey = Pick<IpvsDestination, 'address' | 'port' | 'family'>;

/** Asks the genl controller (CTRL_CMD_GETFAMILY) for a family's id, with npm netlink's own client. */
export async function resolveGenlFamily(name: string, timeoutMs = 10_000): Promise<number> {
  const sock = createGenericNetlink();
  try {
    const replies = await sock.ctrlRequest(genl.Commands.GET_FAMILY, { familyName: name }, { timeout: timeoutMs });
    const id = replies[0]?.familyId;
    if (id === undefined) throw new IpvsError('open', errnoOf('ENOENT'), {});
    return id;
  } catch (err) {
    if (err instanceof IpvsError) throw err;
    // npm netlink reports kernel errors as Error("Request rejected: ENOENT").
    const code = /Request rejected: (E[A-Z0-9]+)/.exec(String((err as Error)?.message))?.[1];
    const errno = (code && (constants.errno as Record<string, number>)[code]) || errnoOf('EIO');
    throw new IpvsError('open', errno, code ? {} : { hint: `genl family ${name}: ${String(err)}` });
  } finally {
    sock.socket.close();
  }
}

export class IpvsNetlink implements IpvsKernel {
  private readonly family: number;
  private readonly channels: GenlChannel[];
  private readonly log: Logger;
  private readonly batchLimits: { messages: number; bytes: number };

  private constructor(family: number, channels: GenlChannel[], log: Logger, batchLimits: { messages: number; bytes: number }) {
    this.family = family;
    this.channels = channels;
    this.log = log;
    this.batchLimits = batchLimits;
  }

  /** Resolves the IPVS family (IpvsError 'open'/ENOENT "kernel has no IPVS (modprobe ip_vs)" without it). */
  static async open(opts: IpvsNetlinkOptions = {}): Promise<IpvsNetlink> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const family = await (opts.resolveFamily ?? ((n: string) => resolveGenlFamily(n, timeoutMs)))(IPVS_GENL_NAME);
    const n = Math.max(1, opts.dumpConcurrency ?? 4);
    const channels = Array.from({ length: n }, (_, index) =>
      new GenlChannel({ timeoutMs, window: Math.max(1, opts.window ?? 64), index, ...(opts.tap ? { tap: opts.tap } : {}) }));
    const log = (opts.logger ?? pino({ level: 'silent' })).child({ component: 'ipvs-netlink' });
    const limits = { messages: Math.max(1, opts.batchMessages ?? 128), bytes: Math.max(1024, opts.batchBytes ?? 64 * 1024) };
    return new IpvsNetlink(family, channels, log, limits);
  }

  private get command(): GenlChannel {
    return this.channels[0]!;
  }

  /** Runs one request, turning transport and codec failures into IpvsError with context. */
  private async call<T>(op: IpvsOp, ctx: IpvsErrorContext, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      const e = toIpvsError(op, ctx, err);
      this.log.debug({ op, object: ctx.object, code: e.code }, e.message);
      throw e;
    }
  }

  private doRequest(cmd: number, attrs: Buffer): Promise<GenlMessage[]> {
    return this.command.request(this.family, cmd, IPVS_GENL_VERSION, attrs);
  }

  async addService(svc: IpvsService): Promise<void> {
    await this.writeService('addService', CMD.NEW_SERVICE, svc);
  }

  async updateService(svc: IpvsService): Promise<void> {
    await this.writeService('updateService', CMD.SET_SERVICE, svc);
  }

  private async writeService(op: IpvsOp, cmd: number, svc: IpvsService): Promise<void> {
    const ctx = { object: describeService(svc), scheduler: svc.scheduler, ...(svc.pe ? { pe: svc.pe } : {}) };
    await this.call(op, ctx, () => this.doRequest(cmd, encodeService(svc)));
  }

  async deleteService(key: IpvsServiceKey): Promise<void> {
    await this.call('deleteService', { object: describeService(key) }, () => this.doRequest(CMD.DEL_SERVICE, encodeServiceKey(key)));
  }

  async addDestination(svc: IpvsServiceKey, dest: IpvsDestination): Promise<void> {
    const object = `${describeDestination(dest)} to ${describeService(svc)}`;
    await this.call('addDestination', { object }, () => this.doRequest(CMD.NEW_DEST, encodeDestination(svc, dest)));
  }

  async updateDestination(svc: IpvsServiceKey, dest: IpvsDestination): Promise<void> {
    const object = `${describeDestination(dest)} in ${describeService(svc)}`;
    await this.call('updateDestination', { object }, () => this.doRequest(CMD.SET_DEST, encodeDestination(svc, dest)));
  }

  async deleteDestination(svc: IpvsServiceKey, dest: DestKey): Promise<void> {
    const object = `${describeDestination(dest)} from ${describeService(svc)}`;
    await this.call('deleteDestination', { object }, () => this.doRequest(CMD.DEL_DEST, encodeDestinationKey(svc, dest)));
  }

  /** The writes in few sendmsg buffers on the command socket; see batch.ts. */
  async applyBatch(writes: readonly IpvsWrite[]): Promise<IpvsWriteResult[]> {
    return runBatch({
      genlFamily: this.family, channel: this.command, maxMessages: this.batchLimits.messages, maxBytes: this.batchLimits.bytes,
      single: (w) => performWrite(this, w),
      error: (w, err) => {
        const e = toIpvsError(w.kind, writeContext(w), err);
        this.log.debug({ op: w.kind, object: e.object, code: e.code }, e.message);
        return e;
      },
    }, writes);
  }

  /** Every service (GET_SERVICE dump), in service-key order; `stats: false` leaves out the counters. */
  async services(opts: { stats?: boolean } = {}): Promise<IpvsService[]> {
    const replies = await this.call('dumpServices', {}, () =>
      this.command.dump(this.family, CMD.GET_SERVICE, IPVS_GENL_VERSION, Buffer.alloc(0)));
    return this.call('dumpServices', {}, async () =>
      sortedByServiceKey(replies.map((r) => decodeService(new Attrs(r.attrs, 'reply'), opts))));
  }

  /**
   * One service's destinations (GET_DEST dump), in address/port order. `channel` picks the socket.
   * A service that vanished meanwhile yields no destinations (the kernel answers an empty dump).
   */
  async destinations(svc: IpvsServiceKey, channel = 0): Promise<IpvsDestination[]> {
    const ch = this.channels[channel % this.channels.length]!;
    const ctx = { object: describeService(svc) };
    const replies = await this.call('dumpDestinations', ctx, () =>
      ch.dump(this.family, CMD.GET_DEST, IPVS_GENL_VERSION, encodeServiceKey(svc)));
    return this.call('dumpDestinations', ctx, async () =>
      replies.map((r) => decodeDestination(new Attrs(r.attrs, 'reply'), svc.family)).sort(compareDestinations));
  }

  /**
   * One service (GET_SERVICE for its key, answered ESRCH when missing) and its destination dump,
   * both in flight together; the dump runs on the socket `channel` picks.
   */
  async readService(key: IpvsServiceKey, channel = 0): Promise<IpvsServiceState | undefined> {
    const ctx = { object: describeService(key) };
    const get = this.call('getService', ctx, () => this.doRequest(CMD.GET_SERVICE, encodeServiceKey(key)))
      .then((replies) => this.call('getService', ctx, async () => decodeService(new Attrs(onlyReply(replies).attrs, 'reply'))))
      .catch((err: unknown) => { if (err instanceof IpvsError && err.code === 'ESRCH') return undefined; throw err; });
    const [service, destinations] = await Promise.all([get, this.destinations(key, channel)]);
    return service && { service, destinations };
  }

  /** One service dump, then every service's destination dump, dumpConcurrency at a time. */
  async dump(): Promise<IpvsServiceState[]> {
    const services = await this.services();
    return Promise.all(services.map(async (service, i) => ({ service, destinations: await this.destinations(service, i) })));
  }

  async info(): Promise<IpvsInfo> {
    const replies = await this.call('info', {}, () => this.doRequest(CMD.GET_INFO, Buffer.alloc(0)));
    return this.call('info', {}, async () => decodeInfo(new Attrs(onlyReply(replies).attrs, 'info')));
  }

  async getTimeouts(): Promise<IpvsTimeouts> {
    const replies = await this.call('getTimeouts', {}, () => this.doRequest(CMD.GET_CONFIG, Buffer.alloc(0)));
    return this.call('getTimeouts', {}, async () => decodeTimeouts(new Attrs(onlyReply(replies).attrs, 'config')));
  }

  /** A zero timeout leaves that timeout unchanged (kernel semantics, as `ipvsadm --set 0 0 0`). */
  async setTimeouts(t: IpvsTimeouts): Promise<void> {
    await this.call('setTimeouts', {}, () => this.doRequest(CMD.SET_CONFIG, encodeTimeouts(t)));
  }

  /** GET_DAEMON dump: one message per running daemon, master first (none: an empty dump). */
  async listDaemons(): Promise<SyncDaemon[]> {
    const replies = await this.call('listDaemons', {}, () =>
      this.command.dump(this.family, CMD.GET_DAEMON, IPVS_GENL_VERSION, Buffer.alloc(0)));
    return this.call('listDaemons', {}, async () =>
      replies.map((r) => decodeDaemon(new Attrs(r.attrs, 'reply'))).sort(compareDaemons));
  }

  /** NEW_DAEMON: EEXIST when that state already runs, ENODEV for an interface unknown in this namespace. */
  async startDaemon(d: SyncDaemon): Promise<void> {
    await this.call('startDaemon', { object: describeDaemon(d) }, () => this.doRequest(CMD.NEW_DAEMON, encodeDaemon(d)));
  }

  /** DEL_DAEMON: ESRCH when no daemon of that state runs. */
  async stopDaemon(state: SyncDaemon['state']): Promise<void> {
    await this.call('stopDaemon', { object: state }, () => this.doRequest(CMD.DEL_DAEMON, encodeDaemonState(state)));
  }

  async close(): Promise<void> {
    for (const ch of this.channels) ch.close();
  }
}

function onlyReply(replies: GenlMessage[]): GenlMessage {
  const r = replies[0];
  if (!r) throw new NetlinkCodecError('reply', 'the kernel acknowledged without the expected reply message');
  return r;
}

/** The error context the one-op method of this write gives. */
function writeContext(w: IpvsWrite): IpvsErrorContext {
  switch (w.kind) {
    case 'addService':
    case 'updateService':
      return { object: describeService(w.service), scheduler: w.service.scheduler, ...(w.service.pe ? { pe: w.service.pe } : {}) };
    case 'deleteService': return { object: describeService(w.service) };
    case 'addDestination': return { object: `${describeDestination(w.destination)} to ${describeService(w.service)}` };
    case 'updateDestination': return { object: `${describeDestination(w.destination)} in ${describeService(w.service)}` };
    case 'deleteDestination': return { object: `${describeDestination(w.destination)} from ${describeService(w.service)}` };
  }
}

function toIpvsError(op: IpvsOp, ctx: IpvsErrorContext, err: unknown): IpvsError {
  if (err instanceof IpvsError) return err;
  if (err instanceof NetlinkErrno) {
    return new IpvsError(op, err.errno, err.extack ? { ...ctx, hint: err.extack } : ctx);
  }
  if (err instanceof NetlinkCodecError) {
    // Input we refused to encode, or kernel bytes we could not decode: name the field.
    return new IpvsError(op, errnoOf('EINVAL'), { ...ctx, hint: err.message });
  }
  return new IpvsError(op, errnoOf('EIO'), { ...ctx, hint: String((err as Error)?.message ?? err) });
}
