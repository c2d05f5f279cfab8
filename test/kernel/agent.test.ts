// lvs-agent end to end on Debian's kernel under qemu, with real traffic between network
// namespaces, in one VM (one boot, and one warm Node compile cache for every agent start):
//   agent-forwarding  NAT with the seeds' table, SNAT return path, UDP, DR and TUN with `prepare`
//   agent-schedulers  every scheduler accepted; rr/wrr/sh distributions; persistence templates
//   agent-lifecycle   bad input, drain, SIGKILL + restart, outside edits, foreign service, cleanup
//   agent-procsys     a read-only /proc/sys (non-privileged container) and LVS_PROC_SYS
//   agent-adoption    VIPs on kube-ipvs0 (with kube-proxy's service) and lo are not adopted
//   agent-announce    a lone director answers ARP/NDP for its VIPs (seed 004), or stays silent
// Each ends by checking that `ipvsadm -Ln` agrees with `lvs-agent show --json`.
import { runGuestSuite } from './harness/suite.ts';

await runGuestSuite(import.meta.url, [
  'test/kernel/guest/agent-forwarding.guest.ts',
  'test/kernel/guest/agent-schedulers.guest.ts',
  'test/kernel/guest/agent-lifecycle.guest.ts',
  'test/kernel/guest/agent-procsys.guest.ts',
  'test/kernel/guest/agent-adoption.guest.ts',
  'test/kernel/guest/agent-announce.guest.ts',
], {
  // About 6-10 minutes on a 2-core host shared with other work (and over 20 when it is badly
  // overloaded); the limit only guards against a hung guest.
  timeoutMs: 2_400_000,
  memoryMb: 1536,
  // Every lvs-agent invocation is a fresh Node start; V8's compile cache (in the guest's tmpfs)
  // lets all but the first skip most of the TypeScript stripping and compiling.
  env: { NODE_COMPILE_CACHE: '/run/node-compile-cache' },
});
