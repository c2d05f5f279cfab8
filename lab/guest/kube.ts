// The guest test driver's Kubernetes client: plain HTTPS (node:https, keep-alive) to the host's
// kube-apiserver through guestfwd, with the CA, client certificate and tls-server-name of a
// kubeconfig. Deliberately not @kubernetes/client-node: importing it costs 40-130 s inside the
// VM (TCG, thousands of files over 9p), the driver needs a handful of verbs. Errors carry the HTTP
// status and the apiserver's message (a 422 names the invalid field).
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { parse } from 'yaml';
import { resourcePath, type KubeObject, type ResourceType } from '../../kube/types.ts';

export class ApiError extends Error {
  readonly status: number;
  readonly reason: string | undefined;
  constructor(what: string, status: number, message: string, reason?: string) {
    super(`${what}: ${status ? `HTTP ${status}` : 'no response'}${reason ? ` ${reason}` : ''}: ${message}`);
    this.status = status;
    this.reason = reason;
  }
}

type Obj = KubeObject & Record<string, unknown>;

interface Kubeconfig {
  'current-context'?: string;
  contexts?: Array<{ name: string; context: { cluster: string; user: string } }>;
  clusters?: Array<{ name: string; cluster: { server: string; 'certificate-authority-data'?: string; 'tls-server-name'?: string } }>;
  users?: Array<{ name: string; user: { 'client-certificate-data'?: string; 'client-key-data'?: string } }>;
}

/** Server URL and TLS material of the current context; throws naming what is missing. */
export function loadKubeconfig(path: string): { server: string; ca: Buffer; cert: Buffer; key: Buffer; servername?: string } {
  const kc = parse(readFileSync(path, 'utf8')) as Kubeconfig;
  const ctx = kc.contexts?.find((c) => c.name === kc['current-context'])?.context;
  if (!ctx) throw new Error(`${path}: current-context ${kc['current-context']} not found`);
  const cluster = kc.clusters?.find((c) => c.name === ctx.cluster)?.cluster;
  const user = kc.users?.find((u) => u.name === ctx.user)?.user;
  const b64 = (v: string | undefined, what: string) => {
    if (!v) throw new Error(`${path}: ${what} is missing (this client reads inline *-data fields only)`);
    return Buffer.from(v, 'base64');
  };
  if (!cluster?.server) throw new Error(`${path}: cluster ${ctx.cluster} has no server`);
  return {
    server: cluster.server.replace(/\/+$/, ''),
    ca: b64(cluster['certificate-authority-data'], 'certificate-authority-data'),
    cert: b64(user?.['client-certificate-data'], 'client-certificate-data'),
    key: b64(user?.['client-key-data'], 'client-key-data'),
    ...(cluster['tls-server-name'] ? { servername: cluster['tls-server-name'] } : {}),
  };
}

export class Kube {
  readonly #server: URL;
  readonly #agent: Agent;
  readonly #servername: string | undefined;

  constructor(kubeconfigPath: string) {
    const c = loadKubeconfig(kubeconfigPath);
    this.#server = new URL(c.server);
    this.#servername = c.servername;
    this.#agent = new Agent({ keepAlive: true, ca: c.ca, cert: c.cert, key: c.key, ...(c.servername ? { servername: c.servername } : {}) });
  }

  /** Where and how a request goes: this API server, over the client-certificate agent. */
  #target(method: string, path: string, timeoutMs: number) {
    return {
      host: this.#server.hostname, port: this.#server.port, path, method, agent: this.#agent, timeout: timeoutMs,
      ...(this.#servername ? { servername: this.#servername } : {}),
    };
  }

  request<T = Obj>(method: string, path: string, body?: unknown, contentType = 'application/json', timeoutMs = 60_000, fresh = false): Promise<T> {
    const what = `${method} ${path}`;
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise<T>((resolve, reject) => {
      const req = request({
        ...this.#target(method, path, timeoutMs),
        headers: { Accept: 'application/json', ...(payload !== undefined ? { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(payload) } : {}) },
      }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => { text += c; });
        res.on('end', () => {
          const code = res.statusCode ?? 0;
          if (code >= 200 && code < 300) {
            try { resolve(JSON.parse(text) as T); } catch { reject(new ApiError(what, code, `not JSON: ${text.slice(0, 200)}`)); }
            return;
          }
          let status: { message?: string; reason?: string } = {};
          try { status = JSON.parse(text) as typeof status; } catch { /* not a Status */ }
          reject(new ApiError(what, code, status.message ?? text.slice(0, 300), status.reason));
        });
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', (err: NodeJS.ErrnoException) => {
        // A kept-alive connection the server closed just as this request went out on it: nothing
        // reached the server, so it is sent once more (Node's documented
        // pattern; a system-tier run on 2026-12-06 failed a POST with "socket hang up" this way).
        if (req.reusedSocket && err.code === 'ECONNRESET' && !fresh) {
          this.request<T>(method, path, body, contentType, timeoutMs, true).then(resolve, reject);
          return;
        }
        reject(new ApiError(what, 0, err.message));
      });
      req.end(payload);
    });
  }

  /** The API server's clock (its Date header, whole seconds) as epoch ms, and this clock when it answered. */
  serverClock(): Promise<{ server: number; local: number }> {
    return new Promise((resolve, reject) => {
      const req = request(this.#target('GET', '/version', 10_000), (res) => {
        const local = Date.now();
        res.resume();
        const server = Date.parse(String(res.headers.date));
        if (Number.isFinite(server)) resolve({ server, local }); else reject(new Error(`no Date header from GET /version (${res.statusCode})`));
      });
      req.on('timeout', () => req.destroy(new Error('GET /version: no answer within 10 s')));
      req.on('error', reject);
      req.end();
    });
  }

  get<T = Obj>(rt: ResourceType, ns: string | undefined, name: string): Promise<T> {
    return this.request<T>('GET', resourcePath(rt, ns, name));
  }

  async getOrUndefined<T = Obj>(rt: ResourceType, ns: string | undefined, name: string): Promise<T | undefined> {
    try { return await this.get<T>(rt, ns, name); } catch (err) { if (err instanceof ApiError && err.status === 404) return undefined; throw err; }
  }

  create<T = Obj>(rt: ResourceType, ns: string | undefined, obj: object): Promise<T> {
    return this.request<T>('POST', resourcePath(rt, ns), obj);
  }

  /** PUT; conditional on the object's metadata.resourceVersion. */
  replace<T = Obj>(rt: ResourceType, ns: string | undefined, obj: KubeObject): Promise<T> {
    return this.request<T>('PUT', resourcePath(rt, ns, obj.metadata.name), obj);
  }

  mergePatch<T = Obj>(rt: ResourceType, ns: string | undefined, name: string, patch: object, subresource?: string): Promise<T> {
    return this.request<T>('PATCH', resourcePath(rt, ns, name, subresource), patch, 'application/merge-patch+json');
  }

  close(): void { this.#agent.destroy(); }
}
