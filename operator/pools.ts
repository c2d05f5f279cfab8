// VIPPool status: Ready=True when the pool grants its addresses, Ready=False naming the field when
// it grants nothing (a range the CRD could not judge, an overlap with an older pool). Written only
// when it differs, like VirtualServer status. Pools share the work queue under "VIPPool/<name>"
// keys: a namespace name never holds an uppercase letter, so they cannot collide with
// "namespace/name" VirtualServer keys.
import type { KubeApi } from '../kube/api.ts';
import type { Clock } from '../kube/clock.ts';
import { isNotFound } from '../kube/errors.ts';
import { VIP_POOLS, type Condition, type KubeObject } from '../kube/types.ts';
import type { ReconcileResult } from './queue.ts';
import { jsonEqual, withTransitions } from './status.ts';
import type { World } from './world.ts';

export const POOL_KEY_PREFIX = 'VIPPool/';

export const poolKey = (name: string): string => `${POOL_KEY_PREFIX}${name}`;

export interface PoolObject extends KubeObject {
  spec?: { addresses?: string[] };
  status?: { observedGeneration?: number; conditions?: Condition[] };
}

export function desiredPoolCondition(pool: PoolObject, problems: ReadonlyArray<{ reason: string; field: string; message: string }> | undefined): { type: string; status: 'True' | 'False'; reason: string; message: string } {
  if (problems && problems.length > 0) {
    return { type: 'Ready', status: 'False', reason: problems[0]?.reason ?? 'Invalid', message: problems.map((p) => `${p.field}: ${p.message}`).join('; ').slice(0, 32768) };
  }
  const n = Array.isArray(pool.spec?.addresses) ? pool.spec.addresses.length : 0;
  return { type: 'Ready', status: 'True', reason: 'Valid', message: `${n} address range(s) granted` };
}

export interface PoolReconcileDeps {
  api: KubeApi;
  world: World;
  getPool(name: string): PoolObject | undefined;
  clock: Clock;
  canWrite(): boolean;
}

export async function reconcilePool(name: string, deps: PoolReconcileDeps, signal?: AbortSignal): Promise<ReconcileResult> {
  const pool = deps.getPool(name);
  if (!pool) return { kind: 'done' };
  const generation = pool.metadata.generation ?? 0;
  const want = desiredPoolCondition(pool, deps.world.poolProblems(name));
  const conditions = withTransitions([want], pool.status?.conditions, generation, deps.clock.wallNow());
  if (pool.status?.observedGeneration === generation && jsonEqual(pool.status?.conditions, conditions)) return { kind: 'done' };
  if (!deps.canWrite()) return { kind: 'error', err: new Error('not the leader: status write withheld') };
  try {
    await deps.api.patchStatus(VIP_POOLS, undefined, name, { status: { observedGeneration: generation, conditions } }, signal);
    return { kind: 'done' };
  } catch (err) {
    return isNotFound(err) ? { kind: 'done' } : { kind: 'error', err };
  }
}
