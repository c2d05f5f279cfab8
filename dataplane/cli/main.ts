#!/usr/bin/env node
// lvs-agent: the per-node dataplane agent. Standalone commands work on a host without a cluster,
// like keepalived's: apply VirtualServer manifests with static backends, show what is
// programmed, prepare and clean up real servers.
import { parseArgs } from 'node:util';
import { pino, type Logger } from 'pino';
import { createSpawner } from '../spawner.ts';
import { applyCommand, cleanupCommand, prepareCommand, runCommand, showCommand } from './commands.ts';
import { InvalidManifestsError } from '../agent/manifests.ts';
import { UsageError } from './commands.ts';

const USAGE = `usage:
  lvs-agent run [--min-sync-interval-ms 0]
      cluster mode (the DaemonSet): NODE_NAME from the environment, KUBECONFIG or in-cluster
      credentials; programs IPVS from the plans the controller publishes (PlanSlices) for the
      VirtualServers this node directs, prepares local DR/TUN real servers, reports in the node's
      AgentReport. --min-sync-interval-ms (0-60000): the least time between the starts of two
      syncs caused by changes; 0 syncs a change at once (changes during a sync go into one more);
      raise it to bound the agent's CPU under heavy churn, at the cost of latency
  lvs-agent run --peer-key-file FILE --peer-listen ADDR[:PORT] [--sync-interface DEV [--sync-id N]]
          [--peer-interval-ms 100] [--peer-dead-ms 350] [--peer-warmup-ms 5000]
      the directors of a VIP elect its announcer among themselves, as apply --watch --peer does;
      each publishes --peer-listen (this node's address) in its AgentReport and beats to the
      addresses the other reports give; the election goes on while the API server is down
  lvs-agent apply -f FILE|DIR [-f ...] [--watch] [--allow-empty] [--drain-timeout SECONDS]
          [--announce l2|none] [--announce-interface DEV ...]
      program this host's IPVS from VirtualServer manifests (static backends); with --watch keep
      them applied (re-read on change, periodic resync undoes outside edits). Input is checked as
      the API server checks it (the CRD's schema and CEL rules) and any error changes nothing;
      documents of other API groups are skipped (and listed on stderr); a set with no
      VirtualServer is refused unless --allow-empty (it removes every service lvs-agent programmed).
      --announce l2 (default): answer ARP/NDP for the VIPs and send a gratuitous ARP / unsolicited
      NA when one appears, on the devices whose subnet holds it (or --announce-interface);
      none: stay silent (the network routes VIPs to this host)
  lvs-agent apply --watch ... --peer ADDR[:PORT] [--peer ...] --peer-key-file FILE
          [--peer-listen ADDR[:PORT]] [--sync-interface DEV [--sync-id N]] [--node-name NAME]
          [--peer-interval-ms 100] [--peer-dead-ms 350] [--peer-warmup-ms 5000]
      directors with the same manifests elect one announcer per VIP among themselves (UDP
      heartbeats, HMAC-SHA256 with the shared key; port 7480 by default); a director that stops
      beating or fails its syncs loses its VIPs to the others within --peer-dead-ms.
      --sync-interface runs the kernel's IPVS connection sync (master and backup daemons) there,
      so established connections continue on the director that takes over
  lvs-agent show [--json] [--all]
      what is programmed, by VirtualServer, with connection counts (--all: foreign services too)
  lvs-agent prepare --forwarding DR|TUN --vip IP [--vip IP ...] [--encap 4] [--netns NAME | --pid PID]
      prepare a real server (this host by default) for direct return of VIP traffic; IPv4 and
      IPv6 VIPs; --encap 4: TUN of IPv6 VIPs to this real server's IPv4 address (sit0)
  lvs-agent cleanup [--netns NAME | --pid PID]
      with a target: undo real-server preparation there; without: remove this host's director
      state that lvs-agent owns (IPVS services on lvs0 VIPs, lvs0, its nft tables) and nothing else
common options: --state-file PATH (default /run/lvs-agent/standalone.json), --log-level LEVEL
run and apply --watch: --metrics-address HOST:PORT serves /healthz and /metrics (syncs: duration,
      result, operations, errors, last success; netlink writes, messages and errors by errno;
      run: network-programming latency; health checks per real server, probes run and failed;
      announced VIPs; the kernel's IPVS counters of this agent's services:
      --metrics-ipvs-stats services (default) | real-servers | off)
health checks (spec.healthCheck): each director probes its real servers; one failing
      failureThreshold checks gets weight 0 (or is removed), back after successThreshold passes;
      \`show\` prints each real server's last state (HEALTH), one-shot \`apply\` runs one round`;

const OPTIONS = {
  file: { type: 'string', short: 'f', multiple: true },
  watch: { type: 'boolean' },
  'allow-empty': { type: 'boolean' },
  'drain-timeout': { type: 'string' },
  json: { type: 'boolean' },
  all: { type: 'boolean' },
  forwarding: { type: 'string' },
  vip: { type: 'string', multiple: true },
  encap: { type: 'string' },
  netns: { type: 'string' },
  pid: { type: 'string' },
  'state-file': { type: 'string' },
  'metrics-address': { type: 'string' },
  'metrics-ipvs-stats': { type: 'string' },
  announce: { type: 'string' },
  'announce-interface': { type: 'string', multiple: true },
  peer: { type: 'string', multiple: true },
  'peer-listen': { type: 'string' },
  'peer-key-file': { type: 'string' },
  'peer-interval-ms': { type: 'string' },
  'peer-dead-ms': { type: 'string' },
  'peer-warmup-ms': { type: 'string' },
  'sync-interface': { type: 'string' },
  'sync-id': { type: 'string' },
  'node-name': { type: 'string' },
  'min-sync-interval-ms': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;


async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  const [command, ...rest] = positionals;
  if (values.help || !command) { console.log(USAGE); return command ? 0 : 2; }
  if (rest.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(rest[0])}`);
  const log: Logger = pino({ level: values['log-level'] ?? process.env.LOG_LEVEL ?? 'info' }, pino.destination(2));
  // Every command starts from one shell forked now, while this process is small (../spawner.ts).
  const ctx = { values, log, run: createSpawner().run };
  switch (command) {
    case 'run': return runCommand(ctx);
    case 'apply': return applyCommand(ctx);
    case 'show': return showCommand(ctx);
    case 'prepare': return prepareCommand(ctx);
    case 'cleanup': return cleanupCommand(ctx);
    default: throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    if (err instanceof InvalidManifestsError) {
      console.error(`lvs-agent: rejected, nothing was changed:\n${err.message}`);
      process.exitCode = 2;
    } else if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`lvs-agent: ${(err as Error).message}\n${USAGE}`);
      process.exitCode = 2;
    } else {
      console.error(`lvs-agent: ${err instanceof Error ? err.message : String(err)}`);
      process.exitCode = 1;
    }
  },
);
