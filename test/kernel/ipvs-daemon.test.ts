// IPVS sync daemons (`ipvsadm --start-daemon` and friends) through our generic-netlink client on
// a real kernel: the guest suite test/kernel/guest/ipvs-daemon.guest.ts, with ipvsadm as witness.
import { runGuestSuite } from './harness/suite.ts';

await runGuestSuite(import.meta.url, 'test/kernel/guest/ipvs-daemon.guest.ts', { timeoutMs: 600_000 });
