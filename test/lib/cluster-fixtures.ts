// Shared fixtures for the cluster-mode agent tests: plans as the controller publishes them
// (api/plan-slice.ts slicePlan), and a running agent over fakes (Kubernetes API, IPVS kernel,
// commands and network namespaces) driven by a manual clock.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { parseAgentReport, type AgentReportObject } from '../../api/agent-report.ts';
import { slicePlan, type OwnerPlan } from '../../api/plan-slice.ts';
import { createClusterAgent, type ClusterAgentOptions } from '../../dataplane/cluster/agent.ts';
import type { NetnsFinder } from '../../dataplane/agent/netns.ts';
import { CommandError, type NetnsTarget, type Runner } from '../../dataplane/exec.ts';
import { FakeIpvsKernel } from '../../dataplane/ipvs/testing/fake.ts';
import { FakeKernel } from '../../dataplane/realserver/testing/fake-netns.ts';
import { ManualClock } from '../../kube/clock.ts';
import { FakeKubeApi } from '../../kube/testing/fake.ts';
import { AGENT_REPORTS, PLAN_SLICES, type KubeObject } from '../../kube/types.ts';

export { otherReport, ownerPlan, POD, service, VIP } from './plan-fixtures.ts';
import { POD } from './plan-fixtures.ts';

/** Writes the plan's slices as the controller would (create or replace). */
export function publish(api: FakeKubeApi, plan: OwnerPlan): void {
  for (const s of slicePlan(plan)) api.apply(PLAN_SLICES, s as unknown as KubeObject);
}

export function unpublish(api: FakeKubeApi, plan: OwnerPlan): void {
  for (const s of api.all<KubeObject & { owner: { uid: string } }>(PLAN_SLICES)) if (s.owner.uid === plan.owner.uid) api.remove(PLAN_SLICES, undefined, s.metadata.name);
}

/** Commands run through the netns model; `failing` makes matching ones fail as the tool would. */
export function commands() {
  const host = new FakeKernel({ ipipLoaded: true });
  const state = { failing: undefined as ((argv: string[]) => boolean) | undefined };
  const run: Runner = async (cmd, args, o) => {
    if (state.failing?.([cmd, ...args])) throw new CommandError([cmd, ...args], 2, null, '', 'RTNETLINK answers: Operation not permitted\n');
    return host.runner()(cmd, args, o);
  };
  return { host, run, state };
}

export const POD_NS: NetnsTarget = { kind: 'named', name: 'pod-web' };

/** Finds POD in POD_NS once `present.pod` is true (a pod that has started). */
export function podFinder(present = { pod: true }): NetnsFinder {
  return {
    async find(addresses) { return new Map(addresses.filter((a) => a === POD && present.pod).map((a) => [a, POD_NS] as const)); },
    size: () => 1,
    async confirm(_t, addresses) { return present.pod ? [...addresses] : []; },
    forget() {},
  };
}

export interface Harness {
  api: FakeKubeApi;
  clock: ManualClock;
  kernel: FakeIpvsKernel;
  cmd: ReturnType<typeof commands>;
  dir: string;
  /** This node's stored report, parsed. */
  report(): AgentReportObject | undefined;
  /** "TCP/vip:port -> addr:port w=N" lines of the kernel. */
  view(): string[];
  /** The running agent's synced() (/readyz); false when not started. */
  synced(): boolean;
  start(over?: Partial<ClusterAgentOptions>): Promise<void>;
  stop(): Promise<void>;
  /** stop(), then remove the temporary directory. */
  close(): Promise<void>;
}

/** An agent of `node` over fakes, not started; state that survives a restart (kernel, api, dir) is shared. */
export function harness(node: string, o: { api?: FakeKubeApi; kernel?: FakeIpvsKernel; clock?: ManualClock; finder?: NetnsFinder } = {}): Harness {
  const clock = o.clock ?? new ManualClock();
  const api = o.api ?? new FakeKubeApi(() => clock.wallNow());
  const kernel = o.kernel ?? new FakeIpvsKernel();
  const cmd = commands();
  const dir = mkdtempSync(join(tmpdir(), 'cluster-agent-'));
  let ctl: AbortController | undefined;
  let running: Promise<void> | undefined;
  let agent: ReturnType<typeof createClusterAgent> | undefined;
  const h: Harness = {
    api, clock, kernel, cmd, dir,
    report() {
      const r = api.peek(AGENT_REPORTS, undefined, node);
      const p = r ? parseAgentReport(r) : undefined;
      return p?.ok ? p.value : undefined;
    },
    view: () => kernel.snapshot().flatMap((s) => s.destinations.length === 0
      ? [`${s.service.protocol}/${s.service.address}:${s.service.port}`]
      : s.destinations.map((d) => `${s.service.protocol}/${s.service.address}:${s.service.port} -> ${d.address}:${d.port} w=${d.weight}`)),
    synced: () => agent?.synced() ?? false,
    async start(over = {}) {
      agent = createClusterAgent({
        api, node, kernel, run: cmd.run, log: pino({ level: 'silent' }), clock, finder: o.finder ?? podFinder(),
        returnPathRecord: join(dir, 'return-path.json'), stateFile: join(dir, 'owners.json'), ...over,
      });
      ctl = new AbortController();
      running = agent.run(ctl.signal);
      await clock.advance(0);
      await clock.advance(100);
    },
    async stop() {
      ctl?.abort();
      await clock.advance(0);
      await running;
      ctl = undefined;
    },
    async close() {
      await h.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return h;
}
