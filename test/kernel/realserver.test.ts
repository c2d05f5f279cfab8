// Real-server preparation (DR and TUN) on a real kernel with real traffic: boots the test VM and
// runs test/kernel/guest/realserver.guest.ts inside it (see that file for the scenario).
import { runGuest } from './dataplane-vm.ts';

await runGuest(import.meta.url, 'test/kernel/guest/realserver.guest.ts', 900_000);
