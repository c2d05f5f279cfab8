// An in-memory IpvsKernel for unit tests. It answers the way net/netfilter/ipvs/ip_vs_ctl.c does
// over generic netlink, with the same error class the netlink client throws:
//   NEW_SERVICE on an existing service → EEXIST; SET/DEL_SERVICE or any destination command on a
//   missing service → ESRCH; unknown scheduler or persistence engine → ENOENT; IPv6 persistence
//   netmask outside 1..128 → EINVAL; NEW_DEST on an existing destination → EEXIST; SET/DEL_DEST on
//   a missing one → ENOENT; weight < 0 or lower threshold > upper threshold → ERANGE; destination
//   address not unicast (0.0.0.0/8, 255.255.255.255, multicast, ::, ff00::/8, fe80::/10) → EINVAL;
//   destination family ≠ service family without tunnel forwarding → EINVAL; gue tunnel without a
//   port → EINVAL.
// It reads back in the canonical form the netlink client (codec.ts) produces: canonical address
// text, IP_VS_SVC_F_HASHED masked out of the flags (the kernel sets it on every live service),
// tunnel attributes only on tunnel destinations, counters on every destination; and it keeps a
// destination's counters across SET_DEST and SET_SERVICE, as the kernel does.
// Sync daemons: see fake-daemons.ts.
// Not modelled: routing (the real kernel also refuses unroutable destinations), the destination
// trash (a destination deleted while connections still reference it is revived with them when
// re-added).
// Tests drive it with setConnections() and fail(), and check identity with objectId().
import { IpvsError, errnoOf } from '../errors.ts';
import {
  performWrite, type IpvsDestination, type IpvsInfo, type IpvsKernel, type IpvsService, type IpvsServiceKey,
  type IpvsServiceState, type IpvsTimeouts, type IpvsWrite, type IpvsWriteResult, type SyncDaemon,
} from '../types.ts';
import { FakeSyncDaemons } from './fake-daemons.ts';
import { SVC_F } from '../../sync/flags.ts';
import { addressFamily, byString, canonicalAddress, compareDestinations, destKey, ipvsServiceKey } from '../../sync/keys.ts';

export type FakeOp = Exclude<keyof IpvsKernel, 'close'>;
type ErrnoCode = Parameters<typeof errnoOf>[0];

export const KERNEL_SCHEDULERS = ['rr', 'wrr', 'lc', 'wlc', 'lblc', 'lblcr', 'dh', 'sh', 'sed', 'nq', 'mh', 'fo', 'ovf'];

interface Injected {
  op: FakeOp;
  code: ErrnoCode;
  key?: string;
  dest?: string;
  times: number;
}

interface StoredDest {
  id: number;
  dest: IpvsDestination;
  active: number;
  inactive: number;
  persist: number;
}

interface StoredService {
  id: number;
  service: IpvsService;
  dests: Map<string, StoredDest>;
}

export interface FakeIpvsOptions {
  schedulers?: Iterable<string>;
  persistenceEngines?: Iterable<string>;
  /** The namespace's interfaces for sync daemons, name → MTU; default fake-daemons.ts DEFAULT_LINKS. */
  links?: Readonly<Record<string, number>>;
}

export class FakeIpvsKernel implements IpvsKernel {
  /** Successful mutating calls (add/update/delete of services and destinations), for "no-op" checks. */
  mutations = 0;
  /**
   * Read-back calls: full dumps, single services read (readService) and services-only dumps
   * (services), for "reads only what changed" checks.
   */
  reads = { dump: 0, readService: 0, services: 0 };
  closed = false;
  readonly #schedulers: Set<string>;
  readonly #pes: Set<string>;
  readonly #services = new Map<string, StoredService>();
  #failures: Injected[] = [];
  #nextId = 1;
  #timeouts: IpvsTimeouts = { tcp: 900, tcpFin: 120, udp: 300 };
  readonly #daemons: FakeSyncDaemons;

  constructor(opts: FakeIpvsOptions = {}) {
    this.#schedulers = new Set(opts.schedulers ?? KERNEL_SCHEDULERS);
    this.#pes = new Set(opts.persistenceEngines ?? ['sip']);
    this.#daemons = new FakeSyncDaemons(opts.links);
  }

  // ---- test hooks ----

  /**
   * Make matching calls fail with `code` (e.g. 'EINVAL'). key: service key ("TCP/10.0.0.1:80");
   * dest: "addr:port". times: how many calls fail (default: every call until clearFailures()).
   */
  fail(op: FakeOp, code: ErrnoCode, match: { key?: string; dest?: string; times?: number } = {}): void {
    this.#failures.push({ op, code, times: match.times ?? Infinity, ...pick(match) });
  }

  clearFailures(): void {
    this.#failures = [];
  }

  /** Set a destination's connection counters, as traffic would. Throws when it does not exist. */
  setConnections(key: string, dest: string, c: { active?: number; inactive?: number; persist?: number }): void {
    const d = this.#services.get(key)?.dests.get(dest);
    if (!d) throw new Error(`fake ipvs: no destination ${dest} in service ${key}`);
    d.active = c.active ?? d.active;
    d.inactive = c.inactive ?? d.inactive;
    d.persist = c.persist ?? d.persist;
  }

  /** A number that changes whenever the service (or destination) is deleted and created again. */
  objectId(key: string, dest?: string): number | undefined {
    const s = this.#services.get(key);
    return dest === undefined ? s?.id : s?.dests.get(dest)?.id;
  }

  /** What dump() would return, synchronously and without failure injection. */
  snapshot(): IpvsServiceState[] {
    return [...this.#services.entries()]
      .sort(([a], [b]) => byString(a, b))
      .map(([, s]) => ({
        service: { ...s.service, flags: (s.service.flags & ~SVC_F.HASHED) >>> 0 },
        destinations: [...s.dests.values()].map(readBack).sort(compareDestinations),
      }));
  }

  // ---- IpvsKernel ----

  async dump(): Promise<IpvsServiceState[]> {
    this.#check('dump');
    this.reads.dump++;
    return this.snapshot();
  }

  async services(opts: { stats?: boolean } = {}): Promise<IpvsService[]> {
    this.#check('services');
    this.reads.services++;
    return this.snapshot().map((s) => {
      if (opts.stats !== false) return s.service;
      const { stats: _, ...rest } = s.service;
      return rest;
    });
  }

  /** GET_SERVICE answers ESRCH for a missing service; the client turns that into undefined. */
  async readService(k: IpvsServiceKey): Promise<IpvsServiceState | undefined> {
    const key = this.#check('readService', k);
    this.reads.readService++;
    const s = this.#services.get(key);
    if (!s) return undefined;
    return {
      service: { ...s.service, flags: (s.service.flags & ~SVC_F.HASHED) >>> 0 },
      destinations: [...s.dests.values()].map(readBack).sort(compareDestinations),
    };
  }

  async addService(svc: IpvsService): Promise<void> {
    const key = this.#check('addService', svc);
    if (this.#services.has(key)) throw new IpvsError('addService', errnoOf('EEXIST'), key);
    this.#validateService('addService', svc);
    this.#services.set(key, { id: this.#nextId++, service: storedService(svc), dests: new Map() });
    this.mutations++;
  }

  async updateService(svc: IpvsService): Promise<void> {
    const s = this.#service('updateService', svc);
    this.#validateService('updateService', svc);
    // ip_vs_edit_service: scheduler, pe, flags (| HASHED), timeout and netmask; destinations stay.
    s.service = storedService(svc);
    this.mutations++;
  }

  async deleteService(k: IpvsServiceKey): Promise<void> {
    this.#service('deleteService', k);
    this.#services.delete(ipvsServiceKey(k));
    this.mutations++;
  }

  async addDestination(k: IpvsServiceKey, dest: IpvsDestination): Promise<void> {
    const s = this.#service('addDestination', k, dest);
    this.#validateDest('addDestination', s.service, dest);
    const dk = destKey(dest);
    if (s.dests.has(dk)) throw new IpvsError('addDestination', errnoOf('EEXIST'), dk);
    if (!isUnicast(dest.address)) throw new IpvsError('addDestination', errnoOf('EINVAL'), `${dest.address} is not unicast`);
    s.dests.set(dk, { id: this.#nextId++, dest: storedDest(dest), active: 0, inactive: 0, persist: 0 });
    this.mutations++;
  }

  async updateDestination(k: IpvsServiceKey, dest: IpvsDestination): Promise<void> {
    const s = this.#service('updateDestination', k, dest);
    this.#validateDest('updateDestination', s.service, dest);
    const d = s.dests.get(destKey(dest));
    if (!d) throw new IpvsError('updateDestination', errnoOf('ENOENT'), destKey(dest));
    d.dest = storedDest(dest);
    this.mutations++;
  }

  async deleteDestination(k: IpvsServiceKey, dest: Pick<IpvsDestination, 'address' | 'port' | 'family'>): Promise<void> {
    const s = this.#service('deleteDestination', k, dest);
    if (!s.dests.delete(destKey(dest))) throw new IpvsError('deleteDestination', errnoOf('ENOENT'), destKey(dest));
    this.mutations++;
  }

  async info(): Promise<IpvsInfo> {
    this.#check('info');
    return { version: '1.2.1', connTableSize: 4096 };
  }

  async getTimeouts(): Promise<IpvsTimeouts> {
    this.#check('getTimeouts');
    return { ...this.#timeouts };
  }

  async setTimeouts(t: IpvsTimeouts): Promise<void> {
    this.#check('setTimeouts');
    // IPVS_CMD_SET_CONFIG: a zero timeout leaves that timeout unchanged.
    this.#timeouts = {
      tcp: t.tcp || this.#timeouts.tcp,
      tcpFin: t.tcpFin || this.#timeouts.tcpFin,
      udp: t.udp || this.#timeouts.udp,
    };
  }

  async listDaemons(): Promise<SyncDaemon[]> {
    this.#check('listDaemons');
    return this.#daemons.list();
  }

  async startDaemon(d: SyncDaemon): Promise<void> {
    this.#check('startDaemon');
    const mixed = [...this.#services.values()].reduce((n, s) =>
      n + [...s.dests.values()].filter((x) => x.dest.family !== s.service.family).length, 0);
    this.#daemons.start(d, mixed);
  }

  async stopDaemon(state: SyncDaemon['state']): Promise<void> {
    this.#check('stopDaemon');
    this.#daemons.stop(state);
  }

  /** Sizes of the applyBatch calls so far. */
  readonly batches: number[] = [];

  /**
   * As the netlink client: every write in order, each failing as its one-op call would (injected
   * failures included), and the writes after a failed addService of their service skipped.
   */
  async applyBatch(writes: readonly IpvsWrite[]): Promise<IpvsWriteResult[]> {
    this.batches.push(writes.length);
    const failed = new Set<string>();
    const out: IpvsWriteResult[] = [];
    for (const w of writes) {
      let key: string;
      try { key = ipvsServiceKey(w.service); } catch { key = `invalid ${JSON.stringify(w.service)}`; }
      if (failed.has(key)) { out.push({ status: 'skipped' }); continue; }
      try {
        await performWrite(this, w);
        out.push({ status: 'ok' });
      } catch (err) {
        out.push({ status: 'failed', error: err as Error });
        if (w.kind === 'addService') failed.add(key);
      }
    }
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  // ---- internals ----

  /** Closed socket and injected failures; returns the service key when one is given. */
  #check(op: FakeOp, svc?: IpvsServiceKey, dest?: Pick<IpvsDestination, 'address' | 'port'>): string {
    if (this.closed) throw new IpvsError(op, errnoOf('EBADF'), 'kernel client closed');
    if (svc && !svc.fwmark && addressFamily(svc.address) !== svc.family) {
      throw new IpvsError(op, errnoOf('EINVAL'), `service address ${svc.address} is not IPv${svc.family}`);
    }
    const key = svc ? ipvsServiceKey(svc) : '';
    const dk = dest ? safeDestKey(dest) : undefined;
    const hit = this.#failures.find((f) => f.op === op && f.times > 0
      && (f.key === undefined || f.key === key) && (f.dest === undefined || f.dest === dk));
    if (hit) {
      hit.times--;
      throw new IpvsError(op, errnoOf(hit.code), `injected${key ? ` on ${key}` : ''}${dk ? ` ${dk}` : ''}`);
    }
    return key;
  }

  #service(op: FakeOp, k: IpvsServiceKey, dest?: Pick<IpvsDestination, 'address' | 'port'>): StoredService {
    const key = this.#check(op, k, dest);
    const s = this.#services.get(key);
    if (!s) throw new IpvsError(op, errnoOf('ESRCH'), key);
    return s;
  }

  #validateService(op: FakeOp, svc: IpvsService): void {
    if (!this.#schedulers.has(svc.scheduler)) {
      throw new IpvsError(op, errnoOf('ENOENT'), `scheduler module ip_vs_${svc.scheduler} not found`);
    }
    if (svc.pe && !this.#pes.has(svc.pe)) {
      throw new IpvsError(op, errnoOf('ENOENT'), `persistence engine module ip_vs_pe_${svc.pe} not found`);
    }
    if (svc.family === 6) {
      const n = Number(svc.netmask);
      if (!Number.isInteger(n) || n < 1 || n > 128) throw new IpvsError(op, errnoOf('EINVAL'), `IPv6 netmask ${svc.netmask}`);
    }
  }

  #validateDest(op: FakeOp, svc: IpvsService, dest: IpvsDestination): void {
    if (addressFamily(dest.address) !== dest.family) {
      throw new IpvsError(op, errnoOf('EINVAL'), `destination address ${dest.address} is not IPv${dest.family}`);
    }
    // Mixed-family services are only possible by tunnelling (ip_vs_genl_set_cmd).
    if (dest.family !== svc.family && dest.forward !== 'tunnel') {
      throw new IpvsError(op, errnoOf('EINVAL'), 'destination family differs from the service and forwarding is not tunnel');
    }
    if (dest.weight < 0) throw new IpvsError(op, errnoOf('ERANGE'), 'weight less than zero');
    if (dest.lowerThreshold > dest.upperThreshold) {
      throw new IpvsError(op, errnoOf('ERANGE'), 'lower threshold is higher than upper threshold');
    }
    if (dest.forward === 'tunnel' && dest.tunnelType === 'gue' && !dest.tunnelPort) {
      throw new IpvsError(op, errnoOf('EINVAL'), 'gue tunnel port is zero');
    }
  }
}

function pick(m: { key?: string; dest?: string }): { key?: string; dest?: string } {
  return { ...(m.key === undefined ? {} : { key: m.key }), ...(m.dest === undefined ? {} : { dest: m.dest }) };
}

function safeDestKey(d: Pick<IpvsDestination, 'address' | 'port'>): string | undefined {
  return addressFamily(d.address) === undefined ? undefined : destKey(d);
}

function storedService(svc: IpvsService): IpvsService {
  const out: IpvsService = {
    family: svc.family,
    protocol: svc.protocol,
    address: svc.fwmark ? (svc.family === 4 ? '0.0.0.0' : '::') : canonicalAddress(svc.address),
    port: svc.fwmark ? 0 : svc.port,
    scheduler: svc.scheduler,
    flags: (svc.flags | SVC_F.HASHED) >>> 0,
    timeout: svc.timeout,
    // The kernel keeps the IPv4 mask as a __be32 and the IPv6 one as a prefix length.
    netmask: svc.family === 4 ? canonicalAddress(svc.netmask || '255.255.255.255') : String(Number(svc.netmask)),
  };
  if (svc.fwmark) out.fwmark = svc.fwmark;
  if (svc.pe) out.pe = svc.pe;
  return out;
}

function storedDest(d: IpvsDestination): IpvsDestination {
  return {
    family: d.family,
    address: canonicalAddress(d.address),
    port: d.port,
    forward: d.forward,
    weight: d.weight,
    upperThreshold: d.upperThreshold,
    lowerThreshold: d.lowerThreshold,
    // The kernel reports these for every destination; the client decodes them for TUN only.
    ...(d.forward === 'tunnel'
      ? { tunnelType: d.tunnelType ?? 'ipip', tunnelPort: d.tunnelPort ?? 0, tunnelFlags: d.tunnelFlags ?? 0 }
      : {}),
  };
}

function readBack(d: StoredDest): IpvsDestination {
  return {
    ...d.dest,
    stats: {
      activeConns: d.active,
      inactiveConns: d.inactive,
      persistConns: d.persist,
      conns: d.active + d.inactive,
      inPkts: 0,
      outPkts: 0,
      inBytes: 0,
      outBytes: 0,
    },
  };
}

/** What inet_addr_type()/ipv6_addr_type() would call unicast (routing aside). */
function isUnicast(address: string): boolean {
  const a = canonicalAddress(address);
  if (addressFamily(a) === 4) {
    const first = Number(a.split('.')[0]);
    return first !== 0 && !(first >= 224 && first <= 239) && a !== '255.255.255.255';
  }
  const firstGroup = parseInt(a.split(':')[0] || '0', 16);
  if (a === '::') return false;
  if ((firstGroup & 0xff00) === 0xff00) return false; // multicast ff00::/8
  if ((firstGroup & 0xffc0) === 0xfe80) return false; // link-local fe80::/10
  return true;
}
