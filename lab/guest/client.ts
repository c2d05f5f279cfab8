// Traffic client, started by traffic.ts inside the client namespace: opens `count` TCP connections
// (or sends `count` UDP datagrams, each from a fresh socket/port) to host:port, at most
// `concurrency` at a time, and prints one JSON line: {byId, errors, replies, firstError?}.
// argv[2]: JSON ClientConfig (see traffic.ts).
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';

interface Config { proto: 'tcp' | 'udp'; host: string; port: number; count: number; concurrency: number; timeoutMs: number; bind?: string }
interface Reply { id: string; proto: string; peer: string; local: string }

const cfg = JSON.parse(process.argv[2] ?? '{}') as Config;

function tcpOnce(): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: cfg.host, port: cfg.port, localAddress: cfg.bind });
    let data = '';
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`tcp ${cfg.host}:${cfg.port} timed out`)); }, cfg.timeoutMs);
    sock.setEncoding('utf8');
    sock.on('data', (d) => { data += d; });
    sock.on('error', (e) => { clearTimeout(timer); reject(e); });
    sock.on('end', () => {
      clearTimeout(timer);
      sock.destroy();
      try { resolve(JSON.parse(data) as Reply); } catch { reject(new Error(`tcp: bad reply ${JSON.stringify(data)}`)); }
    });
  });
}

function udpOnce(): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const sock = createSocket('udp4');
    const done = (fn: () => void) => { clearTimeout(timer); sock.close(); fn(); };
    const timer = setTimeout(() => done(() => reject(new Error(`udp ${cfg.host}:${cfg.port} timed out`))), cfg.timeoutMs);
    sock.on('error', (e) => done(() => reject(e)));
    sock.on('message', (msg) => done(() => {
      try { resolve(JSON.parse(msg.toString()) as Reply); } catch { reject(new Error(`udp: bad reply ${JSON.stringify(msg.toString())}`)); }
    }));
    sock.bind(0, cfg.bind, () => sock.send('hello', cfg.port, cfg.host));
  });
}

const replies: Reply[] = [];
const byId: Record<string, number> = {};
let errors = 0;
let firstError: string | undefined;
let next = 0;
async function worker(): Promise<void> {
  while (next < cfg.count) {
    next += 1;
    try {
      const r = await (cfg.proto === 'udp' ? udpOnce() : tcpOnce());
      replies.push(r);
      byId[r.id] = (byId[r.id] ?? 0) + 1;
    } catch (err) {
      errors += 1;
      firstError ??= (err as Error).message;
    }
  }
}
await Promise.all(Array.from({ length: Math.max(1, cfg.concurrency) }, worker));
process.stdout.write(JSON.stringify({ byId, errors, firstError, replies }) + '\n');
