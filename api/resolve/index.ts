// api/resolve: the pure resolver, shared by the controller (operator/) and the agent's standalone
// mode (dataplane/agent/manifests.ts), so both read a spec the same way. resolve() for a full pass;
// buildIndex + resolveOne + assemble (or arbitrate + finalize) for the controller's incremental path.
export { resolve, assemble } from './resolve.ts';
export { resolveOne, claimantOf, heldOf, planService } from './candidate.ts';
export { arbitrate, finalize, compareClaimants } from './conflicts.ts';
export type { Arbitration, Loss } from './conflicts.ts';
export { buildIndex, setNodes, directorsFor, SERVICE_NAME_LABEL } from './lookup.ts';
export type { ResolveIndex, NodeInfo } from './lookup.ts';
export { validateSpec } from './validate.ts';
export { parseIp } from '../ip.ts';
export { compareAddresses } from './order.ts';
export type { Candidate, Claimant, ResolveInput, VirtualServerLike, VirtualServerSpecLike } from './types.ts';
export { admitVips, admitRealServers, REAL_SERVER_HOST_LABEL } from './admit.ts';
export type { Admission } from './lookup.ts';
export {
  isApiserverSlice, LOAD_BALANCER_CLASS, ReservedAddresses, reservedOfApiserverSlice, reservedOfNode, reservedOfService, reservedOfServiceCIDR,
} from './reserved.ts';
export type { ReservedEntry, ServiceCIDRLike } from './reserved.ts';
export type { NamespaceLike } from './types.ts';
