// Kubernetes objects as the real components would write them, for a cluster that has no
// kube-controller-manager and no kubelet: the test driver plays the kubelet (Pod status, graceful
// deletion) and the EndpointSlice controller (one slice per Service and address family, labels,
// owner reference, endpoint conditions, nodeName, targetRef). Builders are pure; Workload does
// the API calls. Dual-stack pods (an IPv6 address beside the IPv4 one) are one endpoint in each
// family's slice, as the EndpointSlice controller keeps them (addressType IPv4 / IPv6).
import type { KubeObject } from '../../kube/types.ts';
import type { Kube } from './kube.ts';

export const PODS = { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true } as const;
export const SERVICES = { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true } as const;
export const SLICES = { group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', kind: 'EndpointSlice', namespaced: true } as const;
export const VIRTUAL_SERVERS = { group: 'lvs.dev', version: 'v1alpha1', plural: 'virtualservers', kind: 'VirtualServer', namespaced: true } as const;
export const VIP_POOLS = { group: 'lvs.dev', version: 'v1alpha1', plural: 'vippools', kind: 'VIPPool', namespaced: false } as const;

/** An object as sent to the apiserver (metadata may use generateName instead of name). */
export type Manifest = { apiVersion: string; kind: string; metadata: Record<string, unknown> } & Record<string, unknown>;

export interface ServicePort { name: string; port: number; targetPort: number }

/** An endpoint as the EndpointSlice controller derives it from a Pod. */
export interface EndpointState {
  pod: string;
  uid: string;
  ip: string;
  /** the pod's IPv6 address, when it is dual-stack */
  ip6?: string;
  /** Pod Ready and not terminating */
  ready: boolean;
  /** the Pod has a deletionTimestamp */
  terminating: boolean;
}

export function podObject(ns: string, name: string, app: string, node: string, port: number): Manifest {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name, namespace: ns, labels: { app } },
    spec: {
      nodeName: node,
      containers: [{ name: 'app', image: 'registry.k8s.io/e2e-test-images/agnhost:2.53', ports: [{ name: 'http', containerPort: port, protocol: 'TCP' }] }],
    },
  };
}

/** What the kubelet reports once the pod's sandbox and container run (podIPs: IPv4, then IPv6 if any). */
export function podStatus(ip: string, hostIP: string, ready: boolean, now = new Date(), ip6?: string): Record<string, unknown> {
  const t = now.toISOString().replace(/\.\d{3}Z$/, 'Z');
  return {
    status: {
      phase: 'Running', hostIP, hostIPs: [{ ip: hostIP }], podIP: ip, podIPs: [{ ip }, ...(ip6 ? [{ ip: ip6 }] : [])], startTime: t,
      conditions: [
        { type: 'PodScheduled', status: 'True', lastTransitionTime: t },
        { type: 'Initialized', status: 'True', lastTransitionTime: t },
        { type: 'ContainersReady', status: ready ? 'True' : 'False', lastTransitionTime: t },
        { type: 'Ready', status: ready ? 'True' : 'False', lastTransitionTime: t },
      ],
    },
  };
}

export function serviceObject(ns: string, name: string, app: string, ports: readonly ServicePort[]): Manifest {
  return {
    apiVersion: 'v1', kind: 'Service',
    metadata: { name, namespace: ns },
    spec: { selector: { app }, ports: ports.map((p) => ({ name: p.name, port: p.port, targetPort: p.targetPort, protocol: 'TCP' })) },
  };
}

/**
 * The slice the EndpointSlice controller keeps for a Service and an address family: endpoints
 * (the pods that have an address of that family) sorted as it sorts them (by address), ports with
 * the Service port's name and the pod's target port, terminating pods kept with serving = their
 * readiness (EndpointSliceTerminatingCondition, GA since 1.26).
 */
export function sliceObject(svc: { ns: string; name: string; uid: string }, node: string, ports: readonly ServicePort[], eps: readonly EndpointState[], family: 4 | 6 = 4): Manifest {
  const addr = (e: EndpointState) => (family === 4 ? e.ip : e.ip6!);
  const sorted = eps.filter((e) => family === 4 || e.ip6).sort((a, b) => addr(a).localeCompare(addr(b), 'en', { numeric: true }));
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: {
      generateName: `${svc.name}-`, namespace: svc.ns,
      labels: { 'kubernetes.io/service-name': svc.name, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
      annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': new Date().toISOString().replace(/\.\d{3}Z$/, 'Z') },
      ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: svc.name, uid: svc.uid, controller: true, blockOwnerDeletion: true }],
    },
    addressType: family === 4 ? 'IPv4' : 'IPv6',
    ports: ports.map((p) => ({ name: p.name, port: p.targetPort, protocol: 'TCP' })),
    endpoints: sorted.map((e) => ({
      addresses: [addr(e)],
      conditions: { ready: e.ready && !e.terminating, serving: e.ready, terminating: e.terminating },
      nodeName: node,
      targetRef: { kind: 'Pod', namespace: svc.ns, name: e.pod, uid: e.uid },
    })),
  };
}

/**
 * A Service, its Pods and its EndpointSlices (IPv4; IPv6 too once a pod has an IPv6 address),
 * kept in step as the real controllers would.
 */
export class Workload {
  readonly ns: string;
  readonly name: string;
  readonly ports: readonly ServicePort[];
  readonly node: string;
  readonly hostIP: string;
  readonly #kube: Kube;
  #svcUid = '';
  readonly #slices = new Map<4 | 6, KubeObject>();
  readonly #eps = new Map<string, EndpointState>();
  /** slice writes so far (create + updates) */
  writes = 0;

  constructor(kube: Kube, o: { ns: string; name: string; ports: readonly ServicePort[]; node: string; hostIP: string }) {
    this.#kube = kube;
    this.ns = o.ns; this.name = o.name; this.ports = o.ports; this.node = o.node; this.hostIP = o.hostIP;
  }

  /** `spec` is merged into the Service's spec (e.g. type LoadBalancer and its class). */
  async createService(spec: Record<string, unknown> = {}): Promise<void> {
    const obj = serviceObject(this.ns, this.name, this.name, this.ports);
    const svc = await this.#kube.create<KubeObject>(SERVICES, this.ns, { ...obj, spec: { ...(obj as { spec?: object }).spec, ...spec } });
    this.#svcUid = svc.metadata.uid ?? '';
  }

  /** Pod created, scheduled to our node, started and Ready (status through the subresource); `ip6` makes it dual-stack. */
  async addPod(name: string, ip: string, ip6?: string): Promise<void> {
    const pod = await this.#kube.create<KubeObject>(PODS, this.ns, podObject(this.ns, name, this.name, this.node, this.ports[0]!.targetPort));
    await this.#kube.mergePatch(PODS, this.ns, name, podStatus(ip, this.hostIP, true, undefined, ip6), 'status');
    this.#eps.set(name, { pod: name, uid: pod.metadata.uid ?? '', ip, ...(ip6 ? { ip6 } : {}), ready: true, terminating: false });
  }

  /** Graceful deletion begins: the Pod gets a deletionTimestamp, the kubelet marks it not ready. */
  async terminatePod(name: string, stillServing: boolean): Promise<void> {
    await this.#kube.request('DELETE', `/api/v1/namespaces/${this.ns}/pods/${name}`, { kind: 'DeleteOptions', apiVersion: 'v1', gracePeriodSeconds: 30 });
    const e = this.#eps.get(name)!;
    await this.#kube.mergePatch(PODS, this.ns, name, podStatus(e.ip, this.hostIP, stillServing, undefined, e.ip6), 'status');
    this.#eps.set(name, { ...e, ready: stillServing, terminating: true });
  }

  /** The kubelet confirms the containers are gone: the Pod object is removed for good. */
  async removePod(name: string): Promise<void> {
    await this.#kube.request('DELETE', `/api/v1/namespaces/${this.ns}/pods/${name}`, { kind: 'DeleteOptions', apiVersion: 'v1', gracePeriodSeconds: 0 });
    this.#eps.delete(name);
  }

  endpoints(): EndpointState[] { return [...this.#eps.values()]; }

  /**
   * Writes the slices for the current pods (each created once, then conditional updates): IPv4
   * always, IPv6 once some pod has had an IPv6 address (kept, possibly empty, as the controller
   * keeps a family's slice while the Service has that family).
   */
  async syncSlice(): Promise<void> {
    const eps = this.endpoints();
    const families: Array<4 | 6> = [4, ...(this.#slices.has(6) || eps.some((e) => e.ip6) ? [6 as const] : [])];
    for (const family of families) {
      const want = sliceObject({ ns: this.ns, name: this.name, uid: this.#svcUid }, this.node, this.ports, eps, family);
      const had = this.#slices.get(family);
      if (!had) {
        this.#slices.set(family, await this.#kube.create<KubeObject>(SLICES, this.ns, want));
      } else {
        const { name, resourceVersion } = had.metadata;
        const { generateName: _, ...meta } = want.metadata;
        this.#slices.set(family, await this.#kube.replace<KubeObject>(SLICES, this.ns, { ...want, metadata: { ...meta, name, resourceVersion } } as unknown as KubeObject));
      }
      this.writes += 1;
    }
  }
}
