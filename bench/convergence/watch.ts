// A watch on the benchmark's published plans (PlanSlices) from inside the guest, to split a
// change's latency in the guest's one clock: the moment the controller's PlanSlice write (the
// plan with the new real servers) reaches a watcher in the VM — what the agent's own informer
// receives at about the same time — lies between the EndpointSlice write and the kernel change.
// PlanSlices are cluster-scoped: the watch covers all of them and keeps those whose owner is in
// the benchmark's namespace. Each event carries one slice: the benchmark's small VirtualServers
// fit in one, so a slice is their whole plan. A plain streaming HTTPS request (the driver's Kube
// client buffers whole bodies); on the stream's end it resumes from the last resourceVersion seen.
import { request, type Agent } from 'node:https';
import { performance } from 'node:perf_hooks';
import { loadKubeconfig } from '../../lab/guest/kube.ts';

interface RealServer { address: string; weight: number }
interface SliceEvent {
  type: string;
  object: { metadata: { name: string; resourceVersion: string }; owner?: { namespace: string; name: string }; services?: Array<{ realServers?: RealServer[] }> };
}

export interface PlanWatch {
  /** performance.now() of the first slice event at or after `since` of VirtualServer `name` whose real servers satisfy `ok`. */
  waitFor(name: string, since: number, ok: (realServers: RealServer[]) => boolean, timeoutMs: number): Promise<number | undefined>;
  /** performance.now() of the last event received (0 before any). */
  lastEventAt(): number;
  close(): void;
}

export async function watchPlanSlices(kubeconfig: string, ns: string): Promise<PlanWatch> {
  const c = loadKubeconfig(kubeconfig);
  const server = new URL(c.server);
  const tls = { ca: c.ca, cert: c.cert, key: c.key, ...(c.servername ? { servername: c.servername } : {}) };
  const base = '/apis/lvs.dev/v1alpha1/planslices';
  const recent: Array<{ at: number; name: string; rs: RealServer[] }> = [];
  let closed = false;
  let lastAt = 0;
  let live: { destroy(): void } | undefined;

  const get = (path: string, onData: (chunk: string) => void): Promise<void> => new Promise((resolve, reject) => {
    const req = request({ host: server.hostname, port: server.port, path, method: 'GET', agent: false as unknown as Agent, ...tls, headers: { Accept: 'application/json' } }, (res) => {
      if (res.statusCode !== 200) { reject(new Error(`GET ${path}: HTTP ${res.statusCode}`)); res.resume(); return; }
      res.setEncoding('utf8');
      res.on('data', onData);
      res.on('end', resolve);
      res.on('error', reject);
    });
    live = req;
    req.on('error', reject);
    req.end();
  });

  let rv = '';
  await get(`${base}?limit=1`, (d) => { rv += d; });
  rv = (JSON.parse(rv) as { metadata: { resourceVersion: string } }).metadata.resourceVersion;
  const loop = async () => {
    while (!closed) {
      let buf = '';
      await get(`${base}?watch=1&resourceVersion=${rv}&allowWatchBookmarks=true`, (d) => {
        buf += d;
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (!line.trim()) continue;
          const ev = JSON.parse(line) as SliceEvent;
          rv = ev.object.metadata.resourceVersion;
          if ((ev.type !== 'MODIFIED' && ev.type !== 'ADDED') || ev.object.owner?.namespace !== ns) continue;
          lastAt = performance.now();
          recent.push({ at: lastAt, name: ev.object.owner.name, rs: (ev.object.services ?? []).flatMap((s) => s.realServers ?? []) });
          if (recent.length > 5000) recent.splice(0, 2500);
        }
      }).catch(() => new Promise((r) => setTimeout(r, 500)));
    }
  };
  void loop();
  return {
    async waitFor(name, since, ok, timeoutMs) {
      const end = performance.now() + timeoutMs;
      while (performance.now() < end) {
        const hit = recent.find((e) => e.at >= since && e.name === name && ok(e.rs));
        if (hit) return hit.at;
        await new Promise((r) => setTimeout(r, 20));
      }
      return undefined;
    },
    lastEventAt: () => lastAt,
    close() { closed = true; live?.destroy(); },
  };
}
