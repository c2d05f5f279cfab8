// HTTP server of the health-check suite, started inside a real server's namespace: answers each
// path listed in `paths` with that status, every other path with 200 and its identity ("rs3", no newline),
// so client traffic shows which real server answered. With `hang` it accepts connections and
// reads requests but never answers (the check's timeout case). Prints READY when listening.
// argv[2]: JSON {"id": "rs3", "port": 8080, "paths": {"/healthz": 500}, "hang": false}.
import { createServer } from 'node:http';

interface Config { id: string; port: number; paths?: Record<string, number>; hang?: boolean }
const cfg = JSON.parse(process.argv[2] ?? '{}') as Config;
if (!cfg.id || !cfg.port) throw new Error('http-server: config needs an id and a port');

const server = createServer((req, res) => {
  if (cfg.hang) return; // never answered; the client gives up
  const status = cfg.paths?.[req.url ?? '/'] ?? 200;
  const body = status === 204 ? '' : cfg.id;
  res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), connection: 'close' });
  res.end(body);
});
server.on('clientError', (_err, sock) => sock.destroy());
await new Promise<void>((ok, fail) => { server.once('error', fail); server.listen({ port: cfg.port, host: '0.0.0.0', backlog: 512 }, ok); });
process.stdout.write('READY\n');
