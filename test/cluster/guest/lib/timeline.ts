// What the director's kernel did while the echo pods were replaced, for the rolling update's
// output: when each old pod was first seen being deleted, when the NAT service first showed it at
// weight 0 (drained) and without it, against the times of failed client connections. Sampled once
// per traffic round (each round is a client process, seconds apart under TCG), so a time is "first
// seen", up to one round late. Every time is the guest's clock: the pods' deletionTimestamp comes
// from the host's and the two differ by seconds (a CI run showed a pod drained "before" it was
// deleted). Printed: it says whether a failure came from a terminating pod still in rotation
// (weight > 0 after its server stopped accepting) or elsewhere.
import { listIpvs } from '../../../../lab/guest/ipvsadm.ts';
import { podsOf } from './cluster.ts';

export interface Sample {
  at: number;
  /** destination "ip:port" → weight, in the service sampled. */
  weights: Map<string, number>;
  /** "ip:port" of the pods being deleted (deletionTimestamp set). */
  deleting: Set<string>;
}

export function sample(service: string, ns: string, selector: string, port: number): Sample {
  const at = Date.now();
  const svc = listIpvs().find((s) => s.address === service);
  const weights = new Map((svc?.dests ?? []).map((d) => [d.address, d.weight] as const));
  const deleting = new Set<string>();
  for (const p of podsOf(ns, selector)) if (p.metadata.deletionTimestamp && p.status.podIP) deleting.add(`${p.status.podIP}:${port}`);
  return { at, weights, deleting };
}

/** One line per pod seen deleting, then the failures; times in seconds after `start`. */
export function timeline(start: number, samples: readonly Sample[], failedAt: readonly number[]): string {
  const s = (t: number | undefined) => (t === undefined ? 'never seen' : `${((t - start) / 1000).toFixed(1)} s`);
  const deleted = new Map<string, number>();
  for (const x of samples) for (const d of x.deleting) if (!deleted.has(d)) deleted.set(d, x.at);
  const lines = [...deleted].map(([d, t]) => {
    const drained = samples.find((x) => x.at >= t && x.weights.get(d) === 0)?.at;
    const gone = samples.find((x) => x.at >= t && !x.weights.has(d))?.at;
    const live = samples.filter((x) => x.at >= t && (x.weights.get(d) ?? 0) > 0).map((x) => x.at);
    return `${d}: seen deleted ${s(t)}, weight 0 ${s(drained)}, out of the kernel ${s(gone)}${live.length ? `, still weighted at ${live.map(s).join(', ')}` : ''}`;
  });
  lines.push(`failed connections in rounds started at: ${failedAt.length ? failedAt.map(s).join(', ') : 'none'}`);
  return lines.map((l) => `#   ${l}`).join('\n');
}

/**
 * The way a termination takes to the kernel, for the rolling update's output: every EndpointSlice
 * event of the echo Service (the EndpointSlice controller's work: address:ready/serving/terminating),
 * every event of the NAT VirtualServer's PlanSlice (our controller's: address:state/weight), and
 * every kernel sync the agent logged, each at the guest's time it was seen. Where the time between
 * a pod's deletion and its weight 0 goes shows as the gap between two of these.
 */
export function chain(start: number, o: { slices: ReadonlyArray<{ at: number; text: string }>; plans: ReadonlyArray<{ at: number; text: string }>; plan: string; agent: ReadonlyArray<Record<string, unknown>>; controller?: ReadonlyArray<Record<string, unknown>> }): string {
  const s = (t: number) => `${((t - start) / 1000).toFixed(1).padStart(6)} s`;
  const lines = [
    ...o.slices.map((e) => ({ at: e.at, text: `EndpointSlice ${e.text}` })),
    ...o.plans.filter((e) => e.text.startsWith(`${o.plan} `) || e.text.startsWith('kubectl: ')).map((e) => ({ at: e.at, text: `PlanSlice     ${e.text}` })),
    ...o.agent.filter((r) => /^kernel synced|failed|retry/.test(String(r.msg))).map((r) => ({ at: Number(r.time), text: `agent         ${String(r.msg)} ${JSON.stringify({ ops: r.ops, read: r.read, draining: r.draining, errors: r.errors })}` })),
    // The controller's reconciles of this plan's VirtualServer that were slow or failed (the
    // leader's log; operator/trace.ts says where the time went: queue wait, then by step). The
    // record is written when the reconcile ends.
    // And the replicas' leadership: a leader past its renew deadline withholds every write.
    ...(o.controller ?? []).filter((r) => (String(r.vs ?? '').endsWith(`/${o.plan}`) && /slow reconcile|failed/.test(String(r.msg))) || /became leader|lost leadership|lease request failed/.test(String(r.msg)))
      .map((r) => ({ at: Number(r.time), text: `controller    ${String(r.msg)} ${JSON.stringify({ ms: r.ms, queuedMs: r.queuedMs, steps: r.steps, err: r.err, identity: r.identity, result: r.result })}` })),
  ].sort((a, b) => a.at - b.at);
  return lines.slice(-60).map((l) => `#   ${s(l.at)}  ${l.text}`).join('\n');
}
