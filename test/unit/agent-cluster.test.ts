// The cluster agent end to end over fakes (kernel, Kubernetes API, commands): the node report it
// writes in status.nodes says programmed only when its last sync of that generation had no error
// of any kind, and names the failing step when it had one; once the failure clears, the next
// report says programmed again.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { createClusterAgent } from '../../dataplane/agent/cluster.ts';
import type { NetnsFinder } from '../../dataplane/agent/netns.ts';
import { CommandError, type NetnsTarget, type Runner } from '../../dataplane/exec.ts';
import { FakeIpvsKernel } from '../../dataplane/ipvs/fake.ts';
import { FakeKernel } from '../../dataplane/realserver/fake-netns.ts';
import { ManualClock } from '../../kube/clock.ts';
import { FakeKubeApi } from '../../kube/testing/fake.ts';
import { VIRTUAL_SERVERS, type NodeReport, type VirtualServerObject } from '../../kube/types.ts';

const test = suite('agent: cluster agent reports what it programmed, honestly');
const VIP = '203.0.113.10';
const POD = '10.244.2.7';

/** A VirtualServer as the controller leaves it: n1 directs it, its DR real server is on n2. */
function virtualServer(): VirtualServerObject {
  return {
    apiVersion: 'lvs.dev/v1alpha1', kind: 'VirtualServer',
    metadata: { name: 'web', namespace: 'default' },
    spec: { addresses: [VIP], ports: [{ name: 'http', port: 80, protocol: 'TCP' }], forwarding: 'DR', scheduler: { name: 'rr' }, backends: { static: [{ address: POD }] } },
    status: {
      observedGeneration: 1, directors: ['n1'], services: [`TCP/${VIP}:80`],
      realServers: [{ port: 'http', address: POD, targetPort: 80, weight: 1, state: 'Ready', node: 'n2' }],
    },
  };
}

/** Commands run through the netns model; `failing` makes matching ones fail as the tool would. */
function commands() {
  const host = new FakeKernel({ ipipLoaded: true });
  const state = { failing: undefined as ((argv: string[]) => boolean) | undefined };
  const run: Runner = async (cmd, args, o) => {
    if (state.failing?.([cmd, ...args])) throw new CommandError([cmd, ...args], 2, null, '', 'RTNETLINK answers: Operation not permitted\n');
    return host.runner()(cmd, args, o);
  };
  return { host, run, state };
}

const POD_NS: NetnsTarget = { kind: 'named', name: 'pod-web' };
const finder: NetnsFinder = {
  async find(addresses) { return new Map(addresses.filter((a) => a === POD).map((a) => [a, POD_NS] as const)); },
  size: () => 1,
  async confirm(_t, addresses) { return [...addresses]; },
  forget() {},
};

/** The agent of `node`, running, after its first sync and real-server pass (failures injected first). */
async function start(node: string, o: { kernel?: FakeIpvsKernel; failing?: (argv: string[]) => boolean } = {}) {
  const kernel = o.kernel ?? new FakeIpvsKernel();
  const api = new FakeKubeApi();
  api.apply(VIRTUAL_SERVERS, virtualServer());
  const clock = new ManualClock();
  const cmd = commands();
  cmd.state.failing = o.failing;
  const dir = mkdtempSync(join(tmpdir(), 'agent-cluster-'));
  const agent = createClusterAgent({
    api, node, kernel, run: cmd.run, log: pino({ level: 'silent' }), clock, finder, returnPathRecord: join(dir, 'return-path.json'),
  });
  const ctl = new AbortController();
  const running = agent.run(ctl.signal);
  const report = (): NodeReport | undefined => api.peek<VirtualServerObject>(VIRTUAL_SERVERS, 'default', 'web')?.status?.nodes?.find((n) => n.name === node);
  const stop = async () => { ctl.abort(); await clock.advance(0); await running; rmSync(dir, { recursive: true, force: true }); };
  await clock.advance(0);
  await clock.advance(100);
  return { api, clock, cmd, kernel, report, stop };
}

test('kernel read-back fails (EPERM): programmed false, naming the step; true once it clears', async () => {
  const kernel = new FakeIpvsKernel();
  kernel.fail('dump', 'EPERM');
  const a = await start('n1', { kernel });
  try {
    assert.is(kernel.mutations, 0);
    const r = a.report();
    assert.is(r?.programmed, false, JSON.stringify(r));
    assert.match(r!.message!, /^kernel read-back failed: .*EPERM/);
    kernel.clearFailures();
    await a.clock.advance(5_000);
    assert.equal([a.report()?.programmed, a.report()?.message], [true, '']);
    assert.ok(a.kernel.snapshot().length === 1, 'the service is programmed');
  } finally { await a.stop(); }
});

test('binding the VIP on lvs0 fails: programmed false, naming lvs0; true once it clears', async () => {
  const a = await start('n1');
  try {
    assert.is(a.report()?.programmed, true, 'clean start');
  } finally { await a.stop(); }
  const b = await start('n1', { failing: (argv) => argv[0] === 'ip' && argv[1] === '-batch' });
  try {
    const r = b.report();
    assert.is(r?.programmed, false, JSON.stringify(r));
    assert.match(r!.message!, /^binding VIPs on lvs0 failed: ip -batch/);
    assert.match(r!.message!, /Operation not permitted/);
    b.cmd.state.failing = undefined;
    await b.clock.advance(5_000);
    assert.equal([b.report()?.programmed, b.report()?.message], [true, '']);
    assert.ok(b.cmd.host.ns('host').links.get('lvs0')?.addrs.some((x) => x.address === VIP), 'VIP bound');
  } finally { await b.stop(); }
});

test('preparing a real server fails: its node reports programmed false, naming the step; true once it clears', async () => {
  const a = await start('n2', { failing: (argv) => argv[0] === 'nsenter' && argv.includes('--net=/run/netns/pod-web') && argv.includes('sysctl') && argv.includes('-w') });
  try {
    const r = a.report();
    assert.is(r?.programmed, false, JSON.stringify(r));
    assert.match(r!.message!, /^real-server preparation failed: netns:pod-web: .*sysctl/);
    assert.equal(r?.preparedRealServers, []);
    await a.clock.advance(6_000);
    assert.is(a.report()?.programmed, false, 'still failing: retried, still reported');
    a.cmd.state.failing = undefined;
    // Nothing else changes: the failed pass is retried on its own.
    await a.clock.advance(6_000);
    assert.equal([a.report()?.programmed, a.report()?.message, a.report()?.preparedRealServers], [true, '', [POD]]);
  } finally { await a.stop(); }
});

test.run();
