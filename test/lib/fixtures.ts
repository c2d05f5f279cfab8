// Builders for the Kubernetes objects the resolver and controller read: VirtualServer, Service,
// EndpointSlice (with endpoints) and Node. Plain objects shaped like what a watch delivers;
// defaults are the common case so a test states only what it is about.
import type { V1Endpoint, V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import type { VirtualServer, VirtualServerSpec } from '../../api/generated/index.ts';
import type { VirtualServerLike } from '../../api/resolve/types.ts';

export const NS = 'default';
export const T0 = '2025-01-01T00:00:00Z';

export interface MetaOpts {
  namespace?: string;
  /** RFC 3339 creationTimestamp; default T0. */
  created?: string;
  generation?: number;
}

/** A VirtualServer of the generated model; creationTimestamp as the raw JSON string a watch delivers. */
export function virtualServer(name: string, spec: VirtualServerSpec, opts: MetaOpts = {}): VirtualServer {
  const vs: VirtualServer = {
    apiVersion: 'lvs.dev/v1alpha1',
    kind: 'VirtualServer',
    metadata: {
      name,
      namespace: opts.namespace ?? NS,
      generation: opts.generation ?? 1,
    },
    spec,
  };
  // V1ObjectMeta types creationTimestamp as Date (what the typed client deserializes to); raw
  // JSON carries the RFC 3339 string, which is what the controller's watch delivers.
  (vs.metadata as { creationTimestamp?: string }).creationTimestamp = opts.created ?? T0;
  return vs;
}

/** Compile-time check: the generated model fits the resolver's defensive input type. */
export const asResolverInput = (vs: VirtualServer): VirtualServerLike => vs;

export interface ServicePortSpec {
  name?: string;
  port: number;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  targetPort?: number | string;
}

export function service(name: string, ports: ServicePortSpec[], opts: { namespace?: string } = {}): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: opts.namespace ?? NS },
    spec: { type: 'ClusterIP', ports: ports.map((p) => ({ protocol: 'TCP', ...p })) },
  };
}

export interface EndpointOpts {
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
  node?: string;
  /** Pod name (targetRef kind Pod in the slice's namespace); false for no targetRef. Default: none. */
  pod?: string | false;
  podNamespace?: string;
}

export function endpoint(address: string, opts: EndpointOpts = {}): V1Endpoint {
  const ep: V1Endpoint = { addresses: [address], conditions: {} };
  if (opts.ready !== undefined) ep.conditions!.ready = opts.ready;
  if (opts.serving !== undefined) ep.conditions!.serving = opts.serving;
  if (opts.terminating !== undefined) ep.conditions!.terminating = opts.terminating;
  if (opts.node) ep.nodeName = opts.node;
  if (opts.pod) ep.targetRef = { kind: 'Pod', name: opts.pod, ...(opts.podNamespace ? { namespace: opts.podNamespace } : { namespace: NS }) };
  return ep;
}

/** An endpoint that is terminating but still serving: Draining. */
export const draining = (address: string, opts: EndpointOpts = {}): V1Endpoint =>
  endpoint(address, { ...opts, ready: false, serving: true, terminating: true });

export interface SliceOpts {
  name?: string;
  namespace?: string;
  addressType?: 'IPv4' | 'IPv6' | 'FQDN';
  /** Slice ports (protocol default TCP); default [{name: 'http', port: 8080}]. */
  ports?: Array<{ name?: string; port?: number; protocol?: string }>;
}

let sliceSeq = 0;
export function endpointSlice(serviceName: string, endpoints: V1Endpoint[], opts: SliceOpts = {}): V1EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: opts.name ?? `${serviceName}-${(sliceSeq++).toString(36)}`,
      namespace: opts.namespace ?? NS,
      labels: { 'kubernetes.io/service-name': serviceName },
    },
    addressType: opts.addressType ?? (endpoints[0]?.addresses[0]?.includes(':') ? 'IPv6' : 'IPv4'),
    ports: (opts.ports ?? [{ name: 'http', port: 8080 }]).map((p) => ({ protocol: 'TCP', ...p })),
    endpoints,
  };
}

export function node(name: string, addresses: string[] = [], labels: Record<string, string> = {}): V1Node {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name, ...labels } },
    status: {
      addresses: [
        ...addresses.map((address) => ({ type: 'InternalIP', address })),
        { type: 'Hostname', address: name },
      ],
    },
  };
}

export { rng, shuffled } from '../../lab/random.ts';
