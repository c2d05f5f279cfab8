// IPv6 forwarding on a real kernel with real traffic: NAT, DR and TUN (ip6ip6, and an IPv6 VIP
// over IPv4 real servers), real-server preparation and exact cleanup, NDP silence of real servers
// and director. Boots the test VM and runs test/kernel/guest/realserver6.guest.ts inside it.
import { runGuestSuite } from './harness/suite.ts';

await runGuestSuite(import.meta.url, 'test/kernel/guest/realserver6.guest.ts', { timeoutMs: 900_000 });
