// The sync daemons of FakeIpvsKernel (fake.ts), failing the way Linux 6.1 does (checked in the VM
// by test/kernel/guest/ipvs-daemon.guest.ts), in the kernel's order of checks:
//   input the netlink client refuses to encode (interface name empty or >= 16 bytes, syncId > 255,
//   ...) → EINVAL, as the client reports its NetlinkCodecError; ip_vs_genl_new_daemon: a group
//   that is not multicast → EINVAL, destinations of another family than their service in the
//   namespace → EINVAL; start_sync_thread: unknown interface → ENODEV (looked up before the next
//   check), a daemon of that state already running → EEXIST; stop_sync_thread: none running → ESRCH.
// A started daemon reads back with the kernel's defaults filled in (group 224.0.0.81, port 8848,
// ttl 1, maxLen from the interface MTU or clamped; see start_sync_thread).
import { canonicalIp, ipFamily } from '../../../api/ip.ts';
import { encodeDaemon, SYNC_DEFAULTS } from '../daemon-codec.ts';
import { clampedMaxLen } from '../daemon.ts';
import { errnoOf, IpvsError } from '../errors.ts';
import { NetlinkCodecError } from '../nla.ts';
import type { SyncDaemon } from '../types.ts';

/** Interfaces of the fake's namespace, name → MTU, when FakeIpvsOptions.links is not given. */
export const DEFAULT_LINKS: Readonly<Record<string, number>> = { lo: 65536, eth0: 1500 };

/** ipv4_is_multicast (224.0.0.0/4) / IPV6_ADDR_MULTICAST (ff00::/8). */
function isMulticast(group: string): boolean {
  const first = group.split(/[.:]/)[0] ?? '';
  return ipFamily(group) === 4 ? Number(first) >= 224 && Number(first) <= 239 : /^ff[0-9a-f]{2}$/i.test(first.padStart(4, '0'));
}

export class FakeSyncDaemons {
  readonly #links: Map<string, number>;
  readonly #running = new Map<SyncDaemon['state'], SyncDaemon>();

  constructor(links: Readonly<Record<string, number>> = DEFAULT_LINKS) {
    this.#links = new Map(Object.entries(links));
  }

  list(): SyncDaemon[] {
    return (['master', 'backup'] as const).flatMap((s) => {
      const d = this.#running.get(s);
      return d ? [{ ...d }] : [];
    });
  }

  /** `mixedFamilyDests`: destinations whose family differs from their service's (ipvs->mixed_address_family_dests). */
  start(d: SyncDaemon, mixedFamilyDests: number): void {
    try {
      encodeDaemon(d);
    } catch (err) {
      if (err instanceof NetlinkCodecError) throw new IpvsError('startDaemon', errnoOf('EINVAL'), err.message);
      throw err;
    }
    if (d.group !== undefined && !isMulticast(d.group)) {
      throw new IpvsError('startDaemon', errnoOf('EINVAL'), `group ${d.group} is not multicast`);
    }
    if (mixedFamilyDests > 0) {
      throw new IpvsError('startDaemon', errnoOf('EINVAL'), 'the sync protocol cannot carry mixed-family destinations');
    }
    const mtu = this.#links.get(d.interface);
    if (mtu === undefined) throw new IpvsError('startDaemon', errnoOf('ENODEV'), `no interface ${d.interface}`);
    if (this.#running.has(d.state)) throw new IpvsError('startDaemon', errnoOf('EEXIST'), `${d.state} daemon already runs`);
    this.#running.set(d.state, stored(d, mtu));
  }

  stop(state: SyncDaemon['state']): void {
    if (!this.#running.delete(state)) throw new IpvsError('stopDaemon', errnoOf('ESRCH'), `no ${state} daemon runs`);
  }
}

/** What GET_DAEMON reports after start_sync_thread filled in its defaults. */
function stored(d: SyncDaemon, mtu: number): SyncDaemon {
  const group = d.group ?? SYNC_DEFAULTS.group;
  const headers = ipFamily(group) === 6 ? 48 : 28;
  // A master sends at most 1500-byte datagrams; a backup receives up to its link's MTU.
  const linkMtu = d.state === 'backup' ? Math.min(Math.max(mtu, 1500), 65535) : 1500;
  return {
    state: d.state,
    interface: d.interface,
    syncId: d.syncId,
    maxLen: d.maxLen ? clampedMaxLen({ ...d, maxLen: d.maxLen }) : linkMtu - headers,
    group: canonicalIp(group) ?? group,
    port: d.port || SYNC_DEFAULTS.port,
    ttl: d.ttl || SYNC_DEFAULTS.ttl,
  };
}
