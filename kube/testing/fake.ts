// An in-memory KubeApi for unit tests: one resourceVersion counter for all objects, watch history
// that can be compacted (so a stale watch gets 410 as from a real apiserver), conditional writes
// (409 on a stale resourceVersion), the status subresource, generation bumps on spec changes,
// paginated lists, and injectable failures. It counts writes so tests can assert "no redundant
// status writes" as an end state.
import type { KubeApi, ListOptions, ListPage, WatchEvent, WatchOptions } from '../api.ts';
import { KubeApiError } from '../errors.ts';
import { isUnreachable, Reachability } from '../reachability.ts';
import { apiVersionOf, objectKey, type KubeObject, type ResourceType } from '../types.ts';

type Op = 'list' | 'watch' | 'get' | 'create' | 'replace' | 'delete' | 'patchStatus' | 'applyStatus';

interface Watcher {
  plural: string;
  onEvent(e: WatchEvent): void;
  close(err?: unknown): void;
}

export class FakeKubeApi implements KubeApi {
  #rv = 0;
  #compactedAt = 0;
  #objects = new Map<string, Map<string, KubeObject>>();
  #history: Array<{ plural: string; rv: number; event: WatchEvent }> = [];
  #watchers = new Set<Watcher>();
  #faults: Array<{ op: Op; plural?: string; err: unknown }> = [];
  readonly #now: () => number;
  /** Marked as the real client marks it: failed by an injected "no answer" (status 0), answered by any request that reaches the fake. */
  readonly reachability = new Reachability();
  /** Successful requests by op and plural, e.g. counts.get('patchStatus virtualservers'). */
  readonly counts = new Map<string, number>();

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  count(op: Op, plural: string): number {
    return this.counts.get(`${op} ${plural}`) ?? 0;
  }

  /** The next matching request fails with err (in order of registration). */
  failNext(op: Op, err: unknown, plural?: string): void {
    this.#faults.push({ op, err, ...(plural ? { plural } : {}) });
  }

  /** Forgets watch history: watches from an older resourceVersion get 410 Gone. */
  compact(): void {
    this.#compactedAt = this.#rv;
    this.#history = [];
  }

  /** Ends every open watch as a server timeout would (cleanly). */
  closeWatches(): void {
    for (const w of [...this.#watchers]) w.close();
  }

  get openWatches(): number {
    return this.#watchers.size;
  }

  /** Test setup as a user would: create, or replace spec/labels/other fields keeping status. */
  apply<T extends KubeObject>(rt: ResourceType, obj: T): T {
    const cur = this.#bucket(rt).get(objectKey(obj));
    if (!cur) return this.#create(rt, obj);
    const next = { ...structuredClone(obj), metadata: { ...cur.metadata, ...structuredClone(obj.metadata) } } as T & { status?: unknown };
    if ((cur as { status?: unknown }).status !== undefined && rt.plural === 'virtualservers') next.status = structuredClone((cur as { status?: unknown }).status);
    return this.#store(rt, next, 'MODIFIED', cur);
  }

  remove(rt: ResourceType, namespace: string | undefined, name: string): void {
    const key = namespace ? `${namespace}/${name}` : name;
    const cur = this.#bucket(rt).get(key);
    if (!cur) throw new Error(`fake: ${rt.plural} ${key} not found`);
    this.#bucket(rt).delete(key);
    const obj = { ...structuredClone(cur), metadata: { ...cur.metadata, resourceVersion: String(++this.#rv) } };
    this.#publish(rt, { type: 'DELETED', object: obj });
  }

  peek<T extends KubeObject>(rt: ResourceType, namespace: string | undefined, name: string): T | undefined {
    const o = this.#bucket(rt).get(namespace ? `${namespace}/${name}` : name);
    return o ? (structuredClone(o) as T) : undefined;
  }

  all<T extends KubeObject>(rt: ResourceType): T[] {
    return [...this.#bucket(rt).values()].map((o) => structuredClone(o) as T);
  }

  async list(rt: ResourceType, opts: ListOptions = {}): Promise<ListPage> {
    await turn();
    this.#fault('list', rt);
    const all = [...this.#bucket(rt).entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, o]) => o);
    const start = opts.continue ? Number(opts.continue) : 0;
    const end = opts.limit ? start + opts.limit : all.length;
    this.#counted('list', rt);
    const page: ListPage = { items: all.slice(start, end).map((o) => structuredClone(o)), resourceVersion: String(this.#rv) };
    if (end < all.length) page.continue = String(end);
    return page;
  }

  watch(rt: ResourceType, opts: WatchOptions, onEvent: (e: WatchEvent) => void, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      try {
        this.#fault('watch', rt);
      } catch (err) {
        return reject(err);
      }
      this.#counted('watch', rt);
      const from = Number(opts.resourceVersion || 0);
      const w: Watcher = {
        plural: rt.plural,
        onEvent: (e) => { try { onEvent(structuredClone(e)); } catch (err) { w.close(err); } },
        close: (err) => {
          this.#watchers.delete(w);
          signal?.removeEventListener('abort', onAbort);
          if (err) reject(err); else resolve();
        },
      };
      const onAbort = () => w.close();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#watchers.add(w);
      if (from < this.#compactedAt) {
        // What a real apiserver does: a 200 whose stream holds one ERROR event, then the end.
        w.onEvent({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired', message: `too old resource version: ${from} (${this.#compactedAt})` } });
        if (this.#watchers.has(w)) w.close();
        return;
      }
      for (const h of this.#history) if (h.plural === rt.plural && h.rv > from && this.#watchers.has(w)) w.onEvent(h.event);
    });
  }

  async get<T extends KubeObject>(rt: ResourceType, namespace: string | undefined, name: string): Promise<T> {
    await turn();
    this.#fault('get', rt);
    const o = this.#bucket(rt).get(namespace ? `${namespace}/${name}` : name);
    if (!o) throw new KubeApiError(`get ${rt.plural}`, 404, `${name} not found`, { reason: 'NotFound' });
    this.#counted('get', rt);
    return structuredClone(o) as T;
  }

  async create<T extends KubeObject>(rt: ResourceType, namespace: string | undefined, obj: T): Promise<T> {
    await turn();
    this.#fault('create', rt);
    const withNs = { ...obj, metadata: { ...obj.metadata, ...(namespace ? { namespace } : {}) } };
    if (this.#bucket(rt).has(objectKey(withNs))) throw new KubeApiError(`create ${rt.plural}`, 409, 'already exists', { reason: 'AlreadyExists' });
    this.#counted('create', rt);
    return this.#create(rt, withNs);
  }

  async replace<T extends KubeObject>(rt: ResourceType, namespace: string | undefined, name: string, obj: T): Promise<T> {
    await turn();
    this.#fault('replace', rt);
    const cur = this.#current(rt, 'replace', namespace, name, obj.metadata.resourceVersion);
    this.#counted('replace', rt);
    return this.#store(rt, { ...structuredClone(obj), metadata: { ...cur.metadata, ...structuredClone(obj.metadata) } }, 'MODIFIED', cur);
  }

  async delete(rt: ResourceType, namespace: string | undefined, name: string, opts: { resourceVersion?: string } = {}): Promise<void> {
    await turn();
    this.#fault('delete', rt);
    this.#current(rt, 'delete', namespace, name, opts.resourceVersion);
    this.#counted('delete', rt);
    this.remove(rt, namespace, name);
  }

  async patchStatus<T extends KubeObject>(rt: ResourceType, namespace: string | undefined, name: string, patch: object): Promise<T> {
    await turn();
    this.#fault('patchStatus', rt);
    const p = patch as { metadata?: { resourceVersion?: string }; status?: unknown };
    const cur = this.#current(rt, 'patchStatus', namespace, name, p.metadata?.resourceVersion);
    this.#counted('patchStatus', rt);
    const next = structuredClone(cur) as KubeObject & { status?: unknown };
    next.status = mergePatch(next.status, p.status);
    return this.#store(rt, next, 'MODIFIED', cur) as T;
  }

  /** Server-side apply, modelled for what callers send: list-map entries keyed by name merge per entry. */
  async applyStatus<T extends KubeObject>(rt: ResourceType, namespace: string | undefined, name: string, obj: object): Promise<T> {
    await turn();
    this.#fault('applyStatus', rt);
    const cur = this.#current(rt, 'applyStatus', namespace, name, undefined);
    this.#counted('applyStatus', rt);
    const next = structuredClone(cur) as KubeObject & { status?: Record<string, unknown> };
    const applied = ((obj as { status?: Record<string, unknown> }).status ?? {});
    const status = { ...(next.status ?? {}) };
    for (const [k, v] of Object.entries(applied)) {
      const old = status[k];
      if (Array.isArray(v) && Array.isArray(old) && v.every((e) => typeof (e as { name?: unknown })?.name === 'string')) {
        const byName = new Map(old.map((e) => [(e as { name: string }).name, e] as const));
        for (const e of v) byName.set((e as { name: string }).name, e);
        status[k] = [...byName.values()].sort((a, b) => ((a as { name: string }).name < (b as { name: string }).name ? -1 : 1));
      } else status[k] = v;
    }
    next.status = status;
    return this.#store(rt, next, 'MODIFIED', cur) as T;
  }

  #current(rt: ResourceType, op: Op, namespace: string | undefined, name: string, rv: string | undefined): KubeObject {
    const cur = this.#bucket(rt).get(namespace ? `${namespace}/${name}` : name);
    if (!cur) throw new KubeApiError(`${op} ${rt.plural}`, 404, `${name} not found`, { reason: 'NotFound' });
    if (rv && rv !== cur.metadata.resourceVersion) {
      throw new KubeApiError(`${op} ${rt.plural}`, 409, 'the object has been modified; please apply your changes to the latest version and try again', { reason: 'Conflict' });
    }
    return cur;
  }

  #create<T extends KubeObject>(rt: ResourceType, obj: T): T {
    const o = structuredClone(obj);
    o.apiVersion ??= apiVersionOf(rt);
    o.kind ??= rt.kind;
    o.metadata.uid ??= `uid-${this.#rv + 1}`;
    o.metadata.creationTimestamp ??= new Date(this.#now()).toISOString().replace(/\.\d+Z$/, 'Z');
    o.metadata.generation = 1;
    return this.#store(rt, o, 'ADDED');
  }

  #store<T extends KubeObject>(rt: ResourceType, obj: T, type: 'ADDED' | 'MODIFIED', prev?: KubeObject): T {
    const o = structuredClone(obj);
    if (prev && JSON.stringify((prev as { spec?: unknown }).spec) !== JSON.stringify((o as { spec?: unknown }).spec)) {
      o.metadata.generation = (prev.metadata.generation ?? 1) + 1;
    }
    o.metadata.resourceVersion = String(++this.#rv);
    this.#bucket(rt).set(objectKey(o), o);
    this.#publish(rt, { type, object: o });
    return structuredClone(o);
  }

  #publish(rt: ResourceType, event: WatchEvent): void {
    this.#history.push({ plural: rt.plural, rv: this.#rv, event });
    for (const w of [...this.#watchers]) if (w.plural === rt.plural) w.onEvent(event);
  }

  #bucket(rt: ResourceType): Map<string, KubeObject> {
    let b = this.#objects.get(rt.plural);
    if (!b) this.#objects.set(rt.plural, (b = new Map()));
    return b;
  }

  #fault(op: Op, rt: ResourceType): void {
    const i = this.#faults.findIndex((f) => f.op === op && (!f.plural || f.plural === rt.plural));
    if (i >= 0) {
      const [f] = this.#faults.splice(i, 1);
      if (isUnreachable(f!.err)) this.reachability.failed();
      throw f!.err;
    }
    this.reachability.answered(); // the request reached the server, whatever it answers
  }

  #counted(op: Op, rt: ResourceType): void {
    const k = `${op} ${rt.plural}`;
    this.counts.set(k, (this.counts.get(k) ?? 0) + 1);
  }
}

/** The same API, with a switch that makes every new request fail as a partitioned network would. */
export function partitionable(api: FakeKubeApi): { api: KubeApi; cut(on: boolean): void } {
  let down = false;
  const wrapped = new Proxy(api, {
    get(target, prop) {
      const v = Reflect.get(target, prop) as unknown;
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => (down ? Promise.reject(new KubeApiError(String(prop), 0, 'network unreachable')) : (v as (...a: unknown[]) => unknown).apply(target, args));
    },
  });
  return { api: wrapped, cut: (on) => { down = on; } };
}

/** Like a network round trip: lets timers and I/O run, so a runaway loop cannot starve them. */
const turn = () => new Promise<void>((r) => setImmediate(r));

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return structuredClone(patch);
  const out: Record<string, unknown> = target && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}
