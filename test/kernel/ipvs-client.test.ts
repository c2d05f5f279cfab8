// The IPVS netlink client against real kernels. On this host: the kernel without IPVS must give
// the "kernel has no IPVS" error. In the VM (Debian's kernel with IPVS): the guest suite
// test/kernel/guest/ipvs-client.guest.ts (every field, errors, pipelined dumps; see there).
import { existsSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { IpvsError, IpvsNetlink } from '../../dataplane/ipvs/netlink.ts';
import { Attrs, AttrWriter } from '../../dataplane/ipvs/nla.ts';
import { GenlChannel, NetlinkErrno } from '../../dataplane/ipvs/transport.ts';
import { gated } from '../lib/prereq.ts';
import { runGuestSuite } from './harness/suite.ts';

const host = suite('ipvs client on a kernel without IPVS (this host)');
gated(host, existsSync('/proc/net/ip_vs') ? 'this host kernel has IPVS, so the missing-family error cannot be provoked here' : undefined)(
  'open() fails with a typed ENOENT that says what to do', async () => {
    try {
      await IpvsNetlink.open();
    } catch (err) {
      assert.instance(err, IpvsError);
      const e = err as IpvsError;
      assert.equal([e.op, e.code, e.errno], ['open', 'ENOENT', 2]);
      assert.is(e.message, 'open IPVS netlink: ENOENT — kernel has no IPVS (modprobe ip_vs)');
      return;
    }
    assert.unreachable('open() succeeded on a kernel without IPVS');
  });

// The transport's sequence-number correlation, on this host's own genl controller (present in
// every Linux): dumps of all families interleaved with many do-requests on one socket.
const GENL_ID_CTRL = 16, CTRL_CMD_GETFAMILY = 3, CTRL_ATTR_FAMILY_ID = 1, CTRL_ATTR_FAMILY_NAME = 2;
const familyName = (attrs: Buffer) => new Attrs(attrs, 'ctrl').str(CTRL_ATTR_FAMILY_NAME);
host('one socket: 3 dumps and 40 do-requests in flight together, every reply matched to its request', async () => {
  const ch = new GenlChannel({ timeoutMs: 10_000, window: 16 });
  try {
    const ask = (name: string) => ch.request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1, new AttrWriter().str(CTRL_ATTR_FAMILY_NAME, name).bytes());
    const dumps = [0, 1, 2].map(() => ch.dump(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1, Buffer.alloc(0)));
    const names = Array.from({ length: 40 }, (_, i) => (i % 2 ? 'nlctrl' : `nofam${i}`));
    const answers = await Promise.allSettled(names.map(ask));
    const lists = await Promise.all(dumps);
    for (const [i, a] of answers.entries()) {
      if (names[i] === 'nlctrl') {
        assert.is(a.status, 'fulfilled');
        const [reply] = (a as PromiseFulfilledResult<Awaited<ReturnType<typeof ask>>>).value;
        assert.is(familyName(reply!.attrs), 'nlctrl');
        assert.is(new Attrs(reply!.attrs, 'ctrl').u16(CTRL_ATTR_FAMILY_ID, 'id'), GENL_ID_CTRL);
      } else {
        assert.is(a.status, 'rejected');
        assert.instance((a as PromiseRejectedResult).reason, NetlinkErrno);
        assert.is((a as PromiseRejectedResult).reason.errno, 2, 'ENOENT for an unknown family');
      }
    }
    const families = lists.map((l) => l.map((m) => familyName(m.attrs)));
    assert.ok(families[0]!.includes('nlctrl'));
    assert.equal(families[1], families[0], 'each dump complete and unmixed');
    assert.equal(families[2], families[0]);
  } finally {
    ch.close();
  }
});
host.run();

await runGuestSuite(import.meta.url, 'test/kernel/guest/ipvs-client.guest.ts', { timeoutMs: 900_000, modules: ['ip_vs_pe_sip'] });
