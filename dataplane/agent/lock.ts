// One agent per network namespace: `lvs-agent run`, `apply` (one-shot or --watch) and the director
// `cleanup` hold an exclusive lock, so a second one is refused instead of fighting the first over
// lvs0, the nft table, the IPVS services on owned VIPs and the owner record.
//
// The lock is a listening unix socket in the abstract namespace (a name starting with NUL), which
// relies on these kernel behaviours (unix(7)):
//  - bind() of a name already bound fails with EADDRINUSE, atomically: two racing agents cannot
//    both win;
//  - an abstract name has no file: it is released when the last descriptor of the socket closes,
//    which the kernel does for a process that dies in any way, SIGKILL included. A lock file with
//    a pid inside can outlive its process and needs a liveness guess; this cannot;
//  - abstract names belong to the network namespace, which is exactly the scope of what the lock
//    protects (IPVS tables, lvs0 and nft tables are per network namespace too), so agents in two
//    namespaces (the kernel tests' directors) do not exclude each other.
// The holder answers every connection with its pid and command, so a refusal can name it.
//
// `show` and `prepare`/`cleanup` of a real server take no lock: show only reads, and preparing a
// real server changes only that namespace's lo/tunl0 addresses and sysctls, each change
// idempotent and verified by read-back, none of which a director agent writes.
import { connect, createServer, type Server } from 'node:net';

export const DEFAULT_LOCK_NAME = 'lvs-agent/director.lock';

export class AgentLockedError extends Error {
  readonly holderPid: number | undefined;
  constructor(holderPid: number | undefined, holderCommand: string | undefined) {
    const who = holderPid ? `pid ${holderPid}${holderCommand ? `, lvs-agent ${holderCommand}` : ''}` : 'holder unknown';
    super(`another lvs-agent already manages this network namespace (${who}); refusing to run a second one, which would fight it over lvs0, the nft table and the owner record`);
    this.name = 'AgentLockedError';
    this.holderPid = holderPid;
  }
}

export interface AgentLock {
  release(): Promise<void>;
}

function listen(server: Server, path: string): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const onError = (err: NodeJS.ErrnoException) => resolve(err);
    server.once('error', onError);
    server.listen({ path, exclusive: true }, () => { server.off('error', onError); resolve(undefined); });
  });
}

/** Asks the holder who it is: "PID COMMAND...\n"; undefined when nobody answers (it just died). */
function askHolder(path: string, timeoutMs = 1_000): Promise<{ pid?: number; command?: string } | undefined> {
  return new Promise((resolve) => {
    let text = '';
    const sock = connect({ path });
    const done = (v: { pid?: number; command?: string } | undefined) => { sock.destroy(); resolve(v); };
    sock.setTimeout(timeoutMs, () => done({}));
    sock.on('data', (d) => { text += d.toString(); });
    sock.on('end', () => {
      const m = /^(\d+) ?([^\n]*)/.exec(text);
      done(m ? { pid: Number(m[1]), ...(m[2] ? { command: m[2] } : {}) } : {});
    });
    sock.on('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? undefined : {}));
  });
}

/**
 * Takes the lock or throws AgentLockedError naming the holder. The lock lasts until release() or
 * the end of the process; it never keeps the process alive by itself.
 */
export async function acquireAgentLock(command: string, name = DEFAULT_LOCK_NAME): Promise<AgentLock> {
  const path = `\0${name}`;
  for (let attempt = 0; ; attempt++) {
    const server = createServer((sock) => sock.end(`${process.pid} ${command}\n`));
    const err = await listen(server, path);
    if (!err) {
      server.unref();
      return { release: () => new Promise<void>((r) => server.close(() => r())) };
    }
    server.close();
    if (err.code !== 'EADDRINUSE') throw err;
    const holder = await askHolder(path);
    // Refused: the holder closed between our bind and our connect; the name is free again.
    if (holder || attempt >= 2) throw new AgentLockedError(holder?.pid, holder?.command);
  }
}
