// Leader election on a coordination.k8s.io/v1 Lease, as client-go does it:
//  - a candidate takes the lease when it is free (no holder) or expired; expiry is judged by the
//    candidate's own clock from when it last saw the lease record change, never by comparing the
//    holder's renewTime with our clock, so clock skew between nodes cannot cause two leaders;
//  - the leader renews every retryPeriod and gives up leadership when it has not renewed for
//    renewDeadline (< leaseDuration), so it stops writing before anyone else may take over; a
//    renewal is one conditional write on the lease as the leader last wrote it (a read first only
//    when that write conflicts);
//  - every write is a conditional update (resourceVersion), so two candidates cannot both win;
//  - on graceful shutdown the leader releases the lease (no holder), so a standby takes over at
//    its next retry instead of waiting out the lease.
import type { Logger } from 'pino';
import type { Clock } from './clock.ts';
import type { KubeApi } from './api.ts';
import { isConflict, isNotFound } from './errors.ts';
import { microTime } from './events.ts';
import { LEASES, type KubeObject } from './types.ts';

export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

interface Lease extends KubeObject {
  spec?: LeaseSpec;
}

export interface LeaderElectionConfig {
  namespace: string;
  name: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

export const DEFAULT_LEADER_ELECTION: Omit<LeaderElectionConfig, 'namespace'> = {
  name: 'lvs-operator', leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000,
};

export interface LeaderElectorOptions extends LeaderElectionConfig {
  api: KubeApi;
  clock: Clock;
  logger: Logger;
  identity: string;
  random?: () => number;
  /** Called when this replica becomes leader. */
  onStartedLeading(): void;
  /** Called when leadership ends; awaited before the lease is released. */
  onStoppedLeading(): Promise<void>;
  onError?(err: unknown): void;
}

type Attempt = 'ok' | 'held' | 'failed';

export class LeaderElector {
  readonly #o: LeaderElectorOptions;
  readonly #log: Logger;
  #observed = '';
  #observedAt = 0;
  #leading = false;
  #lastRenew = 0;
  /** The lease as our last successful write returned it: a leader renews from it in one request. */
  #mine: Lease | undefined;

  constructor(opts: LeaderElectorOptions) {
    if (!(opts.renewDeadlineMs < opts.leaseDurationMs)) throw new Error('leader election: renewDeadline must be shorter than leaseDuration');
    if (!(opts.retryPeriodMs < opts.renewDeadlineMs)) throw new Error('leader election: retryPeriod must be shorter than renewDeadline');
    this.#o = opts;
    this.#log = opts.logger.child({ op: 'leader-election', lease: `${opts.namespace}/${opts.name}` });
  }

  /** Leader right now: holds the lease and renewed it less than renewDeadline ago. */
  isLeader(): boolean {
    return this.#leading && this.#o.clock.now() - this.#lastRenew < this.#o.renewDeadlineMs;
  }

  /** Campaigns, leads and renews until signal aborts; then steps down and releases the lease. */
  async run(signal: AbortSignal): Promise<void> {
    const jitter = () => this.#o.retryPeriodMs * (1 + 0.2 * (this.#o.random ?? Math.random)());
    while (!signal.aborted) {
      if ((await this.#tryAcquireOrRenew(signal)) !== 'ok') {
        await this.#o.clock.sleep(jitter(), signal);
        continue;
      }
      this.#leading = true;
      this.#log.info({ identity: this.#o.identity }, 'became leader');
      this.#o.onStartedLeading();
      while (!signal.aborted) {
        await this.#o.clock.sleep(this.#o.retryPeriodMs, signal);
        if (signal.aborted) break;
        const r = await this.#tryAcquireOrRenew(signal);
        if (r === 'held' || (r === 'failed' && !this.isLeader())) {
          this.#log.warn({ result: r }, 'lost leadership');
          break;
        }
      }
      this.#leading = false;
      this.#mine = undefined;
      await this.#o.onStoppedLeading();
      if (signal.aborted) await this.#release();
    }
  }

  async #tryAcquireOrRenew(signal: AbortSignal): Promise<Attempt> {
    const { api, clock, namespace, name, identity } = this.#o;
    // Durations (expiry, renew deadline) on the monotonic clock; the lease's own acquireTime and
    // renewTime are timestamps for humans and other clients, so they come from the wall clock.
    const now = clock.now();
    const stamp = microTime(clock.wallNow());
    const durationSeconds = Math.ceil(this.#o.leaseDurationMs / 1000);
    // A renewal that cannot finish before the deadline is useless; do not let it hang.
    const timeout = AbortSignal.any([signal, AbortSignal.timeout(this.#o.renewDeadlineMs)]);
    // The leader renews with one conditional write on the lease it last wrote (no read first): it
    // succeeds only if nobody wrote the lease since, so it holds it still. Under a slow API server
    // (4-6 s a request in the cluster tier's VM) a read and a write per renewal can leave the
    // leader past its renew deadline, with writes withheld, even when every renewal succeeds
    // (isLeader() counts from an attempt's start). On 409 (someone else wrote it) the read below
    // decides.
    if (this.#leading && this.#mine) {
      const renewed = await this.#renew(this.#mine, stamp, durationSeconds, now, timeout, signal);
      if (renewed !== 'conflict') return renewed;
    }
    try {
      let lease: Lease;
      try {
        lease = await api.get<Lease>(LEASES, namespace, name, timeout);
      } catch (err) {
        if (!isNotFound(err)) throw err;
        const spec: LeaseSpec = { holderIdentity: identity, leaseDurationSeconds: durationSeconds, acquireTime: stamp, renewTime: stamp, leaseTransitions: 0 };
        return this.#held(await api.create<Lease>(LEASES, namespace, { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace }, spec }, timeout), now);
      }
      this.#observe(lease, now);
      const spec = lease.spec ?? {};
      const held = spec.holderIdentity && spec.holderIdentity !== identity;
      const validMs = (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
      if (held && this.#observedAt + validMs > now) return 'held';
      const mine = spec.holderIdentity === identity;
      const next: LeaseSpec = {
        holderIdentity: identity,
        leaseDurationSeconds: durationSeconds,
        acquireTime: mine && spec.acquireTime ? spec.acquireTime : stamp,
        renewTime: stamp,
        leaseTransitions: mine ? (spec.leaseTransitions ?? 0) : (spec.leaseTransitions ?? 0) + (spec.holderIdentity ? 1 : 0),
      };
      return this.#held(await api.replace<Lease>(LEASES, namespace, name, { ...lease, spec: next }, timeout), now);
    } catch (err) {
      if (signal.aborted) return 'failed';
      this.#o.onError?.(err);
      // 409: someone else wrote the lease between our read and write; they probably hold it now.
      if (!isConflict(err)) this.#log.warn({ err: String(err) }, 'lease request failed');
      return 'failed';
    }
  }

  /** One conditional write renewing `lease` (ours as last written); 'conflict' when it changed since. */
  async #renew(lease: Lease, stamp: string, durationSeconds: number, now: number, timeout: AbortSignal, signal: AbortSignal): Promise<Attempt | 'conflict'> {
    const { api, namespace, name } = this.#o;
    try {
      return this.#held(await api.replace<Lease>(LEASES, namespace, name, { ...lease, spec: { ...lease.spec, leaseDurationSeconds: durationSeconds, renewTime: stamp } }, timeout), now);
    } catch (err) {
      if (signal.aborted) return 'failed';
      if (isConflict(err)) { this.#mine = undefined; return 'conflict'; }
      this.#o.onError?.(err);
      this.#log.warn({ err: String(err) }, 'lease request failed');
      return 'failed';
    }
  }

  /** Our write of the lease succeeded (an attempt begun at `now`): we hold it, renewed then. */
  #held(written: Lease, now: number): 'ok' {
    this.#observe(written, now);
    this.#lastRenew = now;
    this.#mine = written;
    return 'ok';
  }

  #observe(lease: Lease, now: number): void {
    const record = JSON.stringify(lease.spec ?? {});
    if (record !== this.#observed) {
      this.#observed = record;
      this.#observedAt = now;
    }
  }

  /** Clears the holder so a standby can take over at once. Only if the lease is still ours. */
  async #release(): Promise<void> {
    const { api, namespace, name, identity, clock } = this.#o;
    const signal = AbortSignal.timeout(this.#o.renewDeadlineMs);
    try {
      const lease = await api.get<Lease>(LEASES, namespace, name, signal);
      if (lease.spec?.holderIdentity !== identity) return;
      const now = microTime(clock.wallNow());
      const spec: LeaseSpec = { leaseDurationSeconds: 1, acquireTime: now, renewTime: now, leaseTransitions: lease.spec.leaseTransitions ?? 0 };
      await api.replace<Lease>(LEASES, namespace, name, { ...lease, spec }, signal);
      this.#log.info('released lease');
    } catch (err) {
      this.#o.onError?.(err);
      this.#log.warn({ err: String(err) }, 'could not release lease; a standby takes over when it expires');
    }
  }
}
