// Kubernetes Events (events.k8s.io/v1) about VirtualServers. Recording is best effort: a failed
// event is logged and counted, never allowed to fail or retry a reconcile.
import type { Logger } from 'pino';
import type { Clock } from './clock.ts';
import type { KubeApi } from './api.ts';
import { EVENTS, type KubeObject } from './types.ts';

export interface EventSpec {
  type: 'Normal' | 'Warning';
  /** UpperCamelCase, e.g. AddressInUse. */
  reason: string;
  note: string;
  /** What the controller was doing, e.g. Reconcile. */
  action: string;
}

export interface EventSink {
  record(regarding: KubeObject, ev: EventSpec): Promise<void>;
}

export interface EventRecorderOptions {
  api: KubeApi;
  clock: Clock;
  logger: Logger;
  /** reportingController, e.g. lvs.dev/operator. */
  controller: string;
  /** reportingInstance: this replica's identity. */
  instance: string;
  onRecorded?(ev: EventSpec, ok: boolean): void;
}

/** metav1.MicroTime: RFC 3339 with microseconds. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class EventRecorder implements EventSink {
  readonly #o: EventRecorderOptions;
  #seq = 0;

  constructor(opts: EventRecorderOptions) {
    this.#o = opts;
  }

  async record(regarding: KubeObject, ev: EventSpec): Promise<void> {
    const now = this.#o.clock.wallNow(); // eventTime and the name's suffix are timestamps
    const m = regarding.metadata;
    // Unique per replica and instant, like client-go's "<name>.<unix nanos hex>".
    const suffix = (BigInt(now) * 1_000_000n + BigInt(this.#seq++ % 1_000_000)).toString(16);
    const event = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: `${m.name.slice(0, 253 - suffix.length - 1)}.${suffix}`, namespace: m.namespace ?? 'default' },
      eventTime: microTime(now),
      reportingController: this.#o.controller,
      reportingInstance: this.#o.instance.slice(0, 128),
      action: ev.action,
      reason: ev.reason,
      note: ev.note.length > 1000 ? `${ev.note.slice(0, 997)}...` : ev.note,
      type: ev.type,
      regarding: {
        apiVersion: regarding.apiVersion, kind: regarding.kind, namespace: m.namespace, name: m.name,
        uid: m.uid, resourceVersion: m.resourceVersion,
      },
    };
    try {
      await this.#o.api.create(EVENTS, m.namespace, event);
      this.#o.onRecorded?.(ev, true);
    } catch (err) {
      this.#o.onRecorded?.(ev, false);
      this.#o.logger.warn({ op: 'event', vs: `${m.namespace}/${m.name}`, reason: ev.reason, err: String(err) }, 'could not record event');
    }
  }
}
