// lab/guest/kube-proxy.ts: the KubeProxyConfiguration the lab runs kube-proxy with, and the
// metrics parsing its sync wait relies on. (The binary itself runs in lab/kube-proxy-probe.ts.)
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { kubeProxyConfig, metricValue } from '../../lab/guest/kube-proxy.ts';

const test = suite('lab: kube-proxy configuration');
const base = { kubeconfig: '/tmp/kp.kubeconfig', node: 'lvs-node-1', mode: 'nftables' as const, clusterCidr: '10.244.0.0/16' };
const parse = (s: string) => JSON.parse(s) as Record<string, unknown>;

test('the system tier node: nftables, the pods CIDR, metrics and healthz on loopback, defaults left alone', () => {
  assert.equal(parse(kubeProxyConfig(base)), {
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration',
    clientConnection: { kubeconfig: '/tmp/kp.kubeconfig' }, hostnameOverride: 'lvs-node-1', mode: 'nftables',
    clusterCIDR: '10.244.0.0/16', detectLocalMode: 'ClusterCIDR',
    metricsBindAddress: '127.0.0.1:10249', healthzBindAddress: '127.0.0.1:10256',
  });
});

test('dual-stack CIDRs are comma-joined; ports are chosen', () => {
  const c = parse(kubeProxyConfig({ ...base, clusterCidr: ['10.244.0.0/16', 'fd00:10:244::/56'], metricsPort: 20249, healthzPort: 20256 }));
  assert.is(c.clusterCIDR, '10.244.0.0/16,fd00:10:244::/56');
  assert.is(c.metricsBindAddress, '127.0.0.1:20249');
  assert.is(c.healthzBindAddress, '127.0.0.1:20256');
});

test('keepConntrackSysctls sets every conntrack knob to 0 (leave as is)', () => {
  const c = parse(kubeProxyConfig({ ...base, keepConntrackSysctls: true }));
  assert.equal(c.conntrack, { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s', udpTimeout: '0s', udpStreamTimeout: '0s' });
});

test('ipvs options only with mode ipvs', () => {
  assert.equal(parse(kubeProxyConfig({ ...base, mode: 'ipvs' })).ipvs, { scheduler: 'rr', strictARP: false });
  assert.equal(parse(kubeProxyConfig({ ...base, mode: 'ipvs', ipvsScheduler: 'wrr', strictArp: true })).ipvs, { scheduler: 'wrr', strictARP: true });
  assert.equal(parse(kubeProxyConfig({ ...base, mode: 'ipvs', ipvsExcludeCidrs: ['198.51.100.0/24'] })).ipvs, { scheduler: 'rr', strictARP: false, excludeCIDRs: ['198.51.100.0/24'] });
  assert.throws(() => kubeProxyConfig({ ...base, mode: 'ipvs', ipvsExcludeCidrs: ['198.51.100.0'] }), /ipvsExcludeCidrs/);
  assert.throws(() => kubeProxyConfig({ ...base, strictArp: true }), /need mode ipvs/);
  assert.throws(() => kubeProxyConfig({ ...base, ipvsExcludeCidrs: ['198.51.100.0/24'] }), /need mode ipvs/);
  assert.is(parse(kubeProxyConfig({ ...base, mode: 'iptables' })).ipvs, undefined);
});

test('nodePortAddresses: CIDRs or primary, in every mode', () => {
  assert.equal(parse(kubeProxyConfig({ ...base, mode: 'ipvs', nodePortAddresses: ['primary'] })).nodePortAddresses, ['primary']);
  assert.equal(parse(kubeProxyConfig({ ...base, nodePortAddresses: ['10.0.2.15/32'] })).nodePortAddresses, ['10.0.2.15/32']);
  assert.is(parse(kubeProxyConfig(base)).nodePortAddresses, undefined);
  assert.throws(() => kubeProxyConfig({ ...base, nodePortAddresses: [] }), /nodePortAddresses/);
  assert.throws(() => kubeProxyConfig({ ...base, nodePortAddresses: ['primary', '10.0.2.15/32'] }), /nodePortAddresses/);
  assert.throws(() => kubeProxyConfig({ ...base, nodePortAddresses: ['10.0.2.15'] }), /nodePortAddresses/);
});

test('bad input is refused', () => {
  assert.throws(() => kubeProxyConfig({ ...base, clusterCidr: '10.244.0.0' }), /clusterCidr/);
  assert.throws(() => kubeProxyConfig({ ...base, clusterCidr: [] }), /clusterCidr/);
  assert.throws(() => kubeProxyConfig({ ...base, metricsPort: 0 }), /metrics port/);
  assert.throws(() => kubeProxyConfig({ ...base, healthzPort: 70000 }), /healthz port/);
});

test('metricValue reads an unlabelled sample, and nothing from a longer name', () => {
  const text = [
    '# HELP kubeproxy_sync_proxy_rules_last_timestamp_seconds [ALPHA] The last time proxy rules were successfully synced',
    '# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge',
    'kubeproxy_sync_proxy_rules_last_timestamp_seconds_total 9',
    'kubeproxy_sync_proxy_rules_last_timestamp_seconds 1.7647968412345679e+09',
  ].join('\n');
  assert.is(metricValue(text, 'kubeproxy_sync_proxy_rules_last_timestamp_seconds'), 1.7647968412345679e+09);
  assert.is(metricValue(text, 'kubeproxy_sync_full_proxy_rules_duration_seconds'), undefined);
});

test.run();
