// Proves the real-kernel harness end to end: boot, IPVS modules, namespaces, a NAT service, traffic.
import { runGuestSuite } from './harness/suite.ts';

await runGuestSuite(import.meta.url, 'test/kernel/guest/smoke.guest.ts', { timeoutMs: 600_000 });
