// The benchmark's real servers, in a process of their own (their CPU is not the agent's): PORTS
// TCP listeners on 0.0.0.0 (every 127.x.y.z reaches them) that accept and close, and as many HTTP
// listeners answering 200. Prints "ready" once all listen.
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';

const [tcpBase, httpBase, count] = process.argv.slice(2).map(Number) as [number, number, number];
const listening: Array<Promise<void>> = [];
for (let i = 0; i < count; i++) {
  const t = createServer((c) => c.destroy());
  listening.push(new Promise((r) => t.listen(tcpBase + i, '0.0.0.0', () => r())));
  const h = createHttpServer((_req, res) => { res.statusCode = 200; res.end('ok'); });
  h.keepAliveTimeout = 1;
  listening.push(new Promise((r) => h.listen(httpBase + i, '0.0.0.0', () => r())));
}
await Promise.all(listening);
console.log('ready');
