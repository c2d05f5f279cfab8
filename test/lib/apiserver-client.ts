// What the apiserver-tier tests share to talk to the real kube-apiserver: a KubeApi from a
// kubeconfig file, and polling until a probe returns a value.
import { KubeConfig } from '@kubernetes/client-node';
import type { KubeApi } from '../../kube/api.ts';
import { restConfigFromKubeConfig, RestKubeApi } from '../../kube/rest.ts';

export async function apiFor(path: string): Promise<KubeApi> {
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  return new RestKubeApi(await restConfigFromKubeConfig(kc));
}

/** Polls every 100 ms until probe returns something other than undefined/false; a throw counts as "not yet" (its error is named on timeout). */
export async function until<T>(probe: () => Promise<T | undefined | false>, what: string, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) { last = err; }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
