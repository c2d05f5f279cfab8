// Who answers ARP/NDP for a VirtualServer's addresses, from its directors' AgentReports (pure):
// status.announcers lists, per address it won, the directors that report announcing it. One
// entry per address is the steady state; none means nobody announces it (a pool with
// announce.none, or no live director); two mean the directors disagree (a partition between
// them), which is worth seeing in `kubectl get vs -o yaml` while it lasts.
import { parseServiceKey } from '../api/plan.ts';
import type { VirtualServerStatus } from '../kube/types.ts';
import type { ReportView } from './programmed.ts';

/** CRD bound on status.announcers (crds/virtualserver.yaml). */
export const MAX_STATUS_ANNOUNCERS = 16;

export function announcersOf(services: readonly string[], directors: readonly string[], reports: Pick<ReportView, 'get'>): VirtualServerStatus['announcers'] {
  const vips = [...new Set(services.flatMap((k) => parseServiceKey(k)?.vip ?? []))].sort();
  if (vips.length === 0) return undefined;
  const out: NonNullable<VirtualServerStatus['announcers']> = [];
  for (const node of [...directors].sort()) {
    const announced = new Set(reports.get(node)?.announced ?? []);
    for (const address of vips) if (announced.has(address)) out.push({ address, node });
  }
  out.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  return out.slice(0, MAX_STATUS_ANNOUNCERS);
}
