// The chart rendered by the real Helm v4 CLI: lint, default and non-default values, values the
// schema rejects, RBAC rules equal to the components' own rbac files, the security properties of
// both workloads, the CRD equal to crds/, and a packaged chart that carries its symlinked files.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parse } from 'yaml';
import { gated } from '../lib/prereq.ts';
import { chartDir, helm, helmPrereqs, NAMESPACE, one, parseDocs, RELEASE, render, root, scratchFile, valuesArgs, type Obj } from './helm.ts';

const test = gated(suite('chart: render'), helmPrereqs());

const fileRules = (path: string): Obj[] => (parse(readFileSync(join(root, path), 'utf8')) as Obj).rules as Obj[];
const kinds = (docs: Obj[]) => docs.map((d) => `${d.kind}/${d.metadata.name}`).sort();
const container = (workload: Obj): Obj => workload.spec.template.spec.containers[0];
const LEASE_GROUP = 'coordination.k8s.io';

let defaults: Obj[] = [];
test.before(async () => { defaults = await render(); });

test('helm lint passes with default and with non-default values', async () => {
  for (const values of [{}, { controller: { replicas: 3 }, agent: { kernelModules: { load: false } }, serviceMonitor: { enabled: true } }]) {
    const r = await helm(['lint', '--strict', chartDir, '--namespace', NAMESPACE, ...valuesArgs(values)]);
    assert.is(r.code, 0, `helm lint ${JSON.stringify(values)}:\n${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  }
});

test('default render: exactly the expected objects, all in the release namespace', () => {
  const base = `${RELEASE}-lvs-operator`;
  assert.equal(kinds(defaults), [
    `ClusterRole/${base}-agent`, `ClusterRole/${base}-controller`, `ClusterRole/${base}-edit`, `ClusterRole/${base}-view`,
    `ClusterRoleBinding/${base}-agent`, `ClusterRoleBinding/${base}-controller`,
    'CustomResourceDefinition/agentreports.lvs.dev', 'CustomResourceDefinition/planslices.lvs.dev', 'CustomResourceDefinition/vippools.lvs.dev',
    'CustomResourceDefinition/virtualservers.lvs.dev',
    `DaemonSet/${base}-agent`, `Deployment/${base}-controller`,
    `Role/${base}-controller-leader-election`, `RoleBinding/${base}-controller-leader-election`,
    `Secret/${base}-agent-peer-key`, `Service/${base}-controller-metrics`,
    `ServiceAccount/${base}-agent`, `ServiceAccount/${base}-controller`,
    `ValidatingAdmissionPolicy/${base}-agent-own-report`, `ValidatingAdmissionPolicyBinding/${base}-agent-own-report`,
    `ValidatingAdmissionPolicy/${base}-controller-owned-virtualservers`, `ValidatingAdmissionPolicyBinding/${base}-controller-owned-virtualservers`,
  ].sort());
  // The owned-VirtualServer policy names this release's controller ServiceAccount, not the lab's user.
  const owned = defaults.find((d) => d.kind === 'ValidatingAdmissionPolicy' && d.metadata.name === `${base}-controller-owned-virtualservers`);
  assert.equal(owned?.spec.matchConditions, [{ name: 'the-controller', expression: `request.userInfo.username == 'system:serviceaccount:${NAMESPACE}:${base}-controller'` }]);
  assert.is(defaults.find((d) => d.kind === 'ValidatingAdmissionPolicyBinding' && d.metadata.name === `${base}-controller-owned-virtualservers`)?.spec.policyName, `${base}-controller-owned-virtualservers`);
  const clusterScoped = new Set(['ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding']);
  for (const d of defaults) {
    if (clusterScoped.has(d.kind)) assert.is(d.metadata.namespace, undefined, `${d.kind} has a namespace`);
    else assert.is(d.metadata.namespace, NAMESPACE, `${d.kind}/${d.metadata.name} namespace`);
  }
});

test('the CRDs are crds/*.yaml themselves, kept on uninstall by default', async () => {
  for (const file of ['agentreport', 'planslice', 'vippool', 'virtualserver']) {
    const source = parse(readFileSync(join(root, `crds/${file}.yaml`), 'utf8')) as Obj;
    const crd = defaults.find((d) => d.kind === 'CustomResourceDefinition' && d.metadata.name === source.metadata.name);
    assert.ok(crd, `${source.metadata.name} not rendered`);
    assert.equal(crd.spec, source.spec, `spec differs from crds/${file}.yaml`);
    assert.is(crd.metadata.annotations['helm.sh/resource-policy'], 'keep');
    assert.is(crd.metadata.labels['app.kubernetes.io/managed-by'], 'Helm');
  }
  const notKept = (await render({ crds: { keep: false } })).filter((d) => d.kind === 'CustomResourceDefinition');
  assert.is(notKept.length, 4);
  for (const c of notKept) assert.is(c.metadata.annotations?.['helm.sh/resource-policy'], undefined);
  const none = await render({ crds: { install: false } });
  assert.is(none.filter((d) => d.kind === 'CustomResourceDefinition').length, 0);
});

test('controller RBAC: exactly the rules of operator/rbac/clusterrole.yaml, Lease rules namespaced', () => {
  const want = fileRules('operator/rbac/clusterrole.yaml');
  const cr = one(defaults, 'ClusterRole', '-controller');
  const role = one(defaults, 'Role', '-controller-leader-election');
  // Together they are the file, rule for rule and in order; split by scope.
  assert.equal([...cr.rules, ...role.rules], [
    ...want.filter((r) => !r.apiGroups.includes(LEASE_GROUP)), ...want.filter((r) => r.apiGroups.includes(LEASE_GROUP)),
  ]);
  assert.ok(role.rules.length > 0 && role.rules.every((r: Obj) => r.apiGroups.length === 1 && r.apiGroups[0] === LEASE_GROUP));
  assert.ok(cr.rules.every((r: Obj) => !r.apiGroups.includes(LEASE_GROUP)), 'Lease rules must not be cluster-wide');
  assert.is(role.metadata.namespace, NAMESPACE);
  const sa = one(defaults, 'ServiceAccount', '-controller').metadata.name;
  for (const [binding, roleRef] of [[one(defaults, 'ClusterRoleBinding', '-controller'), cr], [one(defaults, 'RoleBinding', '-controller-leader-election'), role]] as const) {
    assert.equal(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: roleRef.kind, name: roleRef.metadata.name });
    assert.equal(binding.subjects, [{ kind: 'ServiceAccount', name: sa, namespace: NAMESPACE }]);
  }
  // --lease-name follows the one Lease the RBAC rule names.
  const leaseNames = want.flatMap((r) => (r.resourceNames as string[] | undefined) ?? []);
  assert.ok(container(one(defaults, 'Deployment')).args.includes(`--lease-name=${leaseNames[0]}`));
});

test('agent RBAC: exactly dataplane/rbac/clusterrole.yaml, which grants only what the agent needs', () => {
  const want = fileRules('dataplane/rbac/clusterrole.yaml');
  assert.equal(want, [
    { apiGroups: ['lvs.dev'], resources: ['planslices'], verbs: ['get', 'list', 'watch'] },
    { apiGroups: ['lvs.dev'], resources: ['agentreports'], verbs: ['get', 'list', 'watch', 'create', 'update'] },
    // Its own Node's drain state (dataplane/cluster/yielding.ts): read only.
    { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch'] },
  ]);
  const cr = one(defaults, 'ClusterRole', '-agent');
  assert.equal(cr.rules, want);
  assert.equal(one(defaults, 'ClusterRoleBinding', '-agent').subjects, [{ kind: 'ServiceAccount', name: one(defaults, 'ServiceAccount', '-agent').metadata.name, namespace: NAMESPACE }]);
  assert.is(defaults.filter((d) => d.kind === 'Role' && d.metadata.name.includes('agent')).length, 0);
});

test('agent report policy: dataplane/rbac/report-policy.yaml, named after the release', () => {
  const source = parseDocs(readFileSync(join(root, 'dataplane/rbac/report-policy.yaml'), 'utf8'));
  const policy = one(defaults, 'ValidatingAdmissionPolicy', '-agent-own-report');
  const binding = one(defaults, 'ValidatingAdmissionPolicyBinding', '-agent-own-report');
  assert.equal(policy.spec, source.find((d) => d.kind === 'ValidatingAdmissionPolicy')!.spec);
  assert.equal(binding.spec, { ...source.find((d) => d.kind === 'ValidatingAdmissionPolicyBinding')!.spec, policyName: policy.metadata.name });
  assert.is(policy.metadata.name, `${RELEASE}-lvs-operator-agent-own-report`);
  assert.is(policy.metadata.labels['app.kubernetes.io/instance'], RELEASE);
});

test('controller: 2 replicas, leader election, non-root, read-only root, no capabilities, no host access', () => {
  const dep = one(defaults, 'Deployment');
  const pod = dep.spec.template.spec;
  const c = container(dep);
  assert.is(dep.spec.replicas, 2);
  assert.equal(c.command, ['node', 'dist/lvs-controller.mjs']);
  assert.ok(c.args.includes('--leader-elect=true'));
  assert.ok(c.args.includes('--metrics-port=8080'));
  for (const k of ['hostNetwork', 'hostPID', 'hostIPC']) assert.not.ok(pod[k], `pod ${k}`);
  assert.is(pod.securityContext.runAsNonRoot, true);
  assert.ok(pod.securityContext.runAsUser > 0);
  assert.is(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
  assert.is(c.securityContext.runAsNonRoot, true);
  assert.is(c.securityContext.readOnlyRootFilesystem, true);
  assert.is(c.securityContext.allowPrivilegeEscalation, false);
  assert.is(c.securityContext.privileged, false);
  assert.equal(c.securityContext.capabilities, { drop: ['ALL'] });
  assert.ok((pod.volumes as Obj[]).every((v) => !v.hostPath), 'no hostPath volume');
  const env = Object.fromEntries((c.env as Obj[]).map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath ?? e.value]));
  // The old space at 60% of the limit; a young generation of its own size, not the node's (RESULTS.md).
  assert.equal(env, { POD_NAME: 'metadata.name', POD_NAMESPACE: 'metadata.namespace', NODE_OPTIONS: '--max-old-space-size-percentage=60 --max-semi-space-size=16' });
  assert.is(c.livenessProbe.httpGet.path, '/healthz');
  assert.is(c.readinessProbe.httpGet.path, '/readyz');
  // Five minutes to start, probed every 2 s: 60 s restarted both replicas under emulation.
  assert.equal([c.startupProbe.httpGet.path, c.startupProbe.periodSeconds * c.startupProbe.failureThreshold], ['/healthz', 300]);
  assert.ok(c.startupProbe.periodSeconds <= 2, 'a fast start is seen within 2 s');
  assert.equal([c.startupProbe.timeoutSeconds, c.livenessProbe.timeoutSeconds], [5, 5]);
  assert.is(one(defaults, 'Service', '-metrics').spec.ports[0].port, 8080);
});

const ELECTION = ['--peer-key-file=/etc/lvs-agent/peer/key', '--peer-listen=$(HOST_IP):7480', '--peer-interval-ms=100', '--peer-dead-ms=350', '--peer-warmup-ms=5000'];

test('agent election: a random key Secret mounted read-only, heartbeats on the node address; off, existing Secret, connection sync', async () => {
  const ds = one(defaults, 'DaemonSet');
  const secret = one(defaults, 'Secret', '-agent-peer-key');
  assert.ok(Buffer.from(secret.data.key, 'base64').length >= 16, 'a key of at least 16 bytes');
  const pod = ds.spec.template.spec;
  const vol = (pod.volumes as Obj[]).find((v) => v.name === 'peer-key')!;
  assert.equal([vol.secret.secretName, vol.secret.defaultMode], [secret.metadata.name, 0o400], 'mode 0400, written in decimal (256): YAML 1.1 and 1.2 read 0400 differently');
  assert.equal((container(ds).volumeMounts as Obj[]).find((m) => m.name === 'peer-key'), { name: 'peer-key', mountPath: '/etc/lvs-agent/peer', readOnly: true });
  const two = (await render({ agent: { election: { existingSecret: 'my-key' } } }));
  assert.not.ok(two.some((d) => d.kind === 'Secret'), 'no generated Secret with an existing one');
  assert.is((one(two, 'DaemonSet').spec.template.spec.volumes as Obj[]).find((v) => v.name === 'peer-key')?.secret.secretName, 'my-key');
  const off = await render({ agent: { election: { enabled: false } } });
  assert.not.ok(off.some((d) => d.kind === 'Secret'));
  assert.equal(container(one(off, 'DaemonSet')).args, ['--metrics-address=$(HOST_IP):9810']);
  assert.not.ok((one(off, 'DaemonSet').spec.template.spec.volumes as Obj[]).some((v) => v.name === 'peer-key'));
  const perRs = container(one(await render({ agent: { election: { enabled: false }, metrics: { ipvsStats: 'real-servers' } } }), 'DaemonSet')).args;
  assert.equal(perRs, ['--metrics-address=$(HOST_IP):9810', '--metrics-ipvs-stats=real-servers']);
  const sync = container(one(await render({ agent: { election: { syncInterface: 'eth0', syncId: 9 } } }), 'DaemonSet')).args;
  assert.equal(sync.slice(-2), ['--sync-interface=eth0', '--sync-id=9']);
});

test('agent.minSyncIntervalMs renders --min-sync-interval-ms before extraArgs, alone too (args: guard); 0, the default, renders none', async () => {
  const flag = '--min-sync-interval-ms=2000';
  assert.not.ok(container(one(defaults, 'DaemonSet')).args.some((a: string) => a.startsWith('--min-sync-interval-ms')), 'none by default');
  const withAll = container(one(await render({ agent: { minSyncIntervalMs: 2000, extraArgs: ['--log-level=debug'] } }), 'DaemonSet')).args;
  assert.equal(withAll, ['--metrics-address=$(HOST_IP):9810', ...ELECTION, flag, '--log-level=debug']);
  const bare = { metrics: { enabled: false }, election: { enabled: false } };
  assert.equal(container(one(await render({ agent: { ...bare, minSyncIntervalMs: 2000 } }), 'DaemonSet')).args, [flag], 'the only argument: args: rendered for it');
  assert.is(container(one(await render({ agent: { ...bare, minSyncIntervalMs: 0 } }), 'DaemonSet')).args, undefined, '0: no flag, no args:');
});

test('agent: host network and PID, exactly NET_ADMIN NET_RAW SYS_ADMIN SYS_PTRACE SYS_MODULE, /lib/modules read-only', async () => {
  const check = (ds: Obj, caps: string[], modules: boolean) => {
    const pod = ds.spec.template.spec;
    const c = container(ds);
    assert.equal(c.command, ['node', 'dist/lvs-agent.mjs', 'run']);
    assert.is(pod.hostNetwork, true);
    assert.is(pod.hostPID, true);
    assert.not.ok(pod.hostIPC);
    assert.is(pod.dnsPolicy, 'ClusterFirstWithHostNet');
    assert.is(c.securityContext.privileged, false);
    assert.is(c.securityContext.allowPrivilegeEscalation, false);
    assert.is(c.securityContext.readOnlyRootFilesystem, true);
    assert.is(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
    assert.equal(c.securityContext.capabilities.drop, ['ALL']);
    assert.equal([...c.securityContext.capabilities.add].sort(), [...caps].sort());
    const hostPaths = (pod.volumes as Obj[]).filter((v) => v.hostPath);
    const mounts = (c.volumeMounts as Obj[]).filter((m) => hostPaths.some((v) => v.name === m.name));
    // Writable host paths: the owner record (host /run: lives as long as the kernel state) and
    // /proc/sys/net (the container's own /proc/sys is read-only), named by LVS_PROC_SYS.
    const state = [{ path: '/run/lvs-agent', type: 'DirectoryOrCreate' }, { path: '/proc/sys/net', type: 'Directory' }];
    const rw = [['/run/lvs-agent', false], ['/host/proc/sys/net', false]];
    if (modules) {
      assert.equal(hostPaths.map((v) => v.hostPath), [...state, { path: '/lib/modules', type: 'Directory' }]);
      assert.equal(mounts.map((m) => [m.mountPath, m.readOnly ?? false]), [...rw, ['/lib/modules', true]]);
    } else {
      assert.equal(hostPaths.map((v) => v.hostPath), state, 'no /lib/modules without module loading');
      assert.equal(mounts.map((m) => [m.mountPath, m.readOnly ?? false]), rw);
    }
    const env = c.env as Obj[];
    assert.is(env.find((e) => e.name === 'LVS_PROC_SYS')?.value, '/host/proc/sys');
    // The heap below the container's limit (the controller was OOM-killed without it).
    assert.is(env.find((e) => e.name === 'NODE_OPTIONS')?.value, '--max-old-space-size-percentage=60');
    // /healthz and /metrics on the node's address (hostNetwork): probes and the PodMonitor use the port.
    assert.is(env.find((e) => e.name === 'HOST_IP')?.valueFrom?.fieldRef?.fieldPath, 'status.hostIP');
    assert.equal(c.args, ['--metrics-address=$(HOST_IP):9810', ...ELECTION]);
    assert.equal(c.ports, [{ name: 'http-metrics', containerPort: 9810, protocol: 'TCP' }]);
    assert.equal([c.livenessProbe.httpGet, c.startupProbe.httpGet], [{ path: '/healthz', port: 'http-metrics' }, { path: '/healthz', port: 'http-metrics' }]);
    assert.is(env.find((e) => e.name === 'NODE_NAME')?.valueFrom?.fieldRef?.fieldPath, 'spec.nodeName');
  };
  check(one(defaults, 'DaemonSet'), ['NET_ADMIN', 'NET_RAW', 'SYS_ADMIN', 'SYS_PTRACE', 'SYS_MODULE'], true);
  check(one(await render({ agent: { kernelModules: { load: false } } }), 'DaemonSet'), ['NET_ADMIN', 'NET_RAW', 'SYS_ADMIN', 'SYS_PTRACE'], false);
  assert.equal(one(defaults, 'DaemonSet').spec.template.spec.tolerations, [{ operator: 'Exists' }]);
});

test('non-default values reach the manifests', async () => {
  const digest = `sha256:${'a'.repeat(64)}`;
  const docs = await render({
    fullnameOverride: 'lb',
    imagePullSecrets: [{ name: 'regcred' }],
    controller: {
      replicas: 3, workers: 8, logLevel: 'debug', metricsPort: 9090,
      image: { repository: 'registry.example/lvs/controller', tag: 'v9', pullPolicy: 'Always' },
      leaderElection: { leaseDurationSeconds: 30, renewDeadlineSeconds: 20, retryPeriodSeconds: 4 },
      tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'infra', effect: 'NoSchedule' }],
    },
    agent: {
      image: { repository: 'registry.example/lvs/agent', digest, pullPolicy: 'IfNotPresent' },
      nodeSelector: { 'kubernetes.io/os': 'linux', 'lvs.dev/director': 'true' },
      tolerations: [{ key: 'lvs.dev/director', operator: 'Exists', effect: 'NoSchedule' }],
      updateStrategy: { maxUnavailable: '20%' }, extraArgs: ['--log-level=debug'], logLevel: 'warn',
    },
    serviceMonitor: { enabled: true, interval: '15s', labels: { release: 'prom' } },
  });
  const dep = one(docs, 'Deployment', 'lb-controller');
  const c = container(dep);
  assert.is(dep.spec.replicas, 3);
  assert.is(c.image, 'registry.example/lvs/controller:v9');
  assert.is(c.imagePullPolicy, 'Always');
  for (const a of ['--workers=8', '--log-level=debug', '--metrics-port=9090', '--lease-duration=30', '--renew-deadline=20', '--retry-period=4']) assert.ok(c.args.includes(a), a);
  assert.is(c.ports[0].containerPort, 9090);
  assert.equal(dep.spec.template.spec.imagePullSecrets, [{ name: 'regcred' }]);
  const ds = one(docs, 'DaemonSet', 'lb-agent');
  assert.is(container(ds).image, `registry.example/lvs/agent@${digest}`);
  assert.equal(ds.spec.template.spec.nodeSelector, { 'kubernetes.io/os': 'linux', 'lvs.dev/director': 'true' });
  assert.is(ds.spec.updateStrategy.rollingUpdate.maxUnavailable, '20%');
  assert.equal(container(ds).args, ['--metrics-address=$(HOST_IP):9810', ...ELECTION, '--log-level=debug']);
  const sm = one(docs, 'ServiceMonitor');
  assert.is(sm.metadata.labels.release, 'prom');
  assert.equal(sm.spec.endpoints, [{ port: 'http-metrics', path: '/metrics', interval: '15s', scrapeTimeout: '10s' }]);
  assert.equal(sm.spec.selector.matchLabels, one(docs, 'Service', '-metrics').spec.selector);
  const pm = one(docs, 'PodMonitor');
  assert.equal(pm.spec.podMetricsEndpoints, [{ port: 'http-metrics', path: '/metrics', interval: '15s', scrapeTimeout: '10s' }]);
  assert.equal(pm.spec.selector.matchLabels, ds.spec.selector.matchLabels);
  assert.is(one(docs, 'ClusterRole', 'lb-agent').metadata.name, 'lb-agent');
});

// Each bad value must fail `helm template` naming the field and why.
const BAD: Array<[string, Obj, RegExp[]]> = [
  ['zero replicas', { controller: { replicas: 0 } }, [/controller\/replicas|controller\.replicas/, /minimum|must be >= 1/i]],
  ['replicas as text', { controller: { replicas: 'two' } }, [/replicas/, /integer/]],
  ['misspelt key', { controller: { replica: 2 } }, [/controller/, /replica/, /additional properties|not allowed/i]],
  ['module loading as text', { agent: { kernelModules: { load: 'always' } } }, [/kernelModules\/load|kernelModules\.load/, /boolean/]],
  ['unknown log level', { agent: { logLevel: 'verbose' } }, [/logLevel/, /info|must be one of/i]],
  ['bad pull policy', { controller: { image: { pullPolicy: 'Sometimes' } } }, [/pullPolicy/, /IfNotPresent|must be one of/]],
  ['bad toleration operator', { agent: { tolerations: [{ operator: 'Maybe' }] } }, [/tolerations/, /operator/]],
  ['bad scrape interval', { serviceMonitor: { enabled: true, interval: '30 seconds' } }, [/interval/, /pattern|does not match/i]],
  ['port out of range', { controller: { metricsPort: 70000 } }, [/metricsPort/, /maximum|must be <= 65535/i]],
  ['renew deadline not under lease duration', { controller: { leaderElection: { leaseDurationSeconds: 10, renewDeadlineSeconds: 10, retryPeriodSeconds: 2 } } },
    [/renewDeadlineSeconds \(10\) must be less than leaseDurationSeconds \(10\)/]],
  ['election dead interval too short', { agent: { election: { intervalMs: 200, deadMs: 300 } } }, [/agent\.election\.deadMs/, /twice/]],
  ['election sync id out of range', { agent: { election: { syncId: 256 } } }, [/election\/syncId|election\.syncId/, /maximum|must be <= 255/i]],
  ['min sync interval negative', { agent: { minSyncIntervalMs: -1 } }, [/agent\/minSyncIntervalMs|agent\.minSyncIntervalMs/, /minimum|must be >= 0/i]],
  ['min sync interval over a minute', { agent: { minSyncIntervalMs: 70000 } }, [/agent\/minSyncIntervalMs|agent\.minSyncIntervalMs/, /maximum|must be <= 60000/i]],
  ['min sync interval fractional', { agent: { minSyncIntervalMs: 1.5 } }, [/minSyncIntervalMs/, /integer/]],
  ['unknown IPVS stats level', { agent: { metrics: { ipvsStats: 'all' } } }, [/metrics\/ipvsStats|metrics\.ipvsStats/, /services|must be one of/i]],
];

test('bad values are rejected with a message naming the field', async () => {
  for (const [what, values, patterns] of BAD) {
    const r = await helm(['template', RELEASE, chartDir, '--namespace', NAMESPACE, ...valuesArgs(values)]);
    assert.is.not(r.code, 0, `${what}: helm template accepted ${JSON.stringify(values)}`);
    for (const p of patterns) assert.match(r.stderr, p, `${what}: ${p} not in:\n${r.stderr}`);
    assert.is(r.stdout.trim(), '', `${what}: rendered output despite the error`);
  }
});

test('helm package carries the CRD and rbac files (symlinks resolved) and renders the same', async () => {
  const out = scratchFile('pkg', '') + '.d';
  const r = await helm(['package', chartDir, '--destination', out]);
  assert.is(r.code, 0, r.stderr);
  const tgz = join(out, 'lvs-operator-0.1.0.tgz');
  const list = spawnSync('tar', ['-tzvf', tgz], { encoding: 'utf8' }).stdout;
  for (const f of ['files/crds/virtualserver.yaml', 'files/crds/planslice.yaml', 'files/crds/agentreport.yaml', 'files/rbac/controller-clusterrole.yaml', 'files/rbac/agent-clusterrole.yaml', 'files/rbac/agent-report-policy.yaml']) {
    const line = list.split('\n').find((l) => l.endsWith(`lvs-operator/${f}`));
    assert.ok(line, `${f} not in the package:\n${list}`);
    assert.ok(line.startsWith('-'), `${f} is not a regular file in the package: ${line}`);
  }
  const x = spawnSync('tar', ['-xzOf', tgz, 'lvs-operator/files/rbac/controller-clusterrole.yaml'], { encoding: 'utf8' }).stdout;
  assert.is(x, readFileSync(join(root, 'operator/rbac/clusterrole.yaml'), 'utf8'));
  const fromPkg = await helm(['template', RELEASE, tgz, '--namespace', NAMESPACE]);
  assert.is(fromPkg.code, 0, fromPkg.stderr);
  // The election key is random per render (kept on upgrade by lookup): compared without it.
  const keyless = (docs: Obj[]) => docs.map((d) => (d.kind === 'Secret' ? { ...d, data: { key: '(random)' } } : d));
  assert.equal(keyless(parseDocs(fromPkg.stdout)), keyless(defaults));
});

test.run();
