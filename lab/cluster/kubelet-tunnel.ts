// The apiserver's way to the node's kubelet (kubectl logs, exec, port-forward, the node proxy).
// The node is a qemu guest on a user network with restrict=on: nothing reaches it from outside
// but qemu's explicit forwards. So, as clusters whose nodes the control plane cannot route to do
// (konnectivity), the apiserver's "cluster" egress goes through an HTTP CONNECT proxy: this one
// listens on a unix socket (the apiserver's --egress-selector-config-file names it), accepts a
// CONNECT to the node's InternalIP and kubelet port only, and joins it to the port qemu forwards
// from this host's loopback to that port in the guest. Everything else is refused (403): the
// apiserver has no other business in this cluster (the chart has no webhooks, no aggregated API).
import { createServer, type IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import { rmSync } from 'node:fs';

export const KUBELET_PORT = 10250;

export interface KubeletTunnel {
  /** how many CONNECTs were joined to the node, and how many refused */
  counts(): { joined: number; refused: number };
  close(): Promise<void>;
}

/** The EgressSelectorConfiguration sending the apiserver's "cluster" traffic through `socketPath`. */
export function egressSelectorConfig(socketPath: string): string {
  return JSON.stringify({
    apiVersion: 'apiserver.k8s.io/v1beta1',
    kind: 'EgressSelectorConfiguration',
    egressSelections: [{ name: 'cluster', connection: { proxyProtocol: 'HTTPConnect', transport: { uds: { udsName: socketPath } } } }],
  }, null, 2) + '\n';
}

/**
 * Serves CONNECT on `socketPath`: `${nodeIp}:${KUBELET_PORT}` is joined to 127.0.0.1:`forwardedPort`
 * (qemu's hostfwd into the guest); any other target gets 403.
 */
export async function startKubeletTunnel(socketPath: string, nodeIp: string, forwardedPort: number, log: (m: string) => void): Promise<KubeletTunnel> {
  let joined = 0, refused = 0;
  const open = new Set<Socket>();
  const server = createServer((_req, res) => { res.writeHead(405).end('CONNECT only\n'); });
  server.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
    open.add(client);
    client.on('close', () => open.delete(client));
    client.on('error', () => client.destroy());
    if (req.url !== `${nodeIp}:${KUBELET_PORT}`) {
      refused += 1;
      log(`kubelet tunnel: refused CONNECT ${req.url}`);
      client.end('HTTP/1.1 403 Forbidden\r\n\r\n');
      return;
    }
    const upstream = connect(forwardedPort, '127.0.0.1');
    open.add(upstream);
    let up = false;
    upstream.on('close', () => { open.delete(upstream); client.destroy(); });
    upstream.on('error', (e) => {
      if (!up) log(`kubelet tunnel: ${nodeIp}:${KUBELET_PORT} through 127.0.0.1:${forwardedPort}: ${e.message}`);
      if (!up && client.writable) client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
      upstream.destroy();
    });
    upstream.once('connect', () => {
      up = true;
      joined += 1;
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    client.on('close', () => upstream.destroy());
  });
  rmSync(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => { server.off('error', reject); resolve(); });
  });
  return {
    counts: () => ({ joined, refused }),
    close: () => new Promise((resolve) => {
      for (const s of open) s.destroy();
      server.close(() => resolve());
    }),
  };
}
