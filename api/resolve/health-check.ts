// Defensive validation of spec.healthCheck and of the per-real-server overrides in
// spec.backends.static[].healthCheck (the CRD's schema and CEL rules say the same at the API
// server; see validate.ts for why the resolver checks again). Defaults are the CRD's.
import type { PlanHealthCheck } from '../plan.ts';
import type { StaticBackend } from './types.ts';
import { isInt, isObj, type Problems } from './validate.ts';

const PATH = /^\/[!-~]*$/;
const HOST = /^[A-Za-z0-9.:[\]-]+$/;

export function validateHealthCheck(v: unknown, p: Problems): PlanHealthCheck | undefined {
  const f = 'spec.healthCheck';
  if (v === undefined) return undefined;
  if (!isObj(v)) { p.add(f, 'healthCheck is not an object'); return undefined; }
  const kinds = (['tcp', 'http', 'https'] as const).filter((k) => v[k] !== undefined);
  if (kinds.length !== 1) { p.add(f, 'healthCheck needs exactly one of tcp, http or https'); return undefined; }
  const type = kinds[0]!;
  const int = (name: string, min: number, max: number, def: number): number => {
    const x = v[name] === undefined ? def : v[name];
    if (isInt(x, min, max)) return x;
    p.add(`${f}.${name}`, `${name} must be an integer from ${min} to ${max}`);
    return def;
  };
  const out: PlanHealthCheck = {
    type,
    intervalSeconds: int('intervalSeconds', 1, 3600, 2),
    timeoutSeconds: int('timeoutSeconds', 1, 60, 1),
    failureThreshold: int('failureThreshold', 1, 100, 3),
    successThreshold: int('successThreshold', 1, 100, 1),
    onFailure: 'Quiesce',
  };
  if (out.timeoutSeconds > out.intervalSeconds) p.add(`${f}.timeoutSeconds`, 'healthCheck.timeoutSeconds must not exceed healthCheck.intervalSeconds');
  if (v.onFailure !== undefined) {
    if (v.onFailure === 'Quiesce' || v.onFailure === 'Remove') out.onFailure = v.onFailure;
    else p.add(`${f}.onFailure`, `unknown onFailure ${JSON.stringify(v.onFailure)}; expected Quiesce or Remove`);
  }
  const body = v[type];
  if (!isObj(body)) { p.add(`${f}.${type}`, `${type} is not an object`); return out; }
  if (type !== 'tcp') httpFields(body, `${f}.${type}`, out, p);
  return out;
}

function httpFields(b: Record<string, unknown>, f: string, out: PlanHealthCheck, p: Problems): void {
  const path = b.path === undefined ? '/' : b.path;
  if (typeof path === 'string' && path.length <= 1024 && PATH.test(path)) out.path = path;
  else p.add(`${f}.path`, 'path must start with / and hold only printable ASCII without spaces (at most 1024 characters)');
  if (b.host !== undefined) {
    if (typeof b.host === 'string' && b.host.length <= 253 && HOST.test(b.host)) out.host = b.host;
    else p.add(`${f}.host`, 'host must be a host name or address (at most 253 characters)');
  }
  if (b.expectedStatuses !== undefined) {
    const xs = b.expectedStatuses;
    if (Array.isArray(xs) && xs.length >= 1 && xs.length <= 16 && xs.every((x) => isInt(x, 100, 599))) out.statuses = [...new Set(xs as number[])].sort((a, c) => a - c);
    else p.add(`${f}.expectedStatuses`, 'expectedStatuses must list 1 to 16 HTTP status codes from 100 to 599');
  }
}

export function validateCheckOverride(v: unknown, f: string, p: Problems): StaticBackend['check'] {
  if (v === undefined) return undefined;
  if (!isObj(v)) { p.add(f, 'healthCheck is not an object'); return undefined; }
  const out: NonNullable<StaticBackend['check']> = {};
  if (v.port !== undefined) {
    if (isInt(v.port, 1, 65535)) out.port = v.port; else p.add(`${f}.port`, 'port must be an integer from 1 to 65535');
  }
  if (v.path !== undefined) {
    if (typeof v.path === 'string' && v.path.length <= 1024 && PATH.test(v.path)) out.path = v.path;
    else p.add(`${f}.path`, 'path must start with / and hold only printable ASCII without spaces');
  }
  return out;
}

/** Overrides need a service-level check, and a path needs an http(s) one. */
export function checkOverrides(entries: readonly StaticBackend[], hc: PlanHealthCheck | undefined, p: Problems): void {
  for (const e of entries) {
    if (!e.check) continue;
    const f = `spec.backends.static[${e.index}].healthCheck`;
    if (!hc) p.add(f, 'backends.static[].healthCheck overrides spec.healthCheck, which is not set');
    else if (hc.type === 'tcp' && e.check.path !== undefined) p.add(`${f}.path`, 'path applies to http and https checks, not tcp');
  }
}
