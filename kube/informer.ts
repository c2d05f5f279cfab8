// List + watch into a local cache, for one resource type across all namespaces.
//
// resourceVersion bookkeeping: rv is the version of the last event applied to the cache (or of
// the last list). A watch always resumes from rv, so a reconnect neither loses nor repeats an
// event: the server replays everything after rv. A half-received event (connection cut mid-line)
// is never applied, so rv stays before it and the server sends it again. When rv is too old for
// the server (410 Gone, from the watch request or as an ERROR event in the stream), we relist and
// diff the fresh list against the cache, so objects deleted meanwhile still produce onDelete.
// Other failures back off exponentially with jitter, honouring Retry-After, and retry forever; a
// backoff after the server gave no answer at all ends early (within a second) once any request of
// the same client gets an answer again (reachability.ts), so every informer of the process is back
// soon after the first.
import type { Logger } from 'pino';
import { DEFAULT_BACKOFF, retryDelay, type BackoffPolicy } from './backoff.ts';
import type { Clock } from './clock.ts';
import type { KubeApi, WatchEvent } from './api.ts';
import { isGone, KubeApiError } from './errors.ts';
import { interner } from './intern.ts';
import { isUnreachable } from './reachability.ts';
import { objectKey, type KubeObject, type ResourceType } from './types.ts';

export interface InformerHandlers<T extends KubeObject> {
  onAdd?(obj: T): void;
  onUpdate?(old: T, obj: T): void;
  onDelete?(obj: T): void;
}

export interface InformerOptions<T extends KubeObject = KubeObject> {
  api: KubeApi;
  resource: ResourceType;
  clock: Clock;
  logger: Logger;
  backoff?: BackoffPolicy;
  random?: () => number;
  /** List page size (limit); 0 lists everything in one response. */
  pageSize?: number;
  /** Only objects matching this field selector (e.g. spec.nodeName=node-a for an agent's pods). */
  fieldSelector?: string;
  /** Called on every failed list or watch, for metrics. */
  onError?(op: 'list' | 'watch', err: unknown): void;
  /**
   * What the cache holds for an object the server sent (after managedFields are dropped and
   * repeated strings shared, intern.ts), e.g. the form the caller reads it in or only what it
   * needs, so the cache holds that one copy and not the wire form besides; it must keep
   * metadata.name, metadata.namespace and metadata.resourceVersion. Called once per object received
   * (a relist's unchanged objects are not received again: the cache keeps the object it had).
   * Handlers get what it returns.
   */
  transform?(obj: KubeObject): KubeObject;
}

/**
 * The cached copy without metadata.managedFields, which nothing here reads and which can outweigh
 * the rest (a Node's runs to kilobytes). A PUT built from such a copy keeps the stored
 * managedFields: the API server preserves them when a request leaves them out.
 */
export function stripped<T extends KubeObject>(obj: T): T {
  if (obj.metadata && 'managedFields' in obj.metadata) delete (obj.metadata as { managedFields?: unknown }).managedFields;
  return obj;
}

/** A watch that ends sooner than this without delivering anything counts as a failure. */
const SHORT_WATCH_MS = 1000;

export class Informer<T extends KubeObject> {
  readonly resource: ResourceType;
  readonly #o: InformerOptions<T>;
  readonly #handlers: InformerHandlers<T>[] = [];
  #cache = new Map<string, T>();
  #rv = '';
  #failing = false;
  #synced = false;
  #syncWaiters: Array<() => void> = [];
  /** Lists performed, for tests and logs. */
  lists = 0;

  constructor(opts: InformerOptions<T>) {
    this.#o = opts;
    this.resource = opts.resource;
  }

  addHandlers(h: InformerHandlers<T>): void {
    this.#handlers.push(h);
  }

  get(key: string): T | undefined {
    return this.#cache.get(key);
  }

  list(): T[] {
    return [...this.#cache.values()];
  }

  get size(): number {
    return this.#cache.size;
  }

  /** Version of the last list or event applied; '' before the first list and after a 410. */
  get resourceVersion(): string {
    return this.#rv;
  }

  /**
   * True while the last list or watch request failed (403, the resource gone with its CRD, no
   * connection): the cache is kept but may be stale. False again once a list succeeds or a watch
   * is established and delivers or ends cleanly.
   */
  get failing(): boolean {
    return this.#failing;
  }

  get synced(): boolean {
    return this.#synced;
  }

  whenSynced(): Promise<void> {
    return this.#synced ? Promise.resolve() : new Promise((r) => this.#syncWaiters.push(r));
  }

  /** Runs until signal aborts. Never throws: every failure is logged, counted and retried. */
  async run(signal: AbortSignal): Promise<void> {
    const log = this.#o.logger.child({ op: `informer ${this.resource.plural}` });
    let attempt = 0;
    while (!signal.aborted) {
      let step: 'list' | 'watch' = 'list';
      try {
        if (!this.#rv) { await this.#relist(signal); this.#failing = false; }
        step = 'watch';
        const started = this.#o.clock.now();
        const delivered = await this.#watch(signal);
        if (delivered > 0 || this.#o.clock.now() - started >= SHORT_WATCH_MS) { attempt = 0; this.#failing = false; continue; }
        throw new KubeApiError(`watch ${this.resource.plural}`, 0, 'watch ended immediately without events');
      } catch (err) {
        if (signal.aborted) break;
        this.#failing = true;
        this.#o.onError?.(step, err);
        if (isGone(err)) {
          // Relist right away: waiting would only widen the gap the relist has to cover.
          log.info({ rv: this.#rv, err: String(err) }, 'resourceVersion expired; relisting');
          this.#rv = '';
          continue;
        }
        const delay = retryDelay(err, attempt++, this.#o.backoff ?? DEFAULT_BACKOFF, this.#o.random);
        log.warn({ err: String(err), attempt, delayMs: delay }, `${step} failed; retrying`);
        if (await this.#backoff(delay, err, signal)) log.info({ step }, 'the API server answers again; retrying now');
      }
    }
  }

  /**
   * Sleeps `delay`; when err is "no answer at all", only until another request of this client gets
   * an answer, plus up to a second of jitter. True when it ended early so.
   */
  async #backoff(delay: number, err: unknown, signal: AbortSignal): Promise<boolean> {
    const reach = this.#o.api.reachability;
    if (!reach || !isUnreachable(err)) {
      await this.#o.clock.sleep(delay, signal);
      return false;
    }
    reach.failed(); // a watch stream cut mid-body is seen here only
    const done = new AbortController();
    const either = AbortSignal.any([signal, done.signal]);
    const answered = reach.whenAnswering(either).then(() => !either.aborted);
    const early = await Promise.race([this.#o.clock.sleep(delay, either).then(() => false), answered]);
    done.abort();
    if (!early || signal.aborted) return false;
    await this.#o.clock.sleep(Math.round((this.#o.random ?? Math.random)() * 1000), signal);
    return true;
  }

  #selector(): { fieldSelector?: string } {
    return this.#o.fieldSelector ? { fieldSelector: this.#o.fieldSelector } : {};
  }

  async #relist(signal: AbortSignal): Promise<void> {
    const items: T[] = [];
    let cont: string | undefined;
    let rv = '';
    const old = this.#cache;
    do {
      const page = await this.#o.api.list(this.resource, { limit: this.#o.pageSize ?? 500, ...(cont ? { continue: cont } : {}), ...this.#selector() }, signal);
      for (const o of page.items) items.push(this.#kept(old, o));
      rv = page.resourceVersion;
      cont = page.continue;
    } while (cont);
    this.lists++;
    const fresh = new Map(items.map((o) => [objectKey(o), o] as const));
    this.#cache = fresh;
    this.#rv = rv;
    for (const [key, obj] of old) if (!fresh.has(key)) this.#emit((h) => h.onDelete?.(obj));
    for (const [key, obj] of fresh) {
      const prev = old.get(key);
      if (!prev) this.#emit((h) => h.onAdd?.(obj));
      else if (prev !== obj) this.#emit((h) => h.onUpdate?.(prev, obj));
    }
    if (!this.#synced) {
      this.#synced = true;
      for (const w of this.#syncWaiters.splice(0)) w();
    }
  }

  /**
   * A listed object as the cache holds it: the cached one when its resourceVersion is the same (the
   * server's object did not change; the listed copy would be a second one the moment handlers
   * kept the first), otherwise stripped and transformed.
   */
  #kept(old: ReadonlyMap<string, T>, o: KubeObject): T {
    const prev = old.get(objectKey(o));
    if (prev && prev.metadata.resourceVersion === o.metadata?.resourceVersion) return prev;
    return this.#cached(o);
  }

  async #watch(signal: AbortSignal): Promise<number> {
    let delivered = 0;
    // client-go's spread: 5 to 10 minutes, so replicas' watches do not all reconnect together.
    const timeoutSeconds = Math.floor(300 * (1 + (this.#o.random ?? Math.random)()));
    await this.#o.api.watch(this.resource, { resourceVersion: this.#rv, timeoutSeconds, allowWatchBookmarks: true, ...this.#selector() }, (e) => {
      this.#apply(e);
      this.#failing = false; // an event (bookmarks come about every minute) proves the watch works
      delivered++;
    }, signal);
    return delivered;
  }

  #apply(e: WatchEvent): void {
    if (e.type === 'ERROR') {
      const st = e.object;
      throw new KubeApiError(`watch ${this.resource.plural}`, st.code ?? 500, st.message ?? 'watch error event', {
        ...(st.reason ? { reason: st.reason } : {}),
      });
    }
    if (e.type === 'BOOKMARK') { const rv = e.object.metadata?.resourceVersion; if (rv) this.#rv = rv; return; }
    const obj = this.#cached(e.object);
    const rv = obj.metadata?.resourceVersion ?? '';
    const key = objectKey(obj);
    const prev = this.#cache.get(key);
    if (e.type === 'DELETED') {
      this.#cache.delete(key);
      if (prev) this.#emit((h) => h.onDelete?.(obj));
    } else if (!prev) {
      this.#cache.set(key, obj);
      this.#emit((h) => h.onAdd?.(obj));
    } else if (prev.metadata.resourceVersion !== rv) {
      this.#cache.set(key, obj);
      this.#emit((h) => h.onUpdate?.(prev, obj));
    }
    if (rv) this.#rv = rv;
  }

  /** What the cache keeps of an object read: no managedFields, repeated strings shared (intern.ts), transformed. */
  #cached(o: KubeObject): T {
    const s = interner.deep(stripped(o));
    return (this.#o.transform ? this.#o.transform(s) : s) as T;
  }

  #emit(fn: (h: InformerHandlers<T>) => void): void {
    for (const h of this.#handlers) {
      try {
        fn(h);
      } catch (err) {
        // A handler bug must not wedge the cache; it only maps events to work-queue keys.
        this.#o.logger.error({ op: `informer ${this.resource.plural}`, err: String(err) }, 'event handler threw');
      }
    }
  }
}
