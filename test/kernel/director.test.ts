// Director setup on a real kernel with real traffic: lvs0 VIP ownership, IPVS sysctls, the SNAT
// return path for NAT, ARP silence. Boots the test VM and runs test/kernel/guest/director.guest.ts.
import { runGuestSuite } from './harness/suite.ts';

await runGuestSuite(import.meta.url, 'test/kernel/guest/director.guest.ts', { timeoutMs: 900_000 });
