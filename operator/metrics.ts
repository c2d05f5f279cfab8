// Prometheus metrics of one controller process, on its own registry (tests run several
// controllers in one process).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface MetricSources {
  queueDepth(): number;
  /** Count of VirtualServers per condition type and status, from the cache. */
  conditions(): Map<string, number>;
  isLeader(): boolean;
}

export interface Metrics {
  registry: Registry;
  reconciles: Counter<'result'>;
  reconcileDuration: Histogram<'result'>;
  queueWait: Histogram;
  errors: Counter<'op'>;
  statusWrites: Counter;
  sliceWrites: Counter<'op'>;
  events: Counter<'type' | 'outcome'>;
}

export function createMetrics(src: MetricSources, opts: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry });
  const reconciles = new Counter({ name: 'lvs_operator_reconciles_total', help: 'Reconciles of VirtualServers by result (done, requeue, error).', labelNames: ['result'], registers: [registry] });
  const reconcileDuration = new Histogram({
    name: 'lvs_operator_reconcile_duration_seconds', help: 'Time to reconcile one VirtualServer (resolve, status diff, write).',
    labelNames: ['result'], buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers: [registry],
  });
  const queueWait = new Histogram({
    name: 'lvs_operator_queue_wait_seconds', help: 'Time a key waited between being marked (an event, a due retry) and a worker taking it, including its own previous run.',
    buckets: [0.001, 0.01, 0.1, 0.5, 1, 2, 5, 10, 30], registers: [registry],
  });
  const errors = new Counter({ name: 'lvs_operator_errors_total', help: 'Failed Kubernetes API operations by kind (list, watch, status, lease, event, reconcile; report: an unreadable AgentReport).', labelNames: ['op'], registers: [registry] });
  const statusWrites = new Counter({ name: 'lvs_operator_status_writes_total', help: 'VirtualServer status writes that the API server accepted.', registers: [registry] });
  const sliceWrites = new Counter({ name: 'lvs_operator_planslice_writes_total', help: 'PlanSlice writes that the API server accepted, by op (create, replace, delete).', labelNames: ['op'], registers: [registry] });
  const events = new Counter({ name: 'lvs_operator_events_total', help: 'Kubernetes Events recorded, by type and outcome.', labelNames: ['type', 'outcome'], registers: [registry] });
  new Gauge({ name: 'lvs_operator_queue_depth', help: 'VirtualServer keys waiting in the work queue.', registers: [registry], collect() { this.set(src.queueDepth()); } });
  new Gauge({ name: 'lvs_operator_leader', help: '1 when this replica holds the leader lease.', registers: [registry], collect() { this.set(src.isLeader() ? 1 : 0); } });
  new Gauge({
    name: 'lvs_operator_virtualservers', help: 'VirtualServers by condition type and status, as last written.', labelNames: ['condition', 'status'], registers: [registry],
    collect() {
      this.reset();
      for (const [k, n] of src.conditions()) {
        const [condition = '', status = ''] = k.split('=');
        this.set({ condition, status }, n);
      }
    },
  });
  return { registry, reconciles, reconcileDuration, queueWait, errors, statusWrites, sliceWrites, events };
}
