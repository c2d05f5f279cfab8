// Entry point of the controller process. Configuration comes from flags and the environment:
//   KUBECONFIG (else the in-cluster service account), POD_NAME (identity), POD_NAMESPACE (where
//   the Lease lives), and flags --metrics-port, --lease-name, --lease-duration, --renew-deadline,
//   --retry-period (durations in seconds), --workers, --log-level, --leader-elect=false,
//   --default-load-balancer-class=true (serve LoadBalancer Services that name no class).
// SIGTERM/SIGINT stop it gracefully: in-flight reconciles finish, the lease is released, exit 0.
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { Controller } from './controller.ts';
import { loadRestConfig, RestKubeApi } from '../kube/rest.ts';
import { logMemoryBudget } from '../kube/memory.ts';
import { watchGcPauses } from '../kube/gc-log.ts';
import { DEFAULT_LEADER_ELECTION } from '../kube/leader.ts';

const SA_NAMESPACE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

export interface MainConfig {
  kubeconfig: 'env' | 'in-cluster';
  identity: string;
  leaseNamespace: string;
  leaseName: string;
  leaderElect: boolean;
  /** Serve LoadBalancer Services without spec.loadBalancerClass (the cluster's default load balancer). */
  defaultLoadBalancerClass: boolean;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  metricsPort: number;
  workers: number;
  logLevel: string;
}

function seconds(flag: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${flag}: must be a positive number of seconds, got ${JSON.stringify(v)}`);
  return Math.round(n * 1000);
}

function integer(flag: string, v: string | undefined, dflt: number, min: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${flag}: must be an integer >= ${min}, got ${JSON.stringify(v)}`);
  return n;
}

/** Flags and environment to configuration; bad values throw naming the flag. */
export function parseConfig(argv: string[], env: NodeJS.ProcessEnv): MainConfig {
  const { values } = parseArgs({
    args: argv,
    options: {
      'metrics-port': { type: 'string' }, 'lease-name': { type: 'string' }, 'lease-namespace': { type: 'string' },
      'lease-duration': { type: 'string' }, 'renew-deadline': { type: 'string' }, 'retry-period': { type: 'string' },
      workers: { type: 'string' }, 'log-level': { type: 'string' }, 'leader-elect': { type: 'string' }, 'default-load-balancer-class': { type: 'string' },
    },
    strict: true,
  });
  const le = values['leader-elect'] ?? 'true';
  if (le !== 'true' && le !== 'false') throw new Error(`--leader-elect: must be true or false, got ${JSON.stringify(le)}`);
  const dlb = values['default-load-balancer-class'] ?? 'false';
  if (dlb !== 'true' && dlb !== 'false') throw new Error(`--default-load-balancer-class: must be true or false, got ${JSON.stringify(dlb)}`);
  const ns = values['lease-namespace'] ?? env.POD_NAMESPACE ?? (existsSync(SA_NAMESPACE) ? readFileSync(SA_NAMESPACE, 'utf8').trim() : 'default');
  return {
    kubeconfig: env.KUBECONFIG ? 'env' : 'in-cluster',
    identity: env.POD_NAME ?? `${hostname()}-${randomBytes(4).toString('hex')}`,
    leaseNamespace: ns,
    leaseName: values['lease-name'] ?? DEFAULT_LEADER_ELECTION.name,
    leaderElect: le === 'true',
    defaultLoadBalancerClass: dlb === 'true',
    leaseDurationMs: seconds('lease-duration', values['lease-duration'], DEFAULT_LEADER_ELECTION.leaseDurationMs),
    renewDeadlineMs: seconds('renew-deadline', values['renew-deadline'], DEFAULT_LEADER_ELECTION.renewDeadlineMs),
    retryPeriodMs: seconds('retry-period', values['retry-period'], DEFAULT_LEADER_ELECTION.retryPeriodMs),
    metricsPort: integer('metrics-port', values['metrics-port'] ?? env.METRICS_PORT, 8080, 0),
    workers: integer('workers', values.workers, 4, 1),
    logLevel: values['log-level'] ?? env.LOG_LEVEL ?? 'info',
  };
}

export async function main(argv = process.argv.slice(2), env = process.env): Promise<void> {
  const cfg = parseConfig(argv, env);
  const logger = pino({ level: cfg.logLevel, base: { component: 'lvs-operator', identity: cfg.identity } });
  logMemoryBudget(logger);
  // At --log-level debug: a line per garbage-collection pause of 20 ms or more (../kube/gc-log.ts).
  const stopGcLog = watchGcPauses(logger);
  const api = new RestKubeApi(await loadRestConfig(cfg.kubeconfig === 'env' ? 'kubeconfig' : 'in-cluster', { env }));
  const controller = new Controller({
    api, identity: cfg.identity, logger, workers: cfg.workers, defaultLoadBalancerClass: cfg.defaultLoadBalancerClass, http: { port: cfg.metricsPort }, defaultMetrics: true,
    leaderElection: cfg.leaderElect && {
      namespace: cfg.leaseNamespace, name: cfg.leaseName,
      leaseDurationMs: cfg.leaseDurationMs, renewDeadlineMs: cfg.renewDeadlineMs, retryPeriodMs: cfg.retryPeriodMs,
    },
  });
  let stopping = false;
  const shutdown = (sig: string) => {
    if (stopping) { logger.warn({ op: 'shutdown', signal: sig }, 'second signal; exiting now'); process.exit(1); }
    stopping = true;
    logger.info({ op: 'shutdown', signal: sig }, 'stopping');
    stopGcLog();
    controller.stop().then(() => process.exit(0), (err: unknown) => { logger.error({ op: 'shutdown', err: String(err) }, 'stop failed'); process.exit(1); });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  await controller.start();
  logger.info({ op: 'start', metricsPort: controller.httpPort, lease: cfg.leaderElect ? `${cfg.leaseNamespace}/${cfg.leaseName}` : 'disabled' }, 'lvs-operator running');
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    console.error(`lvs-operator: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
