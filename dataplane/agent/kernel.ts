// Opening the kernel side: the IPVS generic-netlink family exists only once ip_vs is loaded, and
// the kernel does not autoload it for a genl family lookup, so the agent loads it itself
// (scheduler modules are autoloaded by the kernel when a service names them).
import type { Logger } from 'pino';
import { IpvsNetlink } from '../ipvs/netlink.ts';
import { IpvsError } from '../ipvs/errors.ts';
import type { Runner } from '../exec.ts';
import type { Tap } from '../ipvs/transport.ts';

/** `tap`: sees every datagram (the agent's netlink counters, ./metrics.ts). */
export async function openIpvs(run: Runner, log: Logger, tap?: Tap): Promise<IpvsNetlink> {
  const opts = { logger: log, ...(tap ? { tap } : {}) };
  try {
    return await IpvsNetlink.open(opts);
  } catch (err) {
    if (!(err instanceof IpvsError) || err.code !== 'ENOENT') throw err;
    log.info({ op: 'modprobe' }, 'IPVS family missing; loading ip_vs');
    try {
      await run('modprobe', ['ip_vs']);
    } catch (e) {
      throw new Error(`kernel has no IPVS: the generic netlink family IPVS is missing and modprobe ip_vs failed (${(e as Error).message})`);
    }
    return IpvsNetlink.open(opts);
  }
}
