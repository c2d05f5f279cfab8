// The system tier's health-check scenario (cluster mode, run after the scale-up scenario: three web
// pods ready): a Service-backed VirtualServer with a TCP health check over the web pods. One pod's process is killed while its endpoint stays Ready
// in the EndpointSlice (what pod readiness cannot see: the path from the director): the director
// takes it out of rotation (weight 0), no client connection fails, and the VirtualServer's status,
// the node's AgentReport and an Event say so; restarted, it is back in rotation.
import * as assert from 'uvu/assert';
import { resourcePath } from '../../../../kube/types.ts';
import { VIRTUAL_SERVERS } from '../../../../lab/guest/objects.ts';
import { startPodServer } from './traffic.ts';
import { dests, ipvs, until } from './wait.ts';
import { NS, PORT, POD_NETS, virtualServer, waitProgrammed, type VsObj, type World } from './world.ts';

export const VIP_CHECKED = '198.51.100.14';
const NAME = 'web-checked';

interface EventObj { reason?: string; note?: string; regarding?: { name?: string } }
type Health = { down: number; unhealthy: Array<{ node: string; address: string; port: number; message: string }> };

async function events(w: World, reason: string): Promise<string[]> {
  const list = await w.kube.request<{ items: EventObj[] }>('GET', `/apis/events.k8s.io/v1/namespaces/${NS}/events`);
  return list.items.filter((e) => e.reason === reason && e.regarding?.name === NAME).map((e) => e.note ?? '');
}

const healthOf = async (w: World) => (await w.vs(NAME) as VsObj & { status?: { health?: Health } }).status?.health;

export async function healthCheckedService(w: World, tally: (vip: string, n: number) => Promise<Record<string, number>>): Promise<void> {
  const vs = virtualServer(NAME, VIP_CHECKED, 'NAT', 'web') as ReturnType<typeof virtualServer> & { spec: Record<string, unknown> };
  vs.spec.healthCheck = { tcp: {}, intervalSeconds: 1, timeoutSeconds: 1, failureThreshold: 2, successThreshold: 1 };
  await w.kube.create(VIRTUAL_SERVERS, NS, vs);
  try {
    await waitProgrammed(w, NAME, 180_000);
    // The three web pods (after the scale-up scenario) each pass their first check.
    const live = await until('all three checked pods in rotation', () => {
      const d = dests(ipvs(), VIP_CHECKED, PORT);
      return d.length === 3 && d.every((x) => x.endsWith(' Masq 1')) ? d : undefined;
    }, { timeoutMs: 60_000, show: () => dests(ipvs(), VIP_CHECKED, PORT) });
    const [victimDest] = live;
    const victimIp = victimDest!.split(':')[0]!;
    const victim = Object.entries(POD_NETS).find(([, n]) => n.ip === victimIp)![0];
    assert.equal((await healthOf(w))?.down, 0);

    w.servers.get(victim)!.stop();
    const t0 = Date.now();
    await until(`${victim} out of rotation`, () => dests(ipvs(), VIP_CHECKED, PORT).includes(`${victimIp}:8080 Masq 0`) || undefined, { timeoutMs: 30_000, everyMs: 100, show: () => dests(ipvs(), VIP_CHECKED, PORT) });
    const outMs = Date.now() - t0;
    console.log(`# health: ${victim} killed -> weight 0 in ${outMs} ms (failureThreshold 2 x interval 1 s)`);
    const got = await tally(VIP_CHECKED, 20);
    assert.is(got[victim], undefined, `no connection to the dead ${victim}: ${JSON.stringify(got)}`);
    assert.is(Object.values(got).reduce((a, b) => a + b, 0), 20);
    const report = await w.report();
    assert.equal(report?.health?.unhealthy.map((u) => `${u.virtualServer} ${u.address}:${u.port} ${u.message}`), [`${NS}/${NAME} ${victimIp}:8080 connection refused`]);
    const h = await until('status.health names the dead pod', async () => { const x = await healthOf(w); return x?.down === 1 ? x : undefined; }, { timeoutMs: 60_000, show: () => healthOf(w) });
    assert.equal(h.unhealthy.map((u) => `${u.node} ${u.address}:${u.port} ${u.message}`), [`${w.env.node} ${victimIp}:8080 connection refused`]);
    const down = await until('a RealServerDown Event', async () => { const e = await events(w, 'RealServerDown'); return e.length ? e : undefined; }, { timeoutMs: 60_000 });
    assert.match(down[0]!, `${victimIp}:8080 out of rotation on node ${w.env.node}: connection refused`);

    w.servers.set(victim, await startPodServer(POD_NETS[victim]!.ns, victim, [8080]));
    const t1 = Date.now();
    await until(`${victim} back in rotation`, () => dests(ipvs(), VIP_CHECKED, PORT).includes(`${victimIp}:8080 Masq 1`) || undefined, { timeoutMs: 30_000, everyMs: 100, show: () => dests(ipvs(), VIP_CHECKED, PORT) });
    console.log(`# health: ${victim} restarted -> weight 1 in ${Date.now() - t1} ms (successThreshold 1)`);
    await until('status.health clear', async () => ((await healthOf(w))?.down === 0 ? true : undefined), { timeoutMs: 60_000, show: () => healthOf(w) });
    await until('a RealServerUp Event', async () => ((await events(w, 'RealServerUp')).length ? true : undefined), { timeoutMs: 60_000 });
    const again = await tally(VIP_CHECKED, 20);
    assert.ok((again[victim] ?? 0) > 0, `${victim} takes connections again: ${JSON.stringify(again)}`);
  } finally {
    await w.kube.request('DELETE', resourcePath(VIRTUAL_SERVERS, NS, NAME)).catch(() => {});
    // Gone from the kernel before the next scenario starts: its work must not overlap this one's.
    await until(`${VIP_CHECKED} gone from the kernel`, () => !ipvs().some((s) => s.address === VIP_CHECKED) || undefined, { timeoutMs: 120_000, show: () => dests(ipvs(), VIP_CHECKED, PORT) });
  }
}
