// The harness itself, against the real kube-apiserver + etcd: CRDs from crds/ are installed and
// served, x509 users and RBAC behave as in a cluster, and teardown leaves nothing behind, also
// when the test process is interrupted or killed.
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gated } from '../lib/prereq.ts';
import { apiserverPrereqs, startControlPlane, type ControlPlane } from '../../lab/apiserver/harness.ts';

const here = dirname(fileURLToPath(import.meta.url));
const missing = apiserverPrereqs();

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

async function gone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return !alive(pid);
}

const cp = gated(suite('control plane'), missing);
let plane: ControlPlane | undefined;
const P = () => { if (!plane) throw new Error('control plane did not start'); return plane; };

cp.before(async () => {
  plane = await startControlPlane();
  await plane.installCrds('crds');
});
cp.after(async () => { await plane?.stop(); });

cp('the VirtualServer CRD from crds/ is served under its short name', async () => {
  const kind = await P().kubectl(['get', 'crd', 'virtualservers.lvs.dev', '-o', 'jsonpath={.spec.names.kind}']);
  assert.is(kind.stdout, 'VirtualServer', kind.stderr);
  const r = await P().kubectl(['get', 'vs', '--all-namespaces']);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr + r.stdout, /No resources found/);
});

cp('admin (system:masters) creates and reads back a ConfigMap', async () => {
  const c = await P().kubectl(['create', 'configmap', 'probe', '-n', 'default', '--from-literal=k=v']);
  assert.is(c.code, 0, c.stderr);
  const g = await P().kubectl(['get', 'configmap', 'probe', '-n', 'default', '-o', 'jsonpath={.data.k}']);
  assert.is(g.stdout, 'v');
});

cp('a client-cert user without RBAC is authenticated but forbidden (403) until bound', async () => {
  const alice = await P().userKubeconfig('alice', ['lvs-testers']);
  const who = await P().kubectl(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username} {.status.userInfo.groups}'], { kubeconfig: alice });
  assert.is(who.code, 0, who.stderr);
  assert.match(who.stdout, /^alice \[.*"lvs-testers".*\]$/);

  const denied = await P().kubectl(['create', 'configmap', 'by-alice', '-n', 'default', '--from-literal=k=v'], { kubeconfig: alice });
  assert.is.not(denied.code, 0);
  assert.match(denied.stderr, /configmaps is forbidden: User "alice" cannot create resource "configmaps"/, denied.stderr);
  const raw = await P().kubectl(['get', '--raw', '/api/v1/namespaces/default/configmaps', '-v=6'], { kubeconfig: alice });
  assert.is.not(raw.code, 0);
  assert.match(raw.stderr, /url="https:\/\/127\.0\.0\.1:\d+\/api\/v1\/namespaces\/default\/configmaps" status="403 Forbidden"/, raw.stderr);

  // The same request succeeds once RBAC grants it: the 403 above was authorization, nothing else.
  const role = await P().kubectl(['create', 'role', 'cm-writer', '-n', 'default', '--verb=create,get', '--resource=configmaps']);
  assert.is(role.code, 0, role.stderr);
  const bind = await P().kubectl(['create', 'rolebinding', 'testers-cm', '-n', 'default', '--role=cm-writer', '--group=lvs-testers']);
  assert.is(bind.code, 0, bind.stderr);
  const allowed = await P().kubectl(['create', 'configmap', 'by-alice', '-n', 'default', '--from-literal=k=v'], { kubeconfig: alice });
  assert.is(allowed.code, 0, allowed.stderr);
});

cp('stop() ends etcd and kube-apiserver and removes the temp dir', async () => {
  const { pids, dir } = P();
  await P().stop();
  assert.ok(await gone(pids.apiserver, 5000), 'kube-apiserver still running');
  assert.ok(await gone(pids.etcd, 5000), 'etcd still running');
  assert.not.ok(existsSync(dir), `${dir} left behind`);
});

cp.run();

// A process that starts a control plane, prints its pids and dir, and waits to be signalled.
const hold = join(here, 'fixtures/hold-control-plane.ts');

interface Held {
  pids: { etcd: number; apiserver: number };
  dir: string;
  kill(sig: NodeJS.Signals): void;
  /** exit code, or 128 + n when killed by signal n */
  exit: Promise<number>;
}

function startHolder(): Promise<Held> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [hold], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exit = new Promise<number>((r) => child.on('close', (code, sig) => r(code ?? 128 + (sig === 'SIGKILL' ? 9 : 0))));
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      const line = out.split('\n').find((l) => l.startsWith('HELD '));
      if (!line) return;
      const held = JSON.parse(line.slice(5)) as Pick<Held, 'pids' | 'dir'>;
      resolve({ ...held, exit, kill: (sig) => child.kill(sig) });
    });
    void exit.then((code) => reject(new Error(`holder exited ${code} before the control plane was up:\n${out}`)));
  });
}

const signals = gated(suite('teardown on signals'), missing);

for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  signals(`${sig} to the test process stops both servers and removes the temp dir`, async () => {
    const h = await startHolder();
    h.kill(sig);
    assert.is(await h.exit, sig === 'SIGTERM' ? 143 : 130);
    assert.ok(await gone(h.pids.apiserver, 5000), 'kube-apiserver leaked');
    assert.ok(await gone(h.pids.etcd, 5000), 'etcd leaked');
    assert.not.ok(existsSync(h.dir), `${h.dir} leaked`);
  });
}

signals('SIGKILL of the test process still kills both servers (parent-death signal)', async () => {
  const h = await startHolder();
  h.kill('SIGKILL');
  assert.is(await h.exit, 137);
  assert.ok(await gone(h.pids.apiserver, 5000), 'kube-apiserver leaked');
  assert.ok(await gone(h.pids.etcd, 5000), 'etcd leaked');
  // No hook runs on SIGKILL: the dir is the one thing left, and it is ours to remove.
  rmSync(h.dir, { recursive: true, force: true });
});

signals.run();
