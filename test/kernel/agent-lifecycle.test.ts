// lvs-agent over time on a real kernel, with connections held open across each step: bad input,
// drain, SIGKILL and restart, outside edits undone, a foreign IPVS service left alone, cleanup.
// See test/kernel/guest/agent-lifecycle.guest.ts.
import { runGuestSuite } from './harness/suite.ts';

await runGuestSuite(import.meta.url, 'test/kernel/guest/agent-lifecycle.guest.ts', {
  timeoutMs: 900_000,
  // Each lvs-agent invocation is a fresh Node start; V8's compile cache (in the guest's tmpfs)
  // lets the later ones skip most of the TypeScript stripping and compiling.
  env: { NODE_COMPILE_CACHE: '/run/node-compile-cache' },
});
