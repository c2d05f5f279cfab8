// A pod's workload, started by traffic.ts inside a pod's network namespace. Every TCP connection
// gets one JSON line {id, peer, local} at once (peer: the source the pod saw, the client's under
// every forwarding method here; local: the address it was reached at, the VIP under DR/TUN; IPv4
// and IPv6 alike, each on its own socket), then
// every line the client sends comes back as {id, echo}, until the client closes. So a connection
// can be held open across changes and proven alive later by one more round trip.
// argv[2]: JSON {"id": "web-1", "tcp": [8080]}. Prints READY once listening.
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';

interface Config { id: string; tcp: number[] }
const cfg = JSON.parse(process.argv[2] ?? '{}') as Config;
if (!cfg.id || !cfg.tcp?.length) throw new Error('pod-server: config needs an id and tcp ports');

// One listener per family: an IPv6 socket taking IPv4 too would report IPv4 peers as
// "::ffff:a.b.c.d", so IPv4 keeps its own socket and the IPv6 one is ipv6Only.
const listeners = cfg.tcp.flatMap((port) => [{ port, host: '0.0.0.0' }, { port, host: '::', ipv6Only: true }]);
await Promise.all(listeners.map((at) => new Promise<void>((ok, fail) => {
  const server = createServer((sock) => {
    sock.on('error', () => {});
    sock.write(JSON.stringify({ id: cfg.id, peer: `${sock.remoteAddress}:${sock.remotePort}`, local: `${sock.localAddress}:${sock.localPort}` }) + '\n');
    // A health check connects and resets (RST: it does not read the greeting): readline re-emits
    // the socket's ECONNRESET, which would end this process without a listener.
    createInterface(sock).on('line', (line) => { if (!sock.destroyed) sock.write(JSON.stringify({ id: cfg.id, echo: line }) + '\n'); }).on('error', () => {});
    sock.on('end', () => sock.end());
  });
  server.once('error', fail);
  server.listen({ ...at, backlog: 512 }, ok);
})));
process.stdout.write('READY\n');
