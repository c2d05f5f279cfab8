// The agent's IPVS netlink counters (dataplane/agent/metrics.ts netlinkTap): writes (sendmsg
// datagrams), messages each way, and the kernel's error replies by errno, counted from the
// datagrams the client's tap sees: a batch of three writes is one write and three messages; an
// ACK is no error.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createAgentMetrics } from '../../dataplane/agent/metrics.ts';
import { encodeGenlRequest, NLM_F_ACK, NLM_F_REQUEST } from '../../dataplane/ipvs/nla.ts';

const test = suite('agent /metrics: netlink counters');

/** An NLMSG_ERROR for `seq`: -errno (0: an ACK), then the request's 16-byte header echoed. */
function errorReply(seq: number, errno: number): Buffer {
  const b = Buffer.alloc(36);
  b.writeUInt32LE(36, 0);
  b.writeUInt16LE(2, 4);
  b.writeUInt32LE(seq, 8);
  b.writeInt32LE(-errno, 16);
  return b;
}

test('one batch of three requests; replies: an ACK, EEXIST twice in one datagram, ENOENT', async () => {
  const m = await createAgentMetrics();
  const req = (seq: number) => encodeGenlRequest({ family: 30, cmd: 1, version: 1, flags: NLM_F_REQUEST | NLM_F_ACK, seq, attrs: Buffer.alloc(8) });
  m.netlinkTap('send', Buffer.concat([req(1), req(2), req(3)]), 0);
  m.netlinkTap('recv', errorReply(1, 0), 0);
  m.netlinkTap('recv', Buffer.concat([errorReply(2, 17), errorReply(3, 17)]), 0);
  m.netlinkTap('send', req(4), 0);
  m.netlinkTap('recv', errorReply(4, 2), 0);
  const text = await m.registry.metrics();
  assert.match(text, /^lvs_agent_netlink_writes_total 2$/m);
  assert.match(text, /^lvs_agent_netlink_messages_total\{direction="sent"\} 4$/m);
  assert.match(text, /^lvs_agent_netlink_messages_total\{direction="received"\} 4$/m);
  assert.match(text, /^lvs_agent_netlink_errors_total\{errno="EEXIST"\} 2$/m);
  assert.match(text, /^lvs_agent_netlink_errors_total\{errno="ENOENT"\} 1$/m);
  assert.not.match(text, /errno="E0"|errno="OK"/);
});

test.run();
