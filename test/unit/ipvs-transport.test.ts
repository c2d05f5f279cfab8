// The netlink channel's receive path against crafted datagrams: a malformed NLMSG_ERROR (or any
// unreadable reply) fails the request it answers with a clear error, never throws out of the
// socket's 'message' listener (that would kill the agent), and the channel keeps working.
// The socket is a real NETLINK_GENERIC socket, but send() is replaced so nothing reaches the
// kernel: replies are injected as the 'message' events the socket would emit.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { NLMSG_ERROR, NLM_F_ACK_TLVS } from '../../dataplane/ipvs/nla.ts';
import { GenlChannel, NetlinkErrno } from '../../dataplane/ipvs/transport.ts';

const test = suite('ipvs transport: malformed replies');
const EBADMSG = 74, EEXIST = 17;

interface Socket { emit(ev: string, ...a: unknown[]): boolean; send(b: Buffer, o: object, cb?: (e?: Error) => void): void }

function channel() {
  const ch = new GenlChannel({ timeoutMs: 5_000, window: 4 });
  const socket = (ch as unknown as { socket: Socket }).socket;
  const sent: Buffer[] = [];
  socket.send = (b, _o, cb) => { sent.push(b); cb?.(); };
  const lastSeq = () => sent.at(-1)!.readUInt32LE(8);
  return { ch, socket, sent, lastSeq };
}

/** One netlink message: nlmsghdr (len, type, flags, seq, pid) + payload. */
function nlmsg(type: number, flags: number, seq: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(16 + payload.length, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt16LE(flags, 6);
  h.writeUInt32LE(seq, 8);
  return Buffer.concat([h, payload]);
}

function nlmsgerr(errno: number, extra = Buffer.alloc(0)): Buffer {
  const p = Buffer.alloc(4 + 16);
  p.writeInt32LE(-errno, 0);
  p.writeUInt32LE(16, 4); // the echoed header's length
  return Buffer.concat([p, extra]);
}

const tick = () => new Promise<void>((r) => setImmediate(r));

test('a truncated NLMSG_ERROR fails its request with EBADMSG; the socket keeps working', async () => {
  const { ch, socket, lastSeq } = channel();
  try {
    const first = ch.request(0x20, 1, 1, Buffer.alloc(0));
    await tick();
    // struct nlmsgerr needs 4 + 16 bytes; three is a truncated payload.
    assert.not.throws(() => socket.emit('message', nlmsg(NLMSG_ERROR, 0, lastSeq(), Buffer.from([0xfe, 0xff, 0xff]))));
    const err = await first.then(() => undefined, (e: unknown) => e);
    assert.instance(err, NetlinkErrno);
    assert.is((err as NetlinkErrno).errno, EBADMSG);
    assert.match((err as Error).message, /malformed NLMSG_ERROR from the kernel: .*3 bytes/);
    const second = ch.request(0x20, 1, 1, Buffer.alloc(0));
    await tick();
    socket.emit('message', nlmsg(NLMSG_ERROR, 0, lastSeq(), nlmsgerr(0)));
    assert.equal(await second, []);
  } finally {
    ch.close();
  }
});

test('unreadable extended-ack TLVs keep the errno', async () => {
  const { ch, socket, lastSeq } = channel();
  try {
    const req = ch.request(0x20, 1, 1, Buffer.alloc(0));
    await tick();
    const badTlv = Buffer.from([0xff, 0x00, 0x01, 0x00]); // claims 255 bytes, has 4
    assert.not.throws(() => socket.emit('message', nlmsg(NLMSG_ERROR, NLM_F_ACK_TLVS, lastSeq(), nlmsgerr(EEXIST, badTlv))));
    const err = await req.then(() => undefined, (e: unknown) => e);
    assert.is((err as NetlinkErrno).errno, EEXIST);
  } finally {
    ch.close();
  }
});

test('a datagram that cannot be split fails the requests in flight with a clear error', async () => {
  const { ch, socket } = channel();
  try {
    const a = ch.request(0x20, 1, 1, Buffer.alloc(0));
    const b = ch.request(0x20, 1, 1, Buffer.alloc(0));
    await tick();
    const bad = Buffer.alloc(20);
    bad.writeUInt32LE(400, 0); // claims 400 bytes
    assert.not.throws(() => socket.emit('message', bad));
    for (const p of [a, b]) {
      const err = await p.then(() => undefined, (e: unknown) => e);
      assert.is((err as NetlinkErrno).errno, EBADMSG);
      assert.match((err as Error).message, /malformed datagram/);
    }
  } finally {
    ch.close();
  }
});

test.run();
