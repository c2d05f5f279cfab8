// Real-server preparation (DR and TUN) on a real kernel with real traffic: boots the test VM and
// runs test/kernel/guest/realserver.guest.ts inside it (see that file for the scenario).
import { runGuestSuite } from './harness/suite.ts';

await runGuestSuite(import.meta.url, 'test/kernel/guest/realserver.guest.ts', { timeoutMs: 900_000 });
