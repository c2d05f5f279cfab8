// Where the API server is and how to prove who we are to it: the pod's service account, or the
// kubeconfig files named by KUBECONFIG. Read here, without @kubernetes/client-node: the agent and
// the controller loaded its 16 MB bundle chunk for nothing else, and that cost every process
// ~70 MB of RSS (natively: 41 -> 113 MB; 37 MB of it "external", the chunk's source held by V8
// as a two-byte string because of four non-Latin-1 characters) and seconds of start under
// emulation. A kubeconfig whose user authenticates through an exec plugin or an auth-provider
// (cloud logins, OIDC refresh) is the one case handed to client-node, loaded then by dynamic
// import: it implements those, and a wrong guess at them would lock the process out.
import { existsSync, readFileSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import { CORE_SCHEMA, load } from 'js-yaml';

/** What a request needs: the server, the TLS material, and the headers (asked per request). */
export interface Credentials {
  server: string;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  /** false only for a cluster with insecure-skip-tls-verify: true. */
  rejectUnauthorized?: boolean;
  servername?: string;
  /** Authorization (and Impersonate-User) headers; tokens read from files are re-read here. */
  headers(): Promise<Record<string, string>>;
  /** Where these came from, for logs and errors: "in-cluster" or the kubeconfig file(s). */
  source: string;
}

/** The user of the current context authenticates by a plugin: client-node's part (loadRestConfig in ./rest.ts). */
export interface PluginUser {
  plugin: 'exec' | 'auth-provider';
  files: string[];
}

export class KubeconfigError extends Error {}

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
/** client-go re-reads a token file once a minute; the kubelet rotates projected tokens long before they expire. */
export const TOKEN_REREAD_MS = 60_000;

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** The home directory, for ~/.kube/config when KUBECONFIG is unset. */
  home?: string;
  serviceAccountDir?: string;
  now?: () => number;
}

/** A token file's content, read now (a missing file fails at start, naming it) and again once a read is older than TOKEN_REREAD_MS. */
function fileToken(path: string, now: () => number, what: string): () => string {
  let token = '';
  let readAt = -Infinity;
  const read = () => {
    let text: string;
    try { text = readFileSync(path, 'utf8'); } catch (err) { throw new KubeconfigError(`${what}: cannot read ${path}: ${(err as Error).message}`); }
    token = text.trim();
    readAt = now();
  };
  read();
  return () => {
    if (now() - readAt > TOKEN_REREAD_MS) {
      // A failed re-read keeps the last token: the file is replaced by rename, never left absent
      // for long, and the API server will say 401 if the old token is really dead.
      try { read(); } catch { readAt = now(); }
    }
    return token;
  };
}

/** The pod's service account, as client-go's rest.InClusterConfig reads it (always https). */
export function inClusterCredentials(opts: LoadOptions = {}): Credentials {
  const env = opts.env ?? process.env;
  const dir = opts.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) throw new KubeconfigError('in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set (the kubelet sets them in every pod); outside a pod set KUBECONFIG');
  const token = fileToken(join(dir, 'token'), opts.now ?? Date.now, 'in-cluster');
  let ca: Buffer;
  try { ca = readFileSync(join(dir, 'ca.crt')); } catch (err) { throw new KubeconfigError(`in-cluster: cannot read ${join(dir, 'ca.crt')}: ${(err as Error).message}`); }
  return {
    server: `https://${isIPv6(host) ? `[${host}]` : host}:${port}`,
    ca,
    headers: async () => ({ Authorization: `Bearer ${token()}` }),
    source: 'in-cluster',
  };
}

type Named<K extends string> = { name?: unknown } & { [k in K]?: Record<string, unknown> };
interface Merged {
  currentContext?: string;
  clusters: Map<string, { fields: Record<string, unknown>; dir: string; file: string }>;
  users: Map<string, { fields: Record<string, unknown>; dir: string; file: string }>;
  contexts: Map<string, { fields: Record<string, unknown>; file: string }>;
}

/** The files KUBECONFIG names (path-list, empty entries skipped), else ~/.kube/config if it exists. */
export function kubeconfigFiles(opts: LoadOptions = {}): string[] {
  const env = opts.env ?? process.env;
  const listed = (env.KUBECONFIG ?? '').split(delimiter).filter((f) => f.length > 0);
  if (listed.length > 0) return listed;
  const home = join(opts.home ?? homedir(), '.kube', 'config');
  if (existsSync(home)) return [home];
  throw new KubeconfigError('no kubeconfig: KUBECONFIG is unset and ~/.kube/config does not exist');
}

/** Reads and merges the files as kubectl does: the first file to set current-context or a name wins. */
function mergeFiles(files: readonly string[]): Merged {
  const m: Merged = { clusters: new Map(), users: new Map(), contexts: new Map() };
  for (const file of files) {
    let doc: unknown;
    try { doc = load(readFileSync(file, 'utf8'), { schema: CORE_SCHEMA }); } catch (err) { throw new KubeconfigError(`kubeconfig ${file}: ${(err as Error).message}`); }
    if (doc === null || doc === undefined) continue;
    if (typeof doc !== 'object' || Array.isArray(doc)) throw new KubeconfigError(`kubeconfig ${file}: not a mapping`);
    const d = doc as Record<string, unknown>;
    const cc = d['current-context'];
    if (m.currentContext === undefined && typeof cc === 'string' && cc !== '') m.currentContext = cc;
    const dir = dirname(file);
    for (const [list, key, into] of [['clusters', 'cluster', m.clusters], ['users', 'user', m.users], ['contexts', 'context', m.contexts]] as const) {
      const items = d[list] ?? [];
      if (!Array.isArray(items)) throw new KubeconfigError(`kubeconfig ${file}: ${list} must be a list`);
      items.forEach((item: Named<typeof key>, i: number) => {
        if (typeof item?.name !== 'string' || item.name === '') throw new KubeconfigError(`kubeconfig ${file}: ${list}[${i}].name is missing`);
        if (!into.has(item.name)) (into as Map<string, unknown>).set(item.name, { fields: item[key] ?? {}, dir, file });
      });
    }
  }
  return m;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/** A *-data field (base64) or a file field (relative to its kubeconfig's folder), data first, as client-go. */
function material(fields: Record<string, unknown>, name: string, dir: string, file: string): Buffer | undefined {
  const data = str(fields[`${name}-data`]);
  if (data) return Buffer.from(data, 'base64');
  const path = str(fields[name]);
  if (!path) return undefined;
  const abs = isAbsolute(path) ? path : join(dir, path);
  try { return readFileSync(abs); } catch (err) { throw new KubeconfigError(`kubeconfig ${file}: ${name}: cannot read ${abs}: ${(err as Error).message}`); }
}

/** User fields this reader implements; any other set field (as-groups, ...) is refused at start, naming it, rather than ignored. */
const USER_FIELDS = new Set(['token', 'tokenFile', 'client-certificate', 'client-certificate-data', 'client-key', 'client-key-data', 'username', 'password', 'as']);

/** The current context's server and user from KUBECONFIG (or ~/.kube/config); a plugin user is returned as such. */
export function kubeconfigCredentials(opts: LoadOptions = {}): Credentials | PluginUser {
  const files = kubeconfigFiles(opts);
  const source = files.join(delimiter);
  const m = mergeFiles(files);
  if (!m.currentContext) throw new KubeconfigError(`kubeconfig ${source}: current-context is not set`);
  const ctx = m.contexts.get(m.currentContext);
  if (!ctx) throw new KubeconfigError(`kubeconfig ${source}: current-context "${m.currentContext}" is not among contexts[].name`);
  const clusterName = str(ctx.fields.cluster);
  const cluster = clusterName === undefined ? undefined : m.clusters.get(clusterName);
  if (!cluster) throw new KubeconfigError(`kubeconfig ${ctx.file}: context "${m.currentContext}": cluster "${clusterName ?? ''}" is not among clusters[].name`);
  const server = str(cluster.fields.server);
  if (!server) throw new KubeconfigError(`kubeconfig ${cluster.file}: clusters "${clusterName}": server is missing`);
  const userName = str(ctx.fields.user);
  const user = userName === undefined ? undefined : m.users.get(userName);
  if (userName !== undefined && !user) throw new KubeconfigError(`kubeconfig ${ctx.file}: context "${m.currentContext}": user "${userName}" is not among users[].name`);
  const u = user?.fields ?? {};
  if (u.exec) return { plugin: 'exec', files };
  if (u['auth-provider']) return { plugin: 'auth-provider', files };
  const unknown = Object.keys(u).filter((k) => !USER_FIELDS.has(k) && u[k] !== undefined && u[k] !== null && u[k] !== '');
  if (unknown.length > 0) throw new KubeconfigError(`kubeconfig ${user!.file}: user "${userName}": ${unknown.join(', ')} not supported (use a token, a token file or a client certificate)`);
  const c = cluster.fields;
  const creds: Credentials = {
    server: server.replace(/\/+$/, ''),
    ...opt('ca', material(c, 'certificate-authority', cluster.dir, cluster.file)),
    ...(user ? opt('cert', material(u, 'client-certificate', user.dir, user.file)) : {}),
    ...(user ? opt('key', material(u, 'client-key', user.dir, user.file)) : {}),
    ...(c['insecure-skip-tls-verify'] === true ? { rejectUnauthorized: false } : {}),
    ...opt('servername', str(c['tls-server-name'])),
    headers: userHeaders(u, user?.dir ?? '', user?.file ?? source, opts.now ?? Date.now),
    source,
  };
  return creds;
}

function opt<K extends string, V>(k: K, v: V | undefined): { [k in K]?: V } {
  return (v === undefined ? {} : { [k]: v }) as { [k in K]?: V };
}

function userHeaders(u: Record<string, unknown>, dir: string, file: string, now: () => number): () => Promise<Record<string, string>> {
  const fixed: Record<string, string> = {};
  const as = str(u.as);
  if (as) fixed['Impersonate-User'] = as;
  const token = str(u.token);
  const tokenFile = str(u.tokenFile);
  const username = str(u.username);
  if (token) fixed.Authorization = `Bearer ${token}`;
  else if (username !== undefined) fixed.Authorization = `Basic ${Buffer.from(`${username}:${str(u.password) ?? ''}`).toString('base64')}`;
  else if (tokenFile) {
    const read = fileToken(isAbsolute(tokenFile) ? tokenFile : join(dir, tokenFile), now, `kubeconfig ${file}: tokenFile`);
    return async () => ({ ...fixed, Authorization: `Bearer ${read()}` });
  }
  return async () => ({ ...fixed });
}
