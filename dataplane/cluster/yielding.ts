// Is this director's node being taken out of service? Then it is yielding in the election
// (../announce/election.ts): its VIPs go to the other eligible directors before the node goes
// down, and where it is the only one left it keeps announcing (a drain never darkens a VIP by
// itself). The connections already on it survive the move when the kernel's connection sync runs.
//
// The signals an admin or a tool gives before a node goes away:
// - spec.unschedulable: `kubectl cordon` / `kubectl drain`. Kubernetes' own service controller no
//   longer reads it (KEP-3458: a cordon is often only about scheduling); a director is different,
//   because moving its VIPs costs one gratuitous ARP and, with connection sync, no connection;
// - the label node.kubernetes.io/exclude-from-external-load-balancers (any value), which cloud
//   load balancers and MetalLB honour;
// - the taint ToBeDeletedByClusterAutoscaler: the autoscaler is about to delete the node.
// Only the agent's own Node is watched (a field selector), through an informer that is not waited
// for: until it has read the Node, or when it cannot (RBAC without nodes), the director is not
// yielding, as before.
import type { Logger } from 'pino';
import type { Clock } from '../../kube/clock.ts';
import type { KubeApi } from '../../kube/api.ts';
import { Informer } from '../../kube/informer.ts';
import { NODES, type NodeObject } from '../../kube/types.ts';

export const EXCLUDE_LABEL = 'node.kubernetes.io/exclude-from-external-load-balancers';
export const AUTOSCALER_DELETE_TAINT = 'ToBeDeletedByClusterAutoscaler';

/** Why a Node makes its director yielding, or undefined when it does not (pure). */
export function yieldingReason(node: NodeObject | undefined): string | undefined {
  if (!node) return undefined;
  if (node.spec?.unschedulable === true) return 'cordoned (spec.unschedulable)';
  if (node.metadata.labels && EXCLUDE_LABEL in node.metadata.labels) return `labelled ${EXCLUDE_LABEL}`;
  if (node.spec?.taints?.some((t) => t.key === AUTOSCALER_DELETE_TAINT)) return `tainted ${AUTOSCALER_DELETE_TAINT}`;
  return undefined;
}

export interface NodeYielding {
  yielding(): boolean;
  /** Why, for the node's AgentReport; undefined while the node is in service. */
  reason(): string | undefined;
  run(signal: AbortSignal): Promise<void>;
}

/**
 * The election samples yielding() with its eligibility at every heartbeat (../announce/peers.ts),
 * so a change here reaches the peers and the announcements within one heartbeat interval;
 * onChange is for the node's report, which says why it is yielding.
 */
export function watchNodeYielding(o: { api: KubeApi; node: string; clock: Clock; log: Logger; onChange: () => void }): NodeYielding {
  const nodes = new Informer<NodeObject>({ api: o.api, resource: NODES, clock: o.clock, logger: o.log, fieldSelector: `metadata.name=${o.node}` });
  let reason: string | undefined;
  const seen = () => {
    const next = yieldingReason(nodes.get(o.node));
    if (next === reason) return;
    o.log.info({ op: 'ha', node: o.node, yielding: next ?? false, before: reason ?? false }, next ? 'node is being taken out of service: this director is yielding' : 'node back in service: this director is no longer yielding');
    reason = next;
    o.onChange();
  };
  // A deleted Node: the cache no longer holds it, so yielding ends; the node is going anyway and
  // its peers see it lapse.
  nodes.addHandlers({ onAdd: seen, onUpdate: seen, onDelete: seen });
  return { yielding: () => reason !== undefined, reason: () => reason, run: (signal) => nodes.run(signal) };
}
