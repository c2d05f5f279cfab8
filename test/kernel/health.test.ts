// Health checks of static real servers on Debian's kernel under qemu, with real traffic between
// network namespaces, in one VM: a standalone director (`lvs-agent apply --watch`, NAT) checks
// its real servers over TCP and HTTP; a killed server leaves rotation within failureThreshold ×
// interval + 1 s and returns after successThreshold passes, HTTP checks fail on a wrong status and
// on a server that never answers, a never-passed server starts at weight 0, onFailure Remove
// drains and deletes, a restart keeps healthy weights (seeding), `lvs-agent show` prints HEALTH,
// and one-shot `apply` decides by one round. `ipvsadm -Ln`, sampled in a loop, is the witness;
// the measured times are printed ("# measured: ...").
import { runGuestSuite } from './harness/suite.ts';

await runGuestSuite(import.meta.url, 'test/kernel/guest/health.guest.ts', {
  // About 3 minutes on an idle 2-core host; the limit only guards against a hung guest.
  timeoutMs: 900_000,
  memoryMb: 1536,
  env: { NODE_COMPILE_CACHE: '/run/node-compile-cache' },
});
