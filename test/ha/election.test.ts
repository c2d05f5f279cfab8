// Two standalone lvs-agent directors electing their announcer on Debian's kernel under qemu:
// failovers by link down, SIGKILL and partition while DR and TUN streams run
// (test/ha/guest/election.guest.ts). Measured gaps and takeover times are printed.
import { runGuestSuite } from '../kernel/harness/suite.ts';

await runGuestSuite(import.meta.url, 'test/ha/guest/election.guest.ts', {
  // About 5-8 minutes on a quiet 2-core host; the limit only guards against a hung guest.
  timeoutMs: 1_500_000,
  memoryMb: 1536,
  env: { NODE_COMPILE_CACHE: '/run/node-compile-cache', ...(process.env.LVS_HA_CYCLES ? { LVS_HA_CYCLES: process.env.LVS_HA_CYCLES } : {}) },
});
