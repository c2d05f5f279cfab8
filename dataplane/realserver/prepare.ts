// Side effects of real-server preparation: observe a namespace, plan (pure, ./diff.ts), apply the
// steps through the injected runner, observe again until nothing is left to do. The last
// observation is the verification: a step that did not stick fails the call.
import type { Logger } from 'pino';
import { CommandError, type NetnsTarget, type Runner, describeTarget, inNetns } from '../exec.ts';
import { hostPrefix, ipFamily, readLink, readLinks, readSysctls, writeSysctls } from './iproute.ts';
import { type RealServerPlan, type RealServerStep, assessRealServer, planRealServer } from './diff.ts';
import {
  type ObservedRealServer, type RealServerVip, MANAGED_SYSCTLS, OWNED_METRIC6, TUNNELS, TUNNEL_DEVICES,
  normalizeVips, ownedLabel, ownedVips, parseRecord, formatRecord,
} from './plan.ts';

export interface RealServerOptions {
  run: Runner;
  logger?: Logger;
  /** The command that loads a tunnel module (its name appended) when autoload fails; default `modprobe`. */
  modprobe?: readonly string[];
  /** Rounds of observe/plan/apply before giving up; default 3. */
  maxRounds?: number;
}

export interface RealServerResult {
  target: string;
  changed: boolean;
  /** Steps applied, in order. */
  changes: RealServerStep[];
  /** VIPs held under our label after the call. */
  owned: RealServerVip[];
  /** False when lo's alias belongs to someone else: sysctl changes cannot be undone later. */
  recordable: boolean;
}

/** The kernel cannot make the fallback tunnel device (no ipip, ip6_tunnel or sit support). */
export class TunnelUnsupportedError extends Error {
  constructor(kind: string, detail: string) {
    super(`kernel has no ${kind} support: ${detail}`);
    this.name = 'TunnelUnsupportedError';
  }
}
/** The name this error had while tunl0 was the only tunnel. */
export const IpipUnsupportedError = TunnelUnsupportedError;

export async function observeRealServer(run: Runner): Promise<ObservedRealServer> {
  // One `ip` for every link (lo and the tunnels at once) and one `sysctl`: process spawns dominate.
  const [links, sysctls] = await Promise.all([readLinks(run), readSysctls(run, MANAGED_SYSCTLS)]);
  const tunnels = Object.fromEntries(links.filter((l) => TUNNEL_DEVICES.includes(l.name)).map((l) => [l.name, l]));
  const obs: ObservedRealServer = { tunnels, sysctls: Object.fromEntries(sysctls) };
  const lo = links.find((l) => l.name === 'lo');
  if (lo) obs.lo = lo;
  return obs;
}

/** Make the namespace hold exactly `desired` among the VIPs we own (others' addresses untouched). */
export async function syncRealServer(opts: RealServerOptions, target: NetnsTarget, desired: readonly RealServerVip[]): Promise<RealServerResult> {
  const want = normalizeVips(desired, 'desired');
  const run = inNetns(opts.run, target);
  const log = opts.logger?.child({ op: 'realserver', netns: describeTarget(target) });
  const changes: RealServerStep[] = [];
  let obs = await observeRealServer(run);
  let plan: RealServerPlan = planRealServer(want, obs);
  for (let round = 0; plan.steps.length > 0 && round < (opts.maxRounds ?? 3); round++) {
    log?.info({ steps: plan.steps }, 'realserver steps');
    await applySteps(opts, run, plan.steps);
    changes.push(...plan.steps);
    obs = await observeRealServer(run);
    plan = planRealServer(want, obs);
  }
  if (plan.steps.length > 0 || plan.pending) {
    throw new Error(`real-server preparation of ${describeTarget(target)} did not converge; still to do: ${JSON.stringify(plan.steps)}`);
  }
  return { target: describeTarget(target), changed: changes.length > 0, changes, owned: ownedVips(obs), recordable: plan.recordable };
}

/** Add `vips` to what this namespace is prepared for (VIPs we already own stay). */
export async function prepareRealServer(opts: RealServerOptions, target: NetnsTarget, vips: readonly RealServerVip[]): Promise<RealServerResult> {
  const add = normalizeVips(vips);
  const owned = ownedVips(await observeRealServer(inNetns(opts.run, target)));
  return syncRealServer(opts, target, [...owned, ...add]);
}

/** Remove `vips` (default: every VIP we own); sysctls and tunnels are restored once unneeded. */
export async function cleanupRealServer(opts: RealServerOptions, target: NetnsTarget, vips?: readonly RealServerVip[]): Promise<RealServerResult> {
  const key = (v: RealServerVip) => `${v.vip}/${v.mode}/${v.encap ?? ''}`;
  const drop = vips ? normalizeVips(vips).map(key) : undefined;
  const owned = ownedVips(await observeRealServer(inNetns(opts.run, target)));
  return syncRealServer(opts, target, drop ? owned.filter((v) => !drop.includes(key(v))) : []);
}

export interface RealServerInspection {
  prepared: boolean;
  /** Why not, one line each. */
  problems: string[];
}

export async function inspectRealServer(opts: Pick<RealServerOptions, 'run'>, target: NetnsTarget, vip: RealServerVip): Promise<RealServerInspection> {
  const [v] = normalizeVips([vip], 'vip');
  const problems = assessRealServer(v!, await observeRealServer(inNetns(opts.run, target)));
  return { prepared: problems.length === 0, problems };
}

/** One `ip -batch` per run of consecutive ip steps and one `sysctl -w` per run of sysctl steps. */
export async function applySteps(opts: RealServerOptions, run: Runner, steps: readonly RealServerStep[]): Promise<void> {
  let ip: string[] = [];
  let sysctl: Array<[string, string]> = [];
  const flush = async () => {
    if (ip.length) await run('ip', ['-batch', '-'], { input: ip.join('\n') + '\n' });
    if (sysctl.length) await writeSysctls(run, sysctl);
    ip = [];
    sysctl = [];
  };
  for (const step of steps) {
    const line = ipLine(step);
    if ((line && sysctl.length) || (!line && ip.length)) await flush();
    if (line) ip.push(line);
    else if (step.kind === 'sysctl') sysctl.push([step.key, step.to]);
    else if (step.kind === 'link') { await flush(); await ensureTunnel(opts, run, step.device); }
  }
  await flush();
}

/** The `ip -batch` line for a step, or undefined for sysctl and tunnel-ensure steps. */
function ipLine(step: RealServerStep): string | undefined {
  switch (step.kind) {
    case 'record': return `link set dev lo alias "${step.to}"`;
    case 'address':
      if (step.op === 'remove') return `addr del ${hostPrefix(step.address)} dev ${step.device}`;
      // IPv6: no labels, so our metric marks the address; nodad, as it is usable at once.
      return ipFamily(step.address) === 4
        ? `addr add ${step.address}/32 dev ${step.device} label ${ownedLabel(step.device)}`
        : `addr add ${step.address}/128 dev ${step.device} nodad metric ${OWNED_METRIC6}`;
    case 'link':
      if (step.op === 'ensure') return undefined;
      return step.op === 'delete' ? `link del dev ${step.device}` : `link set dev ${step.device} ${step.op}`;
    case 'sysctl': return undefined;
  }
}

/**
 * tunl0, ip6tnl0 and sit0 are the fallback devices of ipip, ip6_tunnel and sit: each appears in
 * every namespace once its module is loaded. `ip link add <dev> type ...` makes the kernel
 * autoload the module (EEXIST then means the fallback device arrived); where autoload is
 * unavailable, modprobe; where fallback devices are disabled for non-initial namespaces
 * (net.core.fb_tunnels_only_for_init_net), the add creates an ordinary any-to-any device of the
 * same mode, which we record so cleanup deletes it.
 */
async function ensureTunnel(opts: RealServerOptions, run: Runner, device: string): Promise<void> {
  const spec = TUNNELS[device];
  if (!spec) throw new Error(`realserver: ${device} is not a tunnel this agent manages`);
  const add = () => run('ip', ['link', 'add', 'name', device, ...spec.linkArgs]);
  try {
    await add();
    await markTunnelCreated(run, device);
    return;
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    if (/exists/i.test(err.stderr)) return;
    if (!/unknown device type|not supported/i.test(err.stderr)) throw err;
  }
  const [cmd, ...args] = opts.modprobe ?? ['modprobe'];
  let modprobeError = '';
  try { await opts.run(cmd!, [...args, spec.module]); } catch (err) { modprobeError = err instanceof Error ? err.message : String(err); }
  if (await readLink(run, device)) return;
  try {
    await add();
    await markTunnelCreated(run, device);
  } catch (err) {
    if (err instanceof CommandError && /unknown device type|not supported/i.test(err.stderr)) {
      throw new TunnelUnsupportedError(spec.kind, `${err.message}${modprobeError ? `; ${modprobeError}` : ''}`);
    }
    throw err;
  }
}

async function markTunnelCreated(run: Runner, device: string): Promise<void> {
  const lo = await readLink(run, 'lo');
  const rec = parseRecord(lo?.alias ?? '');
  if (!rec) return;
  rec.tunnels[device] = { up: rec.tunnels[device]?.up ?? false, created: true };
  await run('ip', ['link', 'set', 'dev', 'lo', 'alias', formatRecord(rec)]);
}
