// Guest suite of test/kernel/agent.test.ts: the agent refuses on its own to adopt a VIP that is
// already someone else's on this node. In a namespace of its own, kube-ipvs0 (a dummy device)
// holds kube-dns's ClusterIP 10.96.0.10/32 with an IPVS service UDP 10.96.0.10:53 → a CoreDNS
// pod, added with ipvsadm exactly as kube-proxy's IPVS mode would, and lo holds 198.51.100.7/32.
// `lvs-agent apply` then gets manifests claiming TCP 10.96.0.10:9999 and TCP 198.51.100.7:80 beside
// one legitimate VIP: only the legitimate one is programmed and bound on lvs0; kube-proxy's
// service, kube-ipvs0 and lo stay exactly as they were; the refusals name the device; exit 1.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { kernelSnapshot, rulesOf } from '../../../lab/guest/agent-net.ts';
import { nsRun, sh } from '../../../lab/guest/netns.ts';
import { agent, timed } from './agent/cli.ts';

const uvuSuite = suite('lvs-agent refuses to adopt addresses and IPVS services of others (kube-proxy\'s kube-ipvs0, lo)');
const test = timed(uvuSuite);
const NS = 'adopt';
const DIR = '/run/agent-adoption/manifests';
const STATE = '/run/lvs-agent/adoption.json';
const DNS = '10.96.0.10';
const ON_LO = '198.51.100.7';
const LEGIT = '203.0.113.90';
const KUBE_PROXY = [`-A -u ${DNS}:53 -s rr`, `-a -u ${DNS}:53 -r 10.244.1.7:53 -m -w 1`];

const vs = (name: string, address: string, port: number) => `apiVersion: lvs.dev/v1alpha1
kind: VirtualServer
metadata: {name: ${name}}
spec:
  addresses: [${address}]
  ports: [{name: p, port: ${port}, protocol: TCP}]
  forwarding: NAT
  scheduler: {name: rr}
  backends: {static: [{address: 172.16.0.2}]}
`;

/** Address → device names, in the namespace. */
function addresses(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const links = JSON.parse(nsRun(NS, ['ip', '-j', 'addr', 'show'])) as Array<{ ifname: string; addr_info?: Array<{ local: string }> }>;
  for (const l of links) for (const a of l.addr_info ?? []) out.set(a.local, [...(out.get(a.local) ?? []), l.ifname]);
  return out;
}

let before: { save: string; kubeIpvs0: string; lo: string } | undefined;

uvuSuite.after(() => { sh(`ip netns del ${NS} 2>/dev/null || true`); });

test('setup: kube-ipvs0 with the ClusterIP and kube-proxy\'s UDP :53 service (ipvsadm), an address on lo', () => {
  sh([
    `ip netns add ${NS}`, `ip -n ${NS} link set lo up`,
    `ip -n ${NS} link add kube-ipvs0 type dummy`, `ip -n ${NS} addr add ${DNS}/32 dev kube-ipvs0`,
    `ip -n ${NS} addr add ${ON_LO}/32 dev lo`,
    ...KUBE_PROXY.map((r) => `ip netns exec ${NS} ipvsadm ${r}`),
  ].join('\n') + '\n');
  const snap = kernelSnapshot(NS);
  assert.equal(rulesOf(snap.save, DNS), KUBE_PROXY);
  before = { save: snap.save, kubeIpvs0: nsRun(NS, ['ip', '-br', 'addr', 'show', 'dev', 'kube-ipvs0']), lo: nsRun(NS, ['ip', '-br', 'addr', 'show', 'dev', 'lo']) };
  mkdirSync(DIR, { recursive: true });
  writeFileSync(join(DIR, 'claims.yaml'), [vs('dns-claim', DNS, 9999), vs('lo-claim', ON_LO, 80), vs('legit', LEGIT, 80)].join('---\n'));
});

for (const round of ['first apply', 'second apply (restart: the record must not make the refused VIPs ours)']) {
  test(`${round}: only the legitimate VIP is adopted; kube-proxy's service and addresses untouched; refusals named; exit 1`, async () => {
    const r = await agent(NS, ['apply', '-f', DIR, '--state-file', STATE]);
    assert.is(r.code, 1, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, `VIP ${DNS} is already assigned to kube-ipvs0 on this node; not adopted`);
    assert.match(r.stdout, `VIP ${ON_LO} is already assigned to lo on this node; not adopted`);
    const snap = kernelSnapshot(NS);
    assert.equal(rulesOf(snap.save, DNS), KUBE_PROXY, 'kube-proxy\'s service changed');
    assert.equal(rulesOf(snap.save, ON_LO), [], 'a service was created on lo\'s address');
    assert.equal(rulesOf(snap.save, LEGIT), [`-A -t ${LEGIT}:80 -s rr`, `-a -t ${LEGIT}:80 -r 172.16.0.2:80 -m -w 1`]);
    const addrs = addresses();
    assert.equal([addrs.get(DNS), addrs.get(ON_LO), addrs.get(LEGIT)], [['kube-ipvs0'], ['lo'], ['lvs0']]);
    assert.is(nsRun(NS, ['ip', '-br', 'addr', 'show', 'dev', 'kube-ipvs0']), before!.kubeIpvs0);
    assert.is(nsRun(NS, ['ip', '-br', 'addr', 'show', 'dev', 'lo']), before!.lo);
    const record = JSON.parse(readFileSync(STATE, 'utf8')) as { owners: Record<string, string> };
    assert.equal(Object.keys(record.owners), [`TCP/${LEGIT}:80`], 'refused keys recorded as ours');
  });
}

uvuSuite.run();
