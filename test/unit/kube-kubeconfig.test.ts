// kube/kubeconfig.ts: the agent and the controller find the API server and their credentials
// without @kubernetes/client-node. Checked against client-node's own reading of the same files
// (what both processes used before), and the one case still handed to it (exec plugins).
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build, type Metafile } from 'esbuild';
import { KubeConfig } from '@kubernetes/client-node';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { inClusterCredentials, kubeconfigCredentials, KubeconfigError, TOKEN_REREAD_MS, type Credentials } from '../../kube/kubeconfig.ts';
import { credentialsFromKubeConfig, loadRestConfig } from '../../kube/rest.ts';
import { bundleOptions } from '../../scripts/build.ts';

const test = suite('kube: kubeconfig and in-cluster credentials');
let dir = '';
test.before.each(() => { dir = mkdtempSync(join(tmpdir(), 'kubeconfig-test-')); });
test.after.each(() => rmSync(dir, { recursive: true, force: true }));

const b64 = (s: string) => Buffer.from(s).toString('base64');
function file(name: string, text: string): string {
  const p = join(dir, name);
  mkdirSync(join(p, '..'), { recursive: true });
  writeFileSync(p, text);
  return p;
}
/** A kubeconfig in YAML from plain objects (JSON is YAML). */
function kubeconfig(name: string, cluster: Record<string, unknown>, user: Record<string, unknown>, extra: Record<string, unknown> = {}): string {
  return file(name, JSON.stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': 'ctx',
    clusters: [{ name: 'c', cluster }], users: [{ name: 'u', user }], contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u' } }],
    ...extra,
  }));
}
const creds = (c: Credentials | { plugin: string }): Credentials => {
  if (!('server' in c)) throw new Error(`expected credentials, got plugin ${c.plugin}`);
  return c;
};
const throwsNaming = (fn: () => unknown, ...parts: string[]) => {
  try { fn(); } catch (err) {
    assert.instance(err, KubeconfigError);
    for (const p of parts) assert.ok((err as Error).message.includes(p), `"${(err as Error).message}" does not name ${p}`);
    return;
  }
  assert.unreachable('no error');
};

test('in-cluster: the service host and port, the CA, and the token as a bearer header', async () => {
  file('sa/token', 'tok-1\n');
  file('sa/ca.crt', 'CA PEM');
  const c = inClusterCredentials({ env: { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, serviceAccountDir: join(dir, 'sa') });
  assert.is(c.server, 'https://10.96.0.1:443');
  assert.is(c.ca?.toString(), 'CA PEM');
  assert.equal(await c.headers(), { Authorization: 'Bearer tok-1' });
  const v6 = inClusterCredentials({ env: { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '6443' }, serviceAccountDir: join(dir, 'sa') });
  assert.is(v6.server, 'https://[fd00::1]:6443');
});

test('in-cluster: a rotated token is read again after a minute; a failed re-read keeps the last one', async () => {
  const token = file('sa/token', 'old');
  file('sa/ca.crt', 'CA');
  let now = 1_000_000;
  const c = inClusterCredentials({ env: { KUBERNETES_SERVICE_HOST: 'h', KUBERNETES_SERVICE_PORT: '443' }, serviceAccountDir: join(dir, 'sa'), now: () => now });
  writeFileSync(token, 'new');
  now += TOKEN_REREAD_MS;
  assert.equal(await c.headers(), { Authorization: 'Bearer old' }, 'not yet a minute old');
  now += 1;
  assert.equal(await c.headers(), { Authorization: 'Bearer new' });
  rmSync(token);
  now += TOKEN_REREAD_MS + 1;
  assert.equal(await c.headers(), { Authorization: 'Bearer new' });
});

test('in-cluster: missing environment or files fail at start, naming what is missing', () => {
  throwsNaming(() => inClusterCredentials({ env: {}, serviceAccountDir: dir }), 'KUBERNETES_SERVICE_HOST', 'KUBECONFIG');
  throwsNaming(() => inClusterCredentials({ env: { KUBERNETES_SERVICE_HOST: 'h', KUBERNETES_SERVICE_PORT: '443' }, serviceAccountDir: dir }), join(dir, 'token'));
  file('token', 't');
  throwsNaming(() => inClusterCredentials({ env: { KUBERNETES_SERVICE_HOST: 'h', KUBERNETES_SERVICE_PORT: '443' }, serviceAccountDir: dir }), join(dir, 'ca.crt'));
});

/** client-node's reading of the same file: what the agent and the controller used before. */
async function clientNode(path: string): Promise<Credentials> {
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  return credentialsFromKubeConfig(kc);
}
async function same(path: string) {
  const [ours, theirs] = [creds(kubeconfigCredentials({ env: { KUBECONFIG: path } })), await clientNode(path)];
  const view = async (c: Credentials) => ({
    server: c.server.replace(/\/+$/, ''), ca: c.ca?.toString(), cert: c.cert?.toString(), key: c.key?.toString(),
    rejectUnauthorized: c.rejectUnauthorized ?? true, servername: c.servername, headers: await c.headers(),
  });
  assert.equal(await view(ours), await view(theirs), path);
  return ours;
}

test('kubeconfig: reads as client-node does: inline data, files relative to the kubeconfig, tokens, basic auth, TLS options', async () => {
  const inline = await same(kubeconfig('inline.yaml',
    { server: 'https://api.example:6443/', 'certificate-authority-data': b64('CA'), 'tls-server-name': 'kubernetes' },
    { 'client-certificate-data': b64('CERT'), 'client-key-data': b64('KEY') }));
  assert.is(inline.cert?.toString(), 'CERT');
  assert.is(inline.servername, 'kubernetes');
  file('sub/pki/ca.crt', 'CA FILE');
  file('sub/pki/me.crt', 'CERT FILE');
  file('sub/pki/me.key', 'KEY FILE');
  const files = await same(kubeconfig('sub/files.yaml',
    { server: 'https://10.0.0.1:6443', 'certificate-authority': 'pki/ca.crt' },
    { 'client-certificate': 'pki/me.crt', 'client-key': join(dir, 'sub/pki/me.key') }));
  assert.is(files.ca?.toString(), 'CA FILE');
  const token = await same(kubeconfig('token.yaml', { server: 'https://h', 'insecure-skip-tls-verify': true }, { token: 'abc', as: 'someone' }));
  assert.equal(await token.headers(), { Authorization: 'Bearer abc', 'Impersonate-User': 'someone' });
  assert.is(token.rejectUnauthorized, false);
  const basic = await same(kubeconfig('basic.yaml', { server: 'https://h' }, { username: 'admin', password: 'pw' }));
  assert.equal(await basic.headers(), { Authorization: `Basic ${b64('admin:pw')}` });
});

test('kubeconfig: tokenFile (relative to the kubeconfig) is read at start and re-read after a minute', async () => {
  file('t/token', 'one');
  let now = 0;
  const c = creds(kubeconfigCredentials({ env: { KUBECONFIG: kubeconfig('t/kc.yaml', { server: 'https://h' }, { tokenFile: 'token' }) }, now: () => now }));
  writeFileSync(join(dir, 't/token'), 'two');
  assert.equal(await c.headers(), { Authorization: 'Bearer one' });
  now += TOKEN_REREAD_MS + 1;
  assert.equal(await c.headers(), { Authorization: 'Bearer two' });
});

test('kubeconfig: several files merge as kubectl merges them (the first to set a name or current-context wins)', () => {
  const first = file('a.yaml', JSON.stringify({ 'current-context': 'one', clusters: [{ name: 'c', cluster: { server: 'https://first' } }], users: [{ name: 'u', user: { token: 'first' } }] }));
  const second = file('b.yaml', JSON.stringify({
    'current-context': 'two',
    clusters: [{ name: 'c', cluster: { server: 'https://second' } }],
    contexts: [{ name: 'one', context: { cluster: 'c', user: 'u' } }, { name: 'two', context: { cluster: 'c', user: 'u' } }],
  }));
  const c = creds(kubeconfigCredentials({ env: { KUBECONFIG: `${first}:${second}` } }));
  assert.is(c.server, 'https://first');
  assert.is(c.source, `${first}:${second}`);
});

test('kubeconfig: plugins go to client-node; fields this reader does not implement are refused, not ignored', () => {
  const exec = kubeconfig('exec.yaml', { server: 'https://h' }, { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'true' } });
  assert.equal(kubeconfigCredentials({ env: { KUBECONFIG: exec } }), { plugin: 'exec', files: [exec] });
  const ap = kubeconfig('ap.yaml', { server: 'https://h' }, { 'auth-provider': { name: 'oidc', config: {} } });
  assert.equal(kubeconfigCredentials({ env: { KUBECONFIG: ap } }), { plugin: 'auth-provider', files: [ap] });
  const groups = kubeconfig('groups.yaml', { server: 'https://h' }, { token: 't', 'as-groups': ['g'] });
  throwsNaming(() => kubeconfigCredentials({ env: { KUBECONFIG: groups } }), 'as-groups', groups);
});

test('kubeconfig: a broken file fails at start, naming the file and the field', () => {
  const kc = (name: string, doc: unknown) => ({ env: { KUBECONFIG: file(name, JSON.stringify(doc)) } });
  throwsNaming(() => kubeconfigCredentials(kc('none.yaml', { clusters: [] })), 'current-context is not set');
  throwsNaming(() => kubeconfigCredentials(kc('noctx.yaml', { 'current-context': 'x' })), '"x"', 'contexts[].name');
  throwsNaming(() => kubeconfigCredentials(kc('nocl.yaml', { 'current-context': 'x', contexts: [{ name: 'x', context: { cluster: 'gone', user: 'u' } }] })), 'cluster "gone"');
  throwsNaming(() => kubeconfigCredentials(kc('noserver.yaml', { 'current-context': 'x', clusters: [{ name: 'c', cluster: {} }], contexts: [{ name: 'x', context: { cluster: 'c' } }] })), 'server is missing');
  throwsNaming(() => kubeconfigCredentials(kc('noname.yaml', { users: [{ user: {} }] })), 'users[0].name');
  throwsNaming(() => kubeconfigCredentials(kc('cafile.yaml', { 'current-context': 'x', clusters: [{ name: 'c', cluster: { server: 'https://h', 'certificate-authority': 'missing.crt' } }], contexts: [{ name: 'x', context: { cluster: 'c' } }] })), 'certificate-authority', join(dir, 'missing.crt'));
  throwsNaming(() => kubeconfigCredentials({ env: {}, home: dir }), 'KUBECONFIG is unset');
});

test('an exec plugin user still works: loadRestConfig hands it to client-node, which runs the plugin', async () => {
  const script = file('plugin.sh', `#!/bin/sh\necho '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"from-plugin"}}'\n`);
  const path = kubeconfig('exec.yaml', { server: 'https://h:6443' }, { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'sh', args: [script], interactiveMode: 'Never' } });
  const saved = process.env.KUBECONFIG;
  process.env.KUBECONFIG = path;
  try {
    const cfg = await loadRestConfig('kubeconfig');
    assert.is(cfg.server, 'https://h:6443');
    assert.equal(await cfg.headers(), { Authorization: 'Bearer from-plugin' });
  } finally {
    if (saved === undefined) delete process.env.KUBECONFIG; else process.env.KUBECONFIG = saved;
  }
});

test('the bundles reach client-node only through loadRestConfig\'s dynamic import', async () => {
  const { metafile } = await build({ ...bundleOptions(join(dir, 'out')), write: false, sourcemap: false });
  const outputs = Object.entries(metafile.outputs).filter(([f]) => f.endsWith('.mjs')) as Array<[string, Metafile['outputs'][string]]>;
  const holds = (o: Metafile['outputs'][string], test: (input: string) => boolean) => Object.keys(o.inputs).some(test);
  const isClientNode = (i: string) => i.includes('node_modules/@kubernetes/client-node/');
  const clientNode = new Set(outputs.filter(([, o]) => holds(o, isClientNode)).map(([f]) => f));
  assert.ok(clientNode.size > 0, 'client-node is still bundled, for plugin users');
  const rest = outputs.filter(([, o]) => holds(o, (i) => i === 'kube/rest.ts')).map(([f]) => f);
  assert.is(rest.length, 1);
  for (const [f, o] of outputs) {
    if (clientNode.has(f)) continue;
    for (const i of o.imports) {
      if (!clientNode.has(i.path)) continue;
      assert.ok(f === rest[0] && i.kind === 'dynamic-import', `${f} imports client-node's ${i.path} (${i.kind})`);
    }
  }
});

test.run();
