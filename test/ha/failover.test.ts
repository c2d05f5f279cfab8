// Two-director failover on Debian's kernel under qemu: IPVS sync daemons, long-lived TCP streams
// through DR, TUN and NAT while the active director changes (test/ha/guest/failover.guest.ts).
import { runGuestSuite } from '../kernel/harness/suite.ts';

await runGuestSuite(import.meta.url, 'test/ha/guest/failover.guest.ts', {
  // 4.0-4.6 minutes on a quiet 2-core host, 7.3 on a loaded one; the limit only guards against a hung guest.
  timeoutMs: 1_200_000,
  memoryMb: 1536,
  env: { NODE_COMPILE_CACHE: '/run/node-compile-cache' },
});
