// Long-lived TCP streams for failover measurements, started inside a namespace by
// lab/guest/streams.ts: `node stream.ts server '{"ports":[8080]}'` echoes every byte back on
// each port (prints READY); `node stream.ts client '<ClientConfig>'` keeps `conns` connections to
// host:port, each sending "<conn>:<seq>\n" every `intervalMs` and counting the echoed lines.
// The client reads commands on stdin:
//   MARK  gaps are measured from now on (connection set-up is not part of a failover)
//   STOP  stop sending, send one last line per live connection, wait up to `finalMs` for its echo,
//         print one JSON line {conns: StreamConn[]} and exit.
// It prints "ESTABLISHED <n> <port>,<port>,..." once every connection has had its first echo (or
// after 30 s): how many echoed, and the local (source) port of every connection, so a director's
// connection table can be matched against this run's connections and not an earlier run's.
import { createServer, connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';

export interface StreamClientConfig { host: string; port: number; conns: number; intervalMs: number; finalMs: number }
export interface StreamConn {
  established: boolean; // echoed before MARK
  survived: boolean; // established, never errored or closed, and echoed the final line
  maxGapMs: number; // largest time between two echoes after MARK (or from the last echo to STOP)
  echoes: number;
  error?: string; // e.g. ECONNRESET, or 'closed' when the peer ended the connection
  /** After MARK, every gap over 100 ms between two echoes: [wall ms of the echo that ended it, gap ms]. */
  gaps?: Array<[number, number]>;
}

interface Live { sock: Socket; conn: StreamConn; lastEcho: number; seq: number; final: boolean; buf: string }

function server(cfg: { ports: number[] }): void {
  let pending = cfg.ports.length;
  for (const port of cfg.ports) {
    createServer((sock) => { sock.on('error', () => sock.destroy()); sock.pipe(sock); })
      .listen({ port, host: '0.0.0.0', backlog: 128 }, () => { if (--pending === 0) process.stdout.write('READY\n'); });
  }
}

function open(cfg: StreamClientConfig, i: number, onEcho: () => void): Live {
  const conn: StreamConn = { established: false, survived: false, maxGapMs: 0, echoes: 0 };
  const sock = connect({ host: cfg.host, port: cfg.port });
  const live: Live = { sock, conn, lastEcho: 0, seq: 0, final: false, buf: '' };
  sock.setNoDelay(true);
  sock.setEncoding('utf8');
  sock.on('data', (d: string) => {
    live.buf += d;
    let nl: number;
    while ((nl = live.buf.indexOf('\n')) >= 0) {
      const line = live.buf.slice(0, nl);
      live.buf = live.buf.slice(nl + 1);
      const now = Date.now();
      if (marked && live.lastEcho) {
        conn.maxGapMs = Math.max(conn.maxGapMs, now - live.lastEcho);
        if (now - live.lastEcho > 100) (conn.gaps ??= []).push([now, now - live.lastEcho]);
      }
      live.lastEcho = now;
      conn.echoes += 1;
      if (line === `${i}:final`) live.final = true;
      onEcho();
    }
  });
  sock.on('error', (e: NodeJS.ErrnoException) => { conn.error ??= e.code ?? e.message; });
  sock.on('close', () => { conn.error ??= 'closed'; });
  return live;
}

let marked = false;

async function client(cfg: StreamClientConfig): Promise<void> {
  const lives: Live[] = [];
  let announced = false;
  const announce = () => {
    if (announced) return;
    announced = true;
    const ports = lives.map((l) => l.sock.localPort).filter((p) => p !== undefined);
    process.stdout.write(`ESTABLISHED ${lives.filter((l) => l.conn.echoes > 0).length} ${ports.join(',')}\n`);
  };
  const onEcho = () => { if (!announced && lives.length === cfg.conns && lives.every((l) => l.conn.echoes > 0)) announce(); };
  for (let i = 0; i < cfg.conns; i++) lives.push(open(cfg, i, onEcho));
  setTimeout(announce, 30_000).unref();
  const ticker = setInterval(() => {
    for (const [i, l] of lives.entries()) if (!l.conn.error) l.sock.write(`${i}:${l.seq++}\n`);
  }, cfg.intervalMs);
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'MARK') {
      marked = true;
      const now = Date.now();
      for (const l of lives) { l.conn.established = l.conn.echoes > 0 && !l.conn.error; l.lastEcho = now; }
    } else if (line === 'STOP') {
      clearInterval(ticker);
      await finish(cfg, lives);
      return;
    }
  }
}

async function finish(cfg: StreamClientConfig, lives: Live[]): Promise<void> {
  const now = Date.now();
  for (const l of lives) if (!l.conn.error) l.conn.maxGapMs = Math.max(l.conn.maxGapMs, now - l.lastEcho);
  for (const [i, l] of lives.entries()) if (!l.conn.error) l.sock.write(`${i}:final\n`);
  const deadline = Date.now() + cfg.finalMs;
  while (Date.now() < deadline && lives.some((l) => !l.final && !l.conn.error)) await new Promise((r) => setTimeout(r, 50));
  for (const l of lives) l.conn.survived = l.conn.established && l.final && !l.conn.error;
  for (const l of lives) l.sock.destroy();
  // Exit only once the line is written: stdout to a pipe is asynchronous in Node, and with every
  // connection's gaps the line can exceed the pipe's buffer, which process.exit() would cut.
  process.stdout.write(JSON.stringify({ conns: lives.map((l) => l.conn) }) + '\n', () => process.exit(0));
}

const [mode, json = '{}'] = process.argv.slice(2);
if (mode === 'server') server(JSON.parse(json) as { ports: number[] });
else if (mode === 'client') await client(JSON.parse(json) as StreamClientConfig);
else throw new Error(`stream.ts: mode must be server or client, got ${mode}`);
