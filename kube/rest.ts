// KubeApi over HTTP. Where the server is and how to authenticate come from ./kubeconfig.ts
// (kubeconfig files, the in-cluster service account with token re-reads); a kubeconfig user with an
// exec plugin or an auth-provider goes through client-node's KubeConfig, loaded only then. The
// requests themselves are plain fetch calls, because client-node's own layers do not fit a
// controller here:
//  - its ListWatch stops for good on any error but 410, and its Watch drops the response headers
//    and Status body, so Retry-After and the Status reason are lost;
//  - its generated clients build a new connection pool for every request and turn timestamps
//    into Date objects, which would make stored and computed status compare unequal.
// One undici Agent is kept for the process, so connections are reused.
import type { KubeConfig } from '@kubernetes/client-node';
import type { RequestOptions } from 'node:https';
import { Agent, fetch, type Dispatcher } from 'undici';
import type { KubeApi, ListOptions, ListPage, WatchEvent, WatchOptions } from './api.ts';
import { KubeApiError, parseRetryAfter } from './errors.ts';
import { Reachability } from './reachability.ts';
import { inClusterCredentials, kubeconfigCredentials, type Credentials, type LoadOptions } from './kubeconfig.ts';
import { apiVersionOf, resourcePath, type KubeObject, type ResourceType, type StatusObject } from './types.ts';

export interface RestConfig {
  server: string;
  /** Headers to send (Authorization); called per request so rotated tokens are picked up. */
  headers(): Promise<Record<string, string>>;
  dispatcher?: Dispatcher;
  /** Timeout of every non-watch request. */
  requestTimeoutMs?: number;
  /** A watch that receives no bytes for this long is presumed dead and is aborted. */
  watchIdleTimeoutMs?: number;
}

/** The credentials of a loaded client-node KubeConfig (TLS material read once, headers per request). */
export async function credentialsFromKubeConfig(kc: KubeConfig): Promise<Credentials> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('kubeconfig: no current cluster (check current-context)');
  const tls: RequestOptions = {};
  await kc.applyToHTTPSOptions(tls);
  const buf = (v: unknown) => (v === undefined || v === null ? undefined : Buffer.from(v as string | Buffer));
  const [ca, cert, key] = [buf(tls.ca), buf(tls.cert), buf(tls.key)];
  return {
    server: cluster.server,
    ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}),
    ...(tls.rejectUnauthorized !== undefined ? { rejectUnauthorized: tls.rejectUnauthorized } : {}),
    ...(tls.servername ? { servername: tls.servername } : {}),
    source: 'client-node KubeConfig',
    async headers() {
      const opts: RequestOptions = {};
      await kc.applyToHTTPSOptions(opts);
      const out: Record<string, string> = {};
      for (const [k, v] of Object.entries(opts.headers ?? {})) if (v !== undefined) out[k] = String(v);
      if (opts.auth) out.Authorization = `Basic ${Buffer.from(opts.auth).toString('base64')}`;
      return out;
    },
  };
}

/** Builds a RestConfig from a loaded client-node KubeConfig (the tests' clients, and plugin users). */
export async function restConfigFromKubeConfig(kc: KubeConfig): Promise<RestConfig> {
  return restConfigFromCredentials(await credentialsFromKubeConfig(kc));
}

/**
 * The process's RestConfig: from the files KUBECONFIG names, or from the pod's service account.
 * client-node is imported only for a kubeconfig user that needs a plugin (./kubeconfig.ts).
 */
export async function loadRestConfig(from: 'kubeconfig' | 'in-cluster', opts: LoadOptions = {}): Promise<RestConfig> {
  const c = from === 'in-cluster' ? inClusterCredentials(opts) : kubeconfigCredentials(opts);
  if ('server' in c) return restConfigFromCredentials(c);
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  kc.loadFromDefault();
  return restConfigFromKubeConfig(kc);
}

export function restConfigFromCredentials(c: Credentials): RestConfig {
  const dispatcher = new Agent({
    connect: {
      ...(c.ca ? { ca: c.ca } : {}), ...(c.cert ? { cert: c.cert } : {}), ...(c.key ? { key: c.key } : {}),
      ...(c.rejectUnauthorized !== undefined ? { rejectUnauthorized: c.rejectUnauthorized } : {}),
      ...(c.servername ? { servername: c.servername } : {}),
    },
    keepAliveTimeout: 30_000,
    // HTTP/1.1 only. undici offers h2 by ALPN and kube-apiserver (Go) picks it, so every watch and
    // request shared one HTTP/2 session through Node's nghttp2 binding. In the cluster tier that
    // session livelocked when the controller stopped under `kubectl drain`: its watches cancelled
    // at once while the apiserver was sending their events, the main thread never left
    // Http2Session::SendPendingData (nghttp2_session_mem_send_internal, caught with gdb; Node
    // 24.21, undici 8.12) and memory grew until the kernel OOM-killed the pod (7 of 9 runs).
    // With HTTP/1.1 a cancelled request closes its own connection; the cost is one connection per
    // open watch (the controller has 9, an agent 3).
    allowH2: false,
  });
  return { server: c.server.replace(/\/+$/, ''), dispatcher, headers: () => c.headers() };
}

interface Call {
  op: string;
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  signal?: AbortSignal;
}

export class RestKubeApi implements KubeApi {
  readonly #cfg: RestConfig;
  readonly reachability = new Reachability();

  constructor(cfg: RestConfig) {
    this.#cfg = cfg;
  }

  async list(rt: ResourceType, opts: ListOptions = {}, signal?: AbortSignal): Promise<ListPage> {
    const body = await this.#json<{ items?: KubeObject[]; metadata?: { resourceVersion?: string; continue?: string } }>({
      op: `list ${rt.plural}`, method: 'GET', path: resourcePath(rt), signal,
      query: { limit: opts.limit, continue: opts.continue, labelSelector: opts.labelSelector, fieldSelector: opts.fieldSelector },
    });
    // List items come without apiVersion/kind; fill them in so cached objects look like watched ones.
    const items = (body.items ?? []).map((o) => ({ ...o, apiVersion: o.apiVersion ?? apiVersionOf(rt), kind: o.kind ?? rt.kind }));
    const page: ListPage = { items, resourceVersion: body.metadata?.resourceVersion ?? '' };
    if (body.metadata?.continue) page.continue = body.metadata.continue;
    return page;
  }

  async watch(rt: ResourceType, opts: WatchOptions, onEvent: (e: WatchEvent) => void, signal?: AbortSignal): Promise<void> {
    const op = `watch ${rt.plural}`;
    const idle = new AbortController();
    const res = await this.#send({
      op, method: 'GET', path: resourcePath(rt), signal: signal ? AbortSignal.any([signal, idle.signal]) : idle.signal,
      query: {
        watch: true, resourceVersion: opts.resourceVersion, timeoutSeconds: opts.timeoutSeconds,
        allowWatchBookmarks: opts.allowWatchBookmarks, labelSelector: opts.labelSelector, fieldSelector: opts.fieldSelector,
      },
    }, false);
    const idleMs = this.#cfg.watchIdleTimeoutMs ?? ((opts.timeoutSeconds ?? 300) + 60) * 1000;
    let timer = setTimeout(() => idle.abort(), idleMs);
    const decoder = new TextDecoder();
    let buffered = '';
    try {
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
        clearTimeout(timer);
        timer = setTimeout(() => idle.abort(), idleMs);
        buffered += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (line) onEvent(parseEvent(op, line));
        }
      }
    } catch (err) {
      if (signal?.aborted) return;
      if (err instanceof KubeApiError) throw err;
      throw new KubeApiError(op, 0, idle.signal.aborted ? `no data for ${idleMs}ms` : describe(err), { cause: err });
    } finally {
      clearTimeout(timer);
    }
    // A clean end right after a newline is the server's timeoutSeconds; anything left over is
    // half an event from a cut connection: dropped, and reported so the informer resumes from
    // the last resourceVersion it fully processed.
    if (buffered.trim() && !signal?.aborted) throw new KubeApiError(op, 0, 'stream ended in the middle of an event');
  }

  get<T extends KubeObject>(rt: ResourceType, namespace: string | undefined, name: string, signal?: AbortSignal): Promise<T> {
    return this.#json<T>({ op: `get ${rt.plural} ${ref(namespace, name)}`, method: 'GET', path: resourcePath(rt, namespace, name), signal });
  }

  create<T extends KubeObject>(rt: ResourceType, namespace: string | undefined, obj: T, signal?: AbortSignal): Promise<T> {
    return this.#json<T>({ op: `create ${rt.plural} ${ref(namespace, obj.metadata.name)}`, method: 'POST', path: resourcePath(rt, namespace), body: obj, signal });
  }

  replace<T extends KubeObject>(rt: ResourceType, namespace: string | undefined, name: string, obj: T, signal?: AbortSignal): Promise<T> {
    return this.#json<T>({ op: `replace ${rt.plural} ${ref(namespace, name)}`, method: 'PUT', path: resourcePath(rt, namespace, name), body: obj, signal });
  }

  async delete(rt: ResourceType, namespace: string | undefined, name: string, opts: { resourceVersion?: string } = {}, signal?: AbortSignal): Promise<void> {
    const body = opts.resourceVersion ? { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { resourceVersion: opts.resourceVersion } } : undefined;
    await this.#json<unknown>({ op: `delete ${rt.plural} ${ref(namespace, name)}`, method: 'DELETE', path: resourcePath(rt, namespace, name), body, signal });
  }

  patchStatus<T extends KubeObject>(rt: ResourceType, namespace: string | undefined, name: string, patch: object, signal?: AbortSignal): Promise<T> {
    return this.#json<T>({
      op: `patch ${rt.plural}/status ${ref(namespace, name)}`, method: 'PATCH', path: resourcePath(rt, namespace, name, 'status'),
      body: patch, contentType: 'application/merge-patch+json', signal,
    });
  }

  applyStatus<T extends KubeObject>(rt: ResourceType, namespace: string | undefined, name: string, obj: object, fieldManager: string, signal?: AbortSignal): Promise<T> {
    return this.#json<T>({
      op: `apply ${rt.plural}/status ${ref(namespace, name)}`, method: 'PATCH', path: resourcePath(rt, namespace, name, 'status'),
      query: { fieldManager, force: true }, body: obj, contentType: 'application/apply-patch+yaml', signal,
    });
  }

  async #json<T>(call: Call): Promise<T> {
    const res = await this.#send(call, true);
    try {
      return (await res.json()) as T;
    } catch (err) {
      throw new KubeApiError(call.op, 0, `reading response: ${describe(err)}`, { cause: err });
    }
  }

  async #send(call: Call, timeout: boolean) {
    const url = new URL(this.#cfg.server + call.path);
    for (const [k, v] of Object.entries(call.query ?? {})) if (v !== undefined && v !== '') url.searchParams.set(k, String(v));
    const signals = [call.signal, timeout ? AbortSignal.timeout(this.#cfg.requestTimeoutMs ?? 30_000) : undefined].filter((s) => s !== undefined);
    const headers: Record<string, string> = { Accept: 'application/json', ...(await this.#cfg.headers()) };
    if (call.body !== undefined) headers['Content-Type'] = call.contentType ?? 'application/json';
    let res;
    try {
      res = await fetch(url, {
        method: call.method, headers, signal: signals.length ? AbortSignal.any(signals) : null,
        body: call.body === undefined ? null : JSON.stringify(call.body),
        ...(this.#cfg.dispatcher ? { dispatcher: this.#cfg.dispatcher } : {}),
      });
    } catch (err) {
      if (call.signal?.aborted) throw err;
      this.reachability.failed();
      throw new KubeApiError(call.op, 0, describe(err), { cause: err });
    }
    if (res.status < 500 && res.status !== 429) this.reachability.answered();
    if (res.ok) return res;
    const text = await res.text().catch(() => '');
    let status: StatusObject = {};
    try { status = JSON.parse(text) as StatusObject; } catch { /* not a Status body */ }
    const retryAfter = parseRetryAfter(res.headers.get('retry-after')) ?? status.details?.retryAfterSeconds;
    throw new KubeApiError(call.op, res.status, status.message ?? (text.slice(0, 200) || res.statusText), {
      ...(status.reason ? { reason: status.reason } : {}),
      ...(retryAfter !== undefined ? { retryAfterSeconds: retryAfter } : {}),
    });
  }
}

function parseEvent(op: string, line: string): WatchEvent {
  try {
    const e = JSON.parse(line) as WatchEvent;
    if (typeof e?.type === 'string' && e.object && typeof e.object === 'object') return e;
  } catch { /* fall through */ }
  throw new KubeApiError(op, 0, `malformed watch event: ${line.slice(0, 120)}`);
}

function ref(namespace: string | undefined, name: string): string {
  return namespace ? `${namespace}/${name}` : name;
}

function describe(err: unknown): string {
  const e = err as { message?: string; cause?: { code?: string; message?: string } };
  return [e?.message, e?.cause?.code ?? e?.cause?.message].filter(Boolean).join(': ') || String(err);
}
