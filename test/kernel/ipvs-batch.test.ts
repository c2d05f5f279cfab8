// IpvsNetlink.applyBatch against Debian's kernel in the VM: test/kernel/guest/ipvs-batch.guest.ts
// (1,000 services × 10 destinations in few sendmsg writes, cross-checked with ipvsadm; errors
// mid-buffer mapped to their write by sequence number; the destinations of a failed service skipped).
import { runGuestSuite } from './harness/suite.ts';

await runGuestSuite(import.meta.url, 'test/kernel/guest/ipvs-batch.guest.ts', { timeoutMs: 900_000 });
