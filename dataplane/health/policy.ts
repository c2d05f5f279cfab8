// Policy over check results (pure): when a real server is in or out of rotation. keepalived's
// split: checkers report pass/fail, this decides. Down after failureThreshold failures in a row,
// up after successThreshold passes in a row; a real server that has never passed starts down.
export interface Thresholds {
  failureThreshold: number;
  successThreshold: number;
}

export interface Health {
  up: boolean;
  /** Consecutive results agreeing with the last one. */
  passes: number;
  failures: number;
  /** When `up` last changed (ms on the caller's clock); the first observation counts. */
  since: number;
  /** Last failure's reason while down, "ok" while up. */
  message: string;
  /** At least one check has completed. */
  checked: boolean;
  /** The first failure of the current run of failures (cleared by a pass). */
  failure?: string;
}

export function initialHealth(now: number, up = false): Health {
  return { up, passes: 0, failures: 0, since: now, message: up ? 'up before this agent started' : 'not checked yet', checked: false };
}

/** The next health after one result; `changed` says whether up flipped. */
export function observe(h: Health, ok: boolean, message: string, t: Thresholds, now: number): { health: Health; changed: boolean } {
  const passes = ok ? h.passes + 1 : 0;
  const failures = ok ? 0 : h.failures + 1;
  let up = h.up;
  if (!up && ok && passes >= t.successThreshold) up = true;
  if (up && !ok && failures >= t.failureThreshold) up = false;
  const changed = up !== h.up;
  // While down, the latest failure names it: the first of the run can be a passing hiccup (a
  // timeout while the agent starts) that is no longer why the server is out; `failure` keeps the
  // first. A steady reason is the same string check after check, so reports change only when it does.
  const failure = ok ? undefined : h.failure ?? message;
  const msg = up ? 'ok' : ok ? `passed ${passes} of ${t.successThreshold} checks needed` : message;
  const health: Health = { up, passes, failures, since: changed ? now : h.since, message: msg, checked: true };
  if (failure !== undefined) health.failure = failure;
  return { health, changed };
}
