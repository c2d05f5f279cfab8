// lvs-agent end to end on a real kernel with real traffic, in one VM: every forwarding method
// (NAT with the seeds' table, SNAT return path, UDP, DR and TUN with `lvs-agent prepare`) and every
// scheduler (rr/wrr/sh distributions, persistence). See the two guest suites for the scenarios.
import { runGuestSuite } from './harness/suite.ts';

await runGuestSuite(import.meta.url, [
  'test/kernel/guest/agent-forwarding.guest.ts',
  'test/kernel/guest/agent-schedulers.guest.ts',
], {
  timeoutMs: 900_000,
  memoryMb: 1536,
  // Each lvs-agent invocation is a fresh Node start; V8's compile cache (in the guest's tmpfs)
  // lets the later ones skip most of the TypeScript stripping and compiling.
  env: { NODE_COMPILE_CACHE: '/run/node-compile-cache' },
});
