// Provisions the real-kernel test tier (host packages, Debian kernel, initramfs) and prints what
// it cached. Idempotent and fast when already done. Usage: node scripts/provision-kernel.ts
import { ProvisionError, provisionKernel } from '../lab/vm/provision.ts';

const started = Date.now();
try {
  const image = provisionKernel({ log: (l) => console.error(`provision: ${l}`) });
  console.log(JSON.stringify({ ...image, ms: Date.now() - started }, null, 2));
} catch (err) {
  console.error(`provision-kernel: ${err instanceof ProvisionError ? err.message : String(err)}`);
  process.exit(1);
}
