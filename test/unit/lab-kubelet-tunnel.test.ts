// lab/cluster/kubelet-tunnel.ts: the cluster tier's apiserver reaches the node's kubelet only
// through this CONNECT proxy, and only the kubelet's address and port.
import { request } from 'node:http';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { egressSelectorConfig, KUBELET_PORT, startKubeletTunnel, type KubeletTunnel } from '../../lab/cluster/kubelet-tunnel.ts';

const test = suite('lab: kubelet tunnel (apiserver egress)');
const NODE = '10.0.2.15';
let dir = '', socket = '', kubelet: Server, tunnel: KubeletTunnel;
const logged: string[] = [];

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tunnel-test-'));
  socket = join(dir, 'egress.sock');
  // The "kubelet" behind qemu's forward: says who it is, then echoes.
  kubelet = createServer((s) => { s.write('kubelet:'); s.pipe(s); });
  await new Promise<void>((r) => kubelet.listen(0, '127.0.0.1', r));
  tunnel = await startKubeletTunnel(socket, NODE, (kubelet.address() as AddressInfo).port, (m) => logged.push(m));
});

test.after(async () => {
  await tunnel.close();
  kubelet.close();
  rmSync(dir, { recursive: true, force: true });
});

/** CONNECT `target` through the tunnel, send `say`, return the status and what came back. */
function connectThrough(target: string, say: string): Promise<{ status: number; got: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, method: 'CONNECT', path: target });
    req.on('connect', (res, conn, head) => {
      if (res.statusCode !== 200) { conn.destroy(); resolve({ status: res.statusCode ?? 0, got: '' }); return; }
      // Bytes that came with the response (the kubelet's greeting, here) are the parser's `head`.
      let got = head.toString('utf8');
      conn.setEncoding('utf8').on('data', (c: string) => { got += c; if (got.length >= 'kubelet:'.length + say.length) { conn.destroy(); resolve({ status: 200, got }); } });
      conn.write(say);
    });
    req.on('error', reject);
    req.end();
  });
}

test('a CONNECT to the node\'s kubelet port is joined to the forwarded port, both ways', async () => {
  const r = await connectThrough(`${NODE}:${KUBELET_PORT}`, 'hello');
  assert.equal(r, { status: 200, got: 'kubelet:hello' });
  assert.is(tunnel.counts().joined, 1);
});

test('any other target is refused with 403 and never reaches the kubelet', async () => {
  for (const target of [`${NODE}:22`, `10.0.2.16:${KUBELET_PORT}`, `lvs-node-1:${KUBELET_PORT}`, `10.96.0.1:443`]) {
    const r = await connectThrough(target, 'x');
    assert.is(r.status, 403, target);
  }
  assert.is(tunnel.counts().refused, 4);
  assert.is(tunnel.counts().joined, 1);
  assert.ok(logged.some((l) => l.includes('refused CONNECT 10.96.0.1:443')), logged.join('\n'));
});

test('the egress configuration sends only the apiserver\'s "cluster" traffic to the socket', () => {
  const c = JSON.parse(egressSelectorConfig('/run/x.sock')) as { kind: string; egressSelections: Array<{ name: string; connection: unknown }> };
  assert.is(c.kind, 'EgressSelectorConfiguration');
  assert.equal(c.egressSelections, [{ name: 'cluster', connection: { proxyProtocol: 'HTTPConnect', transport: { uds: { udsName: '/run/x.sock' } } } }]);
});

test.run();
