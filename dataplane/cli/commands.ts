// The standalone commands of lvs-agent. Each validates its input completely before it touches the
// kernel, so a rejected command changes nothing.
import { rmSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { VIRTUAL_SERVER } from '../../api/generated/index.ts';
import type { Plan } from '../../api/plan.ts';
import { defaultCompiledCrd, type CompiledCrd } from '../../api/schema.ts';
import { loadManifests, standalonePlan, InvalidManifestsError } from '../agent/manifests.ts';
import { openIpvs } from '../agent/kernel.ts';
import { IpvsNetlink } from '../ipvs/netlink.ts';
import { acquireAgentLock } from '../agent/lock.ts';
import { createLvsDevice } from '../agent/lvs-device.ts';
import { DEFAULT_STATE_FILE, formatShow, ownerRecord, readOwnerRecord, recordedVips, showView, writeOwnerRecord } from '../agent/show.ts';
import { createAgentMetrics, parseIpvsStatsLevel, startAgentHttp, type IpvsStatsLevel } from '../agent/metrics.ts';
import type { IpvsStatsSource } from '../agent/ipvs-stats.ts';
import type { IpvsKernel } from '../ipvs/types.ts';
import { observeDirector, ownedAddresses, teardownDirector } from '../director/setup.ts';
import type { NetnsTarget, Runner } from '../exec.ts';
import { cleanupRealServer, prepareRealServer } from '../realserver/prepare.ts';
import type { RealServerMode, RealServerVip } from '../realserver/plan.ts';
import { healthFileOf, readHealthRecord } from '../health/record.ts';
import { standaloneHealth } from '../health/standalone.ts';
import { createSyncLoop, type SyncLoop } from '../sync/loop.ts';
import { adoptedKeys, type Refusal } from '../sync/adoption.ts';
import { createSyncer, type SyncResult } from '../sync/sync.ts';
import { watchPaths } from './watch.ts';
import { clusterHaSettings, haSettings, standaloneAnnounce, type HaFlags } from './ha-options.ts';
import { startHa, type Ha } from '../announce/ha.ts';
import type { ClusterAgentOptions } from '../cluster/agent.ts';
import { logMemoryBudget } from '../../kube/memory.ts';
import { watchGcPauses } from '../../kube/gc-log.ts';
import { canonicalAddress } from '../sync/keys.ts';

export class UsageError extends Error {}

export interface CommandContext {
  values: {
    file?: string[]; watch?: boolean; 'allow-empty'?: boolean; 'drain-timeout'?: string; json?: boolean; all?: boolean;
    forwarding?: string; vip?: string[]; encap?: string; netns?: string; pid?: string; 'state-file'?: string; 'metrics-address'?: string; 'metrics-ipvs-stats'?: string;
    announce?: string; 'announce-interface'?: string[]; 'min-sync-interval-ms'?: string;
  } & HaFlags;
  log: Logger;
  run: Runner;
}

/** Loads and resolves the manifests; each skipped document of another API group goes to stderr. */
function loadPlan(crd: CompiledCrd, files: readonly string[], node: string, allowEmpty: boolean): Plan {
  const loaded = loadManifests(files, crd, { allowEmpty });
  for (const line of loaded.skipped) console.error(`lvs-agent: skipped ${line} (not ${VIRTUAL_SERVER.group})`);
  return standalonePlan(loaded, node);
}

function drainTimeoutMs(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`--drain-timeout: must be a whole number of seconds, got ${JSON.stringify(v)}`);
  return Number(v) * 1000;
}

export const MAX_MIN_SYNC_INTERVAL_MS = 60_000;

/**
 * `run`'s sync options from its flags (spread into the cluster agent's), checked before anything is
 * touched: --min-sync-interval-ms, the least time between the starts of two syncs for changes.
 */
export function runSyncOptions(values: CommandContext['values']): Pick<ClusterAgentOptions, 'minSyncIntervalMs'> {
  const v = values['min-sync-interval-ms'];
  if (v === undefined) return {};
  if (!/^\d+$/.test(v) || Number(v) > MAX_MIN_SYNC_INTERVAL_MS) throw new UsageError(`--min-sync-interval-ms must be an integer 0-${MAX_MIN_SYNC_INTERVAL_MS} (milliseconds), got ${JSON.stringify(v)}`);
  return { minSyncIntervalMs: Number(v) };
}

/** --metrics-ipvs-stats, checked before anything is touched. */
function ipvsStatsLevel(values: CommandContext['values']): IpvsStatsLevel {
  const level = parseIpvsStatsLevel(values['metrics-ipvs-stats']);
  if (!level) throw new UsageError(`--metrics-ipvs-stats must be services, real-servers or off, got ${JSON.stringify(values['metrics-ipvs-stats'])}`);
  if (values['metrics-ipvs-stats'] !== undefined && !values['metrics-address']) throw new UsageError('--metrics-ipvs-stats needs --metrics-address');
  return level;
}

/**
 * The counters' source, on netlink sockets of their own (opened at the first scrape, again after a
 * failed open): the client serialises dumps per socket, so a scrape's whole-table dump on the
 * agent's sockets would queue a sync's read-back behind it.
 */
function ipvsStats(level: IpvsStatsLevel, log: Logger, owned: () => ReadonlyMap<string, string>): (IpvsStatsSource & { close(): Promise<void> }) | undefined {
  if (level === 'off') return undefined;
  let client: Promise<IpvsKernel> | undefined;
  const open = () => (client ??= IpvsNetlink.open({ logger: log, dumpConcurrency: 1 }).catch((err: unknown) => { client = undefined; throw err; }));
  return {
    kernel: { dump: async () => (await open()).dump() },
    owned,
    realServers: level === 'real-servers',
    async close() { await (await client?.catch(() => undefined))?.close(); },
  };
}

function summarize(r: SyncResult, plan: Plan): string {
  const head = `${plan.services.length} service(s) from ${plan.virtualServers.size} VirtualServer(s); ${r.ops} kernel operation(s)`;
  // A refused VIP fails its services like a failed kernel operation does (exit status 1).
  const refused = r.refused?.length ? `\n${r.refused.length} VIP(s) refused:\n${r.refused.map((x) => `  ${x.message}`).join('\n')}` : '';
  if (r.kind === 'retry') return `${head}; ${r.errors.length} failed:\n${r.errors.map((e) => `  ${e.error.message}`).join('\n')}${refused}`;
  if (r.draining > 0) return `${head}; ${r.draining} destination(s) draining (weight 0 until their connections end; apply again or use --watch to finish)${refused}`;
  return head + refused;
}

/** The record of a plan, without the keys on VIPs refused as not ours (they must not count as ours next time). */
function planRecord(plan: Plan, retiring: readonly string[], refused: readonly Refusal[] | undefined) {
  const rec = ownerRecord(plan, new Date());
  return { ...rec, owners: Object.fromEntries(adoptedKeys(new Map(Object.entries(rec.owners)), refused)), retiringVips: [...retiring] };
}

const ANNOUNCE_REFRESH_MS = 10_000;

/** --announce l2|none and --announce-interface: how a standalone director announces its VIPs. */
export function announceOptions(values: { announce?: string; 'announce-interface'?: string[] }): { mode: 'l2' | 'none'; interfaces?: string[] } {
  const mode = values.announce ?? 'l2';
  if (mode !== 'l2' && mode !== 'none') throw new UsageError(`--announce must be l2 or none, got ${JSON.stringify(mode)}`);
  const interfaces = values['announce-interface'];
  if (interfaces && mode === 'none') throw new UsageError('--announce-interface needs --announce l2');
  return { mode, ...(interfaces ? { interfaces } : {}) };
}

export async function applyCommand(ctx: CommandContext): Promise<number> {
  const files = ctx.values.file ?? [];
  if (files.length === 0) throw new UsageError('apply needs -f FILE|DIR');
  // The loop of `apply --watch` keeps its own 250 ms (health flips must reach the kernel at once).
  if (ctx.values['min-sync-interval-ms'] !== undefined) throw new UsageError('--min-sync-interval-ms is for `lvs-agent run`; `apply --watch` syncs at most every 250 ms');
  const node = ctx.values['node-name'] ?? hostname();
  const timeout = drainTimeoutMs(ctx.values['drain-timeout']);
  const stateFile = ctx.values['state-file'] ?? DEFAULT_STATE_FILE;
  const allowEmpty = Boolean(ctx.values['allow-empty']);
  const announce = announceOptions(ctx.values);
  const haOpts = haSettings(ctx.values);
  const statsLevel = ipvsStatsLevel(ctx.values);
  let ha: Ha | undefined;
  // Loaded before the kernel is opened: a rejected set never reaches it.
  const crd = await defaultCompiledCrd();
  let plan = loadPlan(crd, files, node, allowEmpty);
  // Held until this process ends (see ../agent/lock.ts): a second apply or run is refused.
  await acquireAgentLock(ctx.values.watch ? 'apply --watch' : 'apply');
  const metrics = ctx.values.watch && ctx.values['metrics-address'] ? await createAgentMetrics() : undefined;
  const kernel = await openIpvs(ctx.run, ctx.log, metrics?.netlinkTap);
  // What this host owned before (the last record): retired unless wanted, even without lvs0.
  const before = recordedVips(readOwnerRecord(stateFile));
  let loop: SyncLoop | undefined;
  const checks = standaloneHealth({ node, log: ctx.log, stateFile, watch: Boolean(ctx.values.watch), onFlip: () => loop?.markDirty() });
  const health = checks.health;
  // A restarted --watch keeps what it had in rotation until checks say otherwise; a one-shot
  // apply decides by its one round alone.
  if (ctx.values.watch) health.seedFrom(await kernel.dump());
  const device = createLvsDevice({
    run: ctx.run, node, plan: () => plan.services, logger: ctx.log,
    announce: standaloneAnnounce(announce.mode, node, haOpts !== undefined, () => ha, ctx.log),
    ...(announce.interfaces ? { interfaces: announce.interfaces } : {}),
    ...(haOpts?.syncDaemon ? { connectionSync: true } : {}),
  });
  const opts = {
    kernel, node, log: ctx.log, plan: () => health.apply(plan.services), retiringVips: before,
    vips: device,
    ...(timeout !== undefined ? { drainTimeoutMs: timeout } : {}),
  };
  // Written before the kernel is touched (a crash mid-sync must not forget what to retire) and
  // again after each sync, with what is still retiring then.
  // (Before the first sync the refusals are unknown: a crash in it may leave a refused VIP's keys
  // recorded, which only weakens the foreign-services check for it until the next clean apply.)
  let refused: readonly Refusal[] | undefined;
  const record = (retiring: readonly string[]) => writeOwnerRecord(stateFile, planRecord(plan, retiring, refused));
  record(before);
  if (!ctx.values.watch) {
    try {
      health.apply(plan.services);
      await health.firstRound();
      checks.close();
      checks.write();
      const r = await createSyncer(opts).sync();
      refused = r.refused;
      record(r.retiring ?? before);
      console.log(summarize(r, plan));
      return r.kind === 'retry' || (r.refused?.length ?? 0) > 0 ? 1 : 0;
    } finally {
      await kernel.close();
    }
  }
  let retiring: readonly string[] = before;
  loop = createSyncLoop({
    ...opts,
    ...(metrics ? { metrics } : {}),
    // A health check's flip must reach the kernel well within the 1 s the check budget leaves
    // (out of rotation within failureThreshold × interval + 1 s); the default 1 s between sync
    // starts used it all up when two flips came close together. File changes are debounced below.
    minIntervalMs: 250,
    onResult: (r) => {
      if (r.kind === 'ok') health.endSeed();
      checks.write();
      const refusedNow = (r.refused ?? []).map((x) => x.message).join('\n');
      const refusalsChanged = refusedNow !== (refused ?? []).map((x) => x.message).join('\n');
      refused = r.refused;
      if ((r.retiring && r.retiring.join() !== retiring.join()) || refusalsChanged) record((retiring = r.retiring ?? retiring));
      if (r.ops > 0 || r.kind === 'retry' || refusalsChanged) console.log(summarize(r, plan));
    },
  });
  const reload = () => {
    try {
      plan = loadPlan(crd, files, node, allowEmpty);
      record(retiring);
      loop.markDirty();
    } catch (err) {
      // Keep serving the last good plan: a bad edit must not remove working rules.
      if (err instanceof InvalidManifestsError) ctx.log.error({ op: 'reload' }, `rejected, keeping the previous manifests:\n${err.message}`);
      else ctx.log.error({ op: 'reload', err }, 'reload failed, keeping the previous manifests');
    }
  };
  let pending: NodeJS.Timeout | undefined;
  // Follows files replaced by rename (editors, sed -i): see ./watch.ts.
  const watcher = watchPaths(files, () => { clearTimeout(pending); pending = setTimeout(reload, 200); });
  const owned = () => new Map(plan.services.filter((s) => s.directors.includes(node)).map((s) => [s.key, `${s.owner.namespace}/${s.owner.name}`]));
  const stats = metrics ? ipvsStats(statsLevel, ctx.log, owned) : undefined;
  const http = metrics ? await startAgentHttp(ctx.values['metrics-address']!, metrics, health, () => ({ announced: device.announced(), members: ha?.members() ?? [] }), stats) : undefined;
  if (haOpts) {
    const lp = loop;
    // A membership change flips announcements at once (announceQuick), then the next sync checks the director.
    const onChange = () => void device.reannounce(true).catch((err) => ctx.log.error({ op: 'announce', err: String(err) }, 'quick announce failed')).finally(() => lp.markDirector());
    ha = await startHa({ ...haOpts, node, kernel, log: ctx.log, onChange, healthy: () => lp.last !== undefined && lp.last.kind !== 'retry' });
  }
  // Announced VIPs are announced again periodically (keepalived's garp_master_refresh): a
  // neighbour that followed another director's announcement (a partition, a restart elsewhere)
  // comes back within this period even when nothing changed here.
  const refresh = announce.mode === 'l2' ? setInterval(() => void device.reannounce(true).catch(() => {}), ANNOUNCE_REFRESH_MS) : undefined;
  // At --log-level debug: a line per garbage-collection pause of 20 ms or more (../../kube/gc-log.ts).
  const stopGcLog = watchGcPauses(ctx.log);
  loop.start();
  await new Promise<void>((resolve) => { process.once('SIGTERM', resolve); process.once('SIGINT', resolve); });
  stopGcLog();
  clearInterval(refresh);
  // Rules stay programmed on exit: a restart must not drop connections.
  await ha?.close();
  watcher.close();
  clearTimeout(pending);
  checks.close();
  await http?.close();
  await stats?.close();
  await loop.stop();
  await kernel.close();
  return 0;
}

export async function runCommand(ctx: CommandContext): Promise<number> {
  const node = process.env.NODE_NAME;
  if (!node) throw new UsageError('run: NODE_NAME must be set (the downward API gives it: spec.nodeName)');
  const ha = clusterHaSettings(ctx.values);
  const statsLevel = ipvsStatsLevel(ctx.values);
  const syncOpts = runSyncOptions(ctx.values);
  // Loaded here, not at the top: the standalone commands (apply, show, prepare, cleanup) must not
  // pay for the API client and the cluster agent on every start.
  const [{ loadRestConfig, RestKubeApi }, { createClusterAgent }] = await Promise.all([import('../../kube/rest.ts'), import('../cluster/agent.ts')]);
  const api = new RestKubeApi(await loadRestConfig(process.env.KUBECONFIG ? 'kubeconfig' : 'in-cluster'));
  await acquireAgentLock('run');
  logMemoryBudget(ctx.log);
  // At --log-level debug: a line per garbage-collection pause of 20 ms or more (../../kube/gc-log.ts).
  const stopGcLog = watchGcPauses(ctx.log);
  const metrics = ctx.values['metrics-address'] ? await createAgentMetrics() : undefined;
  const kernel = await openIpvs(ctx.run, ctx.log, metrics?.netlinkTap);
  const stateFile = ctx.values['state-file'] ?? DEFAULT_STATE_FILE;
  const timeout = drainTimeoutMs(ctx.values['drain-timeout']);
  const agent = createClusterAgent({
    api, node, kernel, run: ctx.run, log: ctx.log,
    ...(metrics ? { metrics } : {}),
    ...(timeout !== undefined ? { drainTimeoutMs: timeout } : {}),
    ...syncOpts,
    // The owner record: `lvs-agent show` labels services with it; a restarted agent holds by it.
    stateFile,
    ...(ha ? { ha } : {}),
  });
  const ac = new AbortController();
  // Said when it happens: the kubelet's grace period (30 s in the chart) runs from here, and what
  // the stop does after it (the director's release at the end) shows against this line.
  const stop = (signal: string) => () => { ctx.log.info({ op: 'stop', signal }, 'stopping: rules and preparations stay, the director role is released if nothing is left to serve'); ac.abort(); };
  process.once('SIGTERM', stop('SIGTERM'));
  process.once('SIGINT', stop('SIGINT'));
  const stats = metrics ? ipvsStats(statsLevel, ctx.log, agent.owned) : undefined;
  const http = metrics ? await startAgentHttp(ctx.values['metrics-address']!, metrics, agent.health, agent.announcing, stats, agent.synced) : undefined;
  ctx.log.info({ node, op: 'start', metrics: http?.port, election: ha ? `${ha.listen.address}:${ha.listen.port}` : 'off' }, 'lvs-agent running in cluster mode');
  try {
    await agent.run(ac.signal);
  } finally {
    // A failed start (e.g. --peer-listen not an address of this node) must end the process: its
    // watches stop with the signal.
    ac.abort();
    stopGcLog();
    await http?.close();
    await stats?.close();
    await kernel.close();
  }
  ctx.log.info({ op: 'stop' }, 'lvs-agent stopped');
  return 0;
}

/** No lock: show only reads (../agent/lock.ts). */
export async function showCommand(ctx: CommandContext): Promise<number> {
  const kernel = await openIpvs(ctx.run, ctx.log);
  try {
    const [state, obs] = await Promise.all([kernel.dump(), observeDirector(ctx.run)]);
    const stateFile = ctx.values['state-file'] ?? DEFAULT_STATE_FILE;
    const view = showView(state, ownedAddresses(obs.device), readOwnerRecord(stateFile), Boolean(ctx.values.all), readHealthRecord(healthFileOf(stateFile)));
    console.log(ctx.values.json ? JSON.stringify(view, null, 2) : formatShow(view));
    return 0;
  } finally {
    await kernel.close();
  }
}

function targetOf(values: CommandContext['values']): NetnsTarget {
  if (values.netns !== undefined && values.pid !== undefined) throw new UsageError('--netns and --pid: give one of them, not both');
  if (values.netns !== undefined) return { kind: 'named', name: values.netns };
  if (values.pid !== undefined) {
    if (!/^[1-9]\d*$/.test(values.pid)) throw new UsageError(`--pid: must be a process id, got ${JSON.stringify(values.pid)}`);
    return { kind: 'pid', pid: Number(values.pid) };
  }
  return { kind: 'host' };
}

/** No lock: a real server's namespace is nothing a director agent writes (../agent/lock.ts). */
export async function prepareCommand(ctx: CommandContext): Promise<number> {
  const mode = ctx.values.forwarding;
  if (mode !== 'DR' && mode !== 'TUN') throw new UsageError(`--forwarding: must be DR or TUN (NAT real servers need no preparation), got ${JSON.stringify(mode)}`);
  const vips = ctx.values.vip ?? [];
  if (vips.length === 0) throw new UsageError('--vip: at least one VIP is required');
  const encap = ctx.values.encap;
  if (encap !== undefined && encap !== '4' && encap !== '6') throw new UsageError(`--encap: must be 4 or 6 (the real server's address family), got ${JSON.stringify(encap)}`);
  const target = targetOf(ctx.values);
  const wanted = vips.map((vip) => ({ mode: mode as RealServerMode, vip, ...(encap ? { encap: Number(encap) as 4 | 6 } : {}) }));
  const r = await prepareRealServer({ run: ctx.run, logger: ctx.log }, target, wanted);
  const what = (v: RealServerVip) => `${v.vip} (${v.mode}${v.encap ? ` over IPv${v.encap}` : ''})`;
  console.log(`${r.target}: ${r.changed ? `${r.changes.length} change(s)` : 'already prepared'}; prepared for ${r.owned.map(what).join(', ') || 'nothing'}`);
  return 0;
}

export async function cleanupCommand(ctx: CommandContext): Promise<number> {
  if (ctx.values.netns !== undefined || ctx.values.pid !== undefined) {
    const r = await cleanupRealServer({ run: ctx.run, logger: ctx.log }, targetOf(ctx.values));
    console.log(`${r.target}: ${r.changed ? `${r.changes.length} change(s) undone` : 'nothing of ours to remove'}`);
    return 0;
  }
  // Tearing lvs0 and the nft tables down under a running agent would only start a fight.
  await acquireAgentLock('cleanup');
  const owned = new Set(ownedAddresses((await observeDirector(ctx.run)).device).map(canonicalAddress));
  const kernel = await openIpvs(ctx.run, ctx.log);
  let removed = 0;
  try {
    for (const { service } of await kernel.dump()) {
      if (service.fwmark || !owned.has(canonicalAddress(service.address))) continue;
      await kernel.deleteService(service);
      removed++;
    }
  } finally {
    await kernel.close();
  }
  await teardownDirector({ run: ctx.run, logger: ctx.log });
  rmSync(ctx.values['state-file'] ?? DEFAULT_STATE_FILE, { force: true });
  console.log(`removed ${removed} IPVS service(s) on ${owned.size} owned VIP(s), lvs0 and our nft tables`);
  return 0;
}
