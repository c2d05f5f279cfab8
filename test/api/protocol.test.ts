// The client speaks HTTP/1.1 to the apiserver, never HTTP/2, although both ends could: a TLS
// server that offers h2 by ALPN (as kube-apiserver does) and a RestKubeApi built from a kubeconfig
// the way the controller and the agent build theirs. HTTP/2 through Node's nghttp2 livelocked the
// controller when it stopped with its watches cancelled at once (kube/rest.ts says what was seen).
// Also the shape of that stop here: nine watches streaming events, all cancelled together, and
// the requests after it still answered, each watch on a connection of its own.
import { KubeConfig } from '@kubernetes/client-node';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createSecureServer, type Http2SecureServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { makePki } from '../../lab/apiserver/certs.ts';
import { restConfigFromKubeConfig, RestKubeApi } from '../../kube/rest.ts';
import { LEASES, VIRTUAL_SERVERS, type KubeObject } from '../../kube/types.ts';
import { until } from '../lib/apiserver-client.ts';
import { gated } from '../lib/prereq.ts';

const hasOpenssl = spawnSync('sh', ['-c', 'command -v openssl'], { stdio: 'ignore' }).status === 0;
const test = gated(suite('api: protocol'), hasOpenssl ? undefined : 'openssl not found (scripts/provision.sh installs it)');

interface Seen { version: string; alpn: string | false | undefined; socket: unknown; watch: boolean }

let dir = '';
let server: Http2SecureServer;
let api: RestKubeApi;
const seen: Seen[] = [];
const streaming = new Set<Http2ServerResponse>();
const connections = new Set<{ destroy(): void }>();

function handle(req: Http2ServerRequest, res: Http2ServerResponse): void {
  const url = new URL(req.url, 'https://x');
  const watch = url.searchParams.get('watch') === 'true';
  // HTTP/1.1 requests come through the compatibility API too; their socket is the TLS socket.
  const socket = req.httpVersion === '2.0' ? req.stream.session : req.socket;
  seen.push({ version: req.httpVersion, alpn: (req.socket as { alpnProtocol?: string | false }).alpnProtocol, socket, watch });
  if (!watch) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(url.pathname.includes('/leases/')
      ? { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'l', namespace: 'ns', resourceVersion: '1' } }
      : { items: [], metadata: { resourceVersion: '1' } }));
    return;
  }
  // An open watch that keeps sending events, as the apiserver does during a drain.
  res.writeHead(200, { 'content-type': 'application/json' });
  streaming.add(res);
  let rv = 1;
  const tick = setInterval(() => {
    rv++;
    res.write(`${JSON.stringify({ type: 'MODIFIED', object: { apiVersion: 'lvs.dev/v1alpha1', kind: 'VirtualServer', metadata: { name: 'a', namespace: 'ns', resourceVersion: String(rv) }, spec: { pad: 'x'.repeat(2000) } } })}\n`);
  }, 2);
  const done = () => { clearInterval(tick); streaming.delete(res); };
  res.on('close', done);
  res.on('error', done);
}

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'lvs-protocol-'));
  const pki = await makePki(dir);
  server = createSecureServer({ key: readFileSync(pki.serving.key), cert: readFileSync(pki.serving.cert), allowHTTP1: true }, handle);
  server.on('secureConnection', (s: { destroy(): void }) => connections.add(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, caData: readFileSync(pki.serverCa.cert).toString('base64') }],
    users: [{ name: 'u', token: 'token-123' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  api = new RestKubeApi(await restConfigFromKubeConfig(kc));
});

test.after(async () => {
  for (const c of connections) c.destroy();
  await new Promise<void>((r) => server.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

test('requests go over HTTP/1.1 although the server offers h2', async () => {
  seen.length = 0;
  await api.list(VIRTUAL_SERVERS);
  await api.get<KubeObject>(LEASES, 'ns', 'l');
  assert.equal(seen.map((s) => s.version), ['1.1', '1.1']);
  assert.equal(seen.map((s) => s.alpn), ['http/1.1', 'http/1.1'], 'ALPN negotiated http/1.1');
});

test('nine watches receiving events, cancelled at once: the requests after them are answered, each watch had its own connection', async () => {
  seen.length = 0;
  const stop = new AbortController();
  let events = 0;
  const watches = Array.from({ length: 9 }, () => api.watch(VIRTUAL_SERVERS, { resourceVersion: '1' }, () => { events++; }, stop.signal));
  await until(async () => streaming.size === 9 && events >= 200, 'nine watches open and streaming', 10_000);
  assert.is(streaming.size, 9, 'nine watches open');
  stop.abort();
  await Promise.all(watches);
  const t0 = Date.now();
  const lease = await api.get<KubeObject>(LEASES, 'ns', 'l', AbortSignal.timeout(5000));
  assert.is(lease.metadata.name, 'l');
  await api.list(VIRTUAL_SERVERS, {}, AbortSignal.timeout(5000));
  assert.ok(Date.now() - t0 < 5000, `answered in ${Date.now() - t0} ms`);
  const watchSockets = new Set(seen.filter((s) => s.watch).map((s) => s.socket));
  assert.is(watchSockets.size, 9, 'one connection per watch (HTTP/2 would multiplex them on one session)');
  assert.ok(seen.every((s) => s.version === '1.1'));
});

test.run();
