// The client outside the cluster, started once by traffic.ts inside the client namespace (a Node
// start costs seconds under TCG, so one process serves every request). Commands arrive as JSON
// lines on stdin and are answered as JSON lines with the same seq:
//   {seq, op: "burst", host, port, count, concurrency, timeoutMs} -> {seq, byId, errors, firstError?}
//        count short connections (connect, read the server's identity line, close)
//   {seq, op: "open", conn, host, port, timeoutMs}  -> {seq, id, peer, local}   and keeps it open
//   {seq, op: "send", conn, data, timeoutMs}         -> {seq, id, echo}          one round trip on it
//   {seq, op: "close", conn}                          -> {seq, closed: true}
// Failures answer {seq, error}.
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';

interface Cmd { seq: number; op: string; host?: string; port?: number; count?: number; concurrency?: number; timeoutMs?: number; conn?: string; data?: string }
interface Line { id: string; peer?: string; local?: string; echo?: string }

const reply = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');

/** A socket with a queue of received lines. */
function lined(sock: Socket) {
  const lines: string[] = [];
  const waiters: Array<(l: string | Error) => void> = [];
  let buf = '';
  let failed: Error | undefined;
  const push = (l: string | Error) => { const w = waiters.shift(); if (w) w(l); else if (typeof l === 'string') lines.push(l); };
  sock.setEncoding('utf8');
  sock.on('data', (d: string) => {
    buf += d;
    for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1)) push(buf.slice(0, i));
  });
  const fail = (e: Error) => { failed ??= e; while (waiters.length) waiters.shift()!(e); };
  sock.on('error', fail);
  sock.on('close', () => fail(new Error('connection closed')));
  return {
    next(timeoutMs: number): Promise<Line> {
      const l = lines.shift();
      if (l !== undefined) return Promise.resolve(JSON.parse(l) as Line);
      if (failed) return Promise.reject(failed);
      return new Promise((res, rej) => {
        const timer = setTimeout(() => { waiters.splice(waiters.indexOf(w), 1); rej(new Error(`no reply within ${timeoutMs} ms`)); }, timeoutMs);
        const w = (v: string | Error) => { clearTimeout(timer); if (v instanceof Error) rej(v); else res(JSON.parse(v) as Line); };
        waiters.push(w);
      });
    },
  };
}

function open(host: string, port: number, timeoutMs: number): Promise<{ sock: Socket; first: Line; reader: ReturnType<typeof lined> }> {
  const sock = connect({ host, port });
  const reader = lined(sock);
  return reader.next(timeoutMs).then((first) => ({ sock, first, reader }), (err: Error) => { sock.destroy(); throw new Error(`${host}:${port}: ${err.message}`); });
}

async function burst(c: Cmd): Promise<object> {
  const byId: Record<string, number> = {};
  let errors = 0, next = 0;
  let firstError: string | undefined;
  const worker = async () => {
    while (next < (c.count ?? 1)) {
      next += 1;
      try {
        const { sock, first } = await open(c.host!, c.port!, c.timeoutMs ?? 3000);
        sock.end();
        byId[first.id] = (byId[first.id] ?? 0) + 1;
      } catch (err) {
        errors += 1;
        firstError ??= (err as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, c.concurrency ?? 1) }, worker));
  return { byId, errors, ...(firstError ? { firstError } : {}) };
}

const conns = new Map<string, { sock: Socket; reader: ReturnType<typeof lined> }>();

async function handle(c: Cmd): Promise<object> {
  switch (c.op) {
    case 'burst': return burst(c);
    case 'open': {
      const { sock, first, reader } = await open(c.host!, c.port!, c.timeoutMs ?? 3000);
      conns.set(c.conn!, { sock, reader });
      return first;
    }
    case 'send': {
      const h = conns.get(c.conn!);
      if (!h) throw new Error(`no open connection ${c.conn}`);
      h.sock.write(`${c.data ?? ''}\n`);
      return h.reader.next(c.timeoutMs ?? 3000);
    }
    case 'close': {
      const h = conns.get(c.conn!);
      conns.delete(c.conn!);
      h?.sock.end();
      return { closed: true };
    }
    default: throw new Error(`unknown op ${c.op}`);
  }
}

createInterface(process.stdin).on('line', (line) => {
  const c = JSON.parse(line) as Cmd;
  handle(c).then((r) => reply({ seq: c.seq, ...r }), (err: unknown) => reply({ seq: c.seq, error: err instanceof Error ? err.message : String(err) }));
}).on('close', () => process.exit(0));
process.stdout.write(JSON.stringify({ ready: true }) + '\n');
