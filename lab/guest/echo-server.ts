// Identity server, started by traffic.ts inside a namespace: every TCP connection and every UDP
// datagram is answered with one JSON line {id, proto, peer, local} and (TCP) closed. `peer` is the
// source address the server saw (the client's, or the director's for SNAT); `local` is the address
// it was reached at (the VIP under DR/TUN, its own address under NAT).
// argv[2]: JSON {"id": "rs1", "tcp": [80], "udp": [53], "bind": ["0.0.0.0"]}. Prints READY when listening.
//
// UDP caveat: a socket bound to 0.0.0.0 cannot tell which local address a datagram arrived at
// (Node has no IP_PKTINFO) and the kernel picks the reply's source by route, which is wrong under
// DR/TUN. For those, pass every address to answer on in `bind` (e.g. the RIP and the VIP).
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';

interface Config { id: string; tcp?: number[]; udp?: number[]; bind?: string[] }
const cfg = JSON.parse(process.argv[2] ?? '{}') as Config;
if (!cfg.id) throw new Error('echo-server: config needs an id');
const binds = cfg.bind?.length ? cfg.bind : ['0.0.0.0'];

const pending: Array<Promise<void>> = [];
for (const port of cfg.tcp ?? []) {
  for (const host of binds) {
    const server = createServer((sock) => {
      const reply = { id: cfg.id, proto: 'tcp', peer: `${sock.remoteAddress}:${sock.remotePort}`, local: `${sock.localAddress}:${sock.localPort}` };
      sock.on('error', () => {});
      sock.end(JSON.stringify(reply) + '\n');
    });
    pending.push(new Promise((ok, fail) => { server.once('error', fail); server.listen({ port, host, backlog: 512 }, ok); }));
  }
}
for (const port of cfg.udp ?? []) {
  for (const host of binds) {
    const sock = createSocket('udp4');
    sock.on('message', (_msg, rinfo) => {
      const reply = { id: cfg.id, proto: 'udp', peer: `${rinfo.address}:${rinfo.port}`, local: `${host}:${port}` };
      sock.send(JSON.stringify(reply) + '\n', rinfo.port, rinfo.address);
    });
    pending.push(new Promise((ok, fail) => { sock.once('error', fail); sock.bind(port, host, ok); }));
  }
}
await Promise.all(pending);
process.stdout.write('READY\n');
