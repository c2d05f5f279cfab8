// Guest suite of test/kernel/health.test.ts: health checks of static real servers on Debian's
// kernel, a standalone director (`lvs-agent apply --watch` in the director namespace, NAT), real
// servers in their own namespaces and real client traffic; `ipvsadm -Ln`, read in a loop by a
// sampler (./health/sampler.ts) together with /proc/net/ip_vs (read every ~50 ms, to time
// changes), is the witness of every weight and of when it changed.
// Services: test/kernel/fixtures/health/health.yaml (every check at a 1 s interval).
//   rs1 172.16.0.2, rs2 .3  identity servers on 80 and 81 (lab/guest/echo-server.ts); rs2 is not
//                           running when the agent starts
//   rs3 .4                  HTTP: /live answers 204, everything else 200
//   rs4 .5                  HTTP: /healthz answers 500, everything else 200
//   rs5 .6                  HTTP: accepts, reads, never answers
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { listIpvs } from '../../../lab/guest/ipvsadm.ts';
import { nsSh } from '../../../lab/guest/netns.ts';
import { runClient, stopServers, type ClientResult, type ServerHandle } from '../../../lab/guest/traffic.ts';
import { agentTopology, CONNECT_TIMEOUT_MS, startServerPatiently, type AgentTopology } from '../../../lab/guest/agent-net.ts';
import { agent, agentOk, later, startAgent, timed, type AgentProcess } from './agent/cli.ts';
import { destOf, startHttpServer, startSampler, weightsOf, type NodeServer, type Sample, type Sampler } from './health/sampler.ts';

const uvuSuite = suite('health checks of static real servers: TCP and HTTP checks, quiesce and remove, never-passed, restart, show, one-shot');
const test = timed(uvuSuite);
const STATE = '/run/lvs-agent/director-health.json';
const HEALTH_RECORD = '/run/lvs-agent/director-health.health.json';
const DIR = '/run/health/manifests';
const WATCH = ['apply', '--watch', '-f', DIR, '--state-file', STATE, '--drain-timeout', '5'];
const RS1 = '172.16.0.2', RS2 = '172.16.0.3', RS3 = '172.16.0.4', RS4 = '172.16.0.5', RS5 = '172.16.0.6';
// Services as ipvsadm prints them, and their real servers.
const Q = '203.0.113.80:80', R = '203.0.113.81:81', H = '203.0.113.82:8080', E = '203.0.113.83:8080';
const q = (rs: string) => `${rs}:80`, r = (rs: string) => `${rs}:81`, h = (rs: string) => `${rs}:8080`;
// tcp-quiesce: interval 1 s, failureThreshold 3, successThreshold 2; the others succeed on 1 pass.
const INTERVAL_MS = 1000, FAILURE_THRESHOLD = 3, SUCCESS_THRESHOLD = 2;
/** The issue's bound: out of rotation within failureThreshold × interval + 1 s. */
const OUT_WITHIN_MS = FAILURE_THRESHOLD * INTERVAL_MS + 1000;
/**
 * In again within successThreshold × interval + 2 s of listening: the passes (the first check
 * after it listens can be a whole interval away), the sync loop's rate limit (1 s) and the sync.
 */
const BACK_WITHIN_MS = SUCCESS_THRESHOLD * INTERVAL_MS + 2000;

let topo: AgentTopology | undefined;
let sampler: Sampler | undefined;
let watch: AgentProcess | undefined;
let rs2: ServerHandle | undefined;
const http: NodeServer[] = [];
const measured: string[] = [];

uvuSuite.after(async () => {
  if (watch && !watch.exited) await watch.kill('SIGKILL');
  sampler?.stop();
  await Promise.all(http.map((s) => s.stop()));
  await stopServers();
  topo?.destroy();
  for (const source of ['proc', 'ipvsadm'] as const) {
    const reads = (sampler?.samples ?? []).filter((x) => x.source === source);
    const gaps = reads.slice(1).map((x, i) => x.at - reads[i]!.at).sort((a, b) => a - b);
    if (gaps.length) measured.push(`sampler, ${source === 'proc' ? '/proc/net/ip_vs' : 'ipvsadm -Ln'}: ${reads.length} reads, period median ${gaps[gaps.length >> 1]} ms, 90th percentile ${gaps[Math.floor(gaps.length * 0.9)]} ms`);
  }
  if (measured.length) console.log(`\n# health measurements:\n${measured.map((m) => `#   ${m}`).join('\n')}`);
});

const measure = (what: string, ms: number) => { measured.push(`${what}: ${ms} ms`); console.log(`\n# measured: ${what}: ${ms} ms`); };
const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));
const weight = (s: Sample, svc: string, rs: string) => destOf(s, svc, rs)?.weight;

/** The table of our four services, "svc: rs weight, ..." (what the sampler or ipvsadm saw). */
function ours(services: Sample['services'] = listIpvs('director')): Record<string, string[]> {
  const w = (svc: string) => weightsOf({ services }, svc).sort();
  return { [Q]: w(Q), [R]: w(R), [H]: w(H), [E]: w(E) };
}

/** The healthy steady state once rs2 runs: every server in, except rs4/rs5 on http and rs3 on http-expect. */
const ALL_UP = {
  [Q]: [`${q(RS1)} 3`, `${q(RS2)} 2`], [R]: [`${r(RS1)} 1`, `${r(RS2)} 1`],
  [H]: [`${h(RS3)} 1`, `${h(RS4)} 0`, `${h(RS5)} 0`], [E]: [`${h(RS3)} 0`, `${h(RS4)} 1`],
};

/** `count` HTTP GETs of `url` from the client namespace, one curl, a new connection each: "<id> <status>" per request. */
function httpBurst(url: string, count: number): string[] {
  const urls = Array.from({ length: count }, () => `'${url}'`).join(' ');
  const out = nsSh('client', `curl -s -m 20 -H 'Connection: close' -w ' %{http_code}\\n' ${urls} || true\n`);
  return out.split('\n').filter((l) => l !== '');
}

interface LogLine { time?: number; op?: string; msg?: string; target?: string; up?: boolean }
/** The watching agent's pino lines (stderr). */
const agentLog = (stderr: string): LogLine[] => stderr.split('\n').filter((l) => l.startsWith('{')).flatMap((l) => { try { return [JSON.parse(l) as LogLine]; } catch { return []; } });

/**
 * Where the time from an event (`t0`) to `seen` (the first ipvsadm read showing the change) went,
 * from the agent's own log: the check's flip (`op: health` for `target`), the kernel operation on
 * `dest` of `svc` that followed, and the read before `seen` (the change happened after it).
 */
function breakdown(t0: number, seen: Sample, target: string, up: boolean, opMsg: string): string {
  const logs = agentLog(watch!.stderr());
  const flip = logs.find((l) => l.op === 'health' && l.target === target && l.up === up && (l.time ?? 0) >= t0);
  const op = logs.find((l) => (l.time ?? 0) >= (flip?.time ?? t0) && (l.msg ?? '').includes(opMsg));
  const prev = sampler!.samples[sampler!.samples.indexOf(seen) - 1];
  const ms = (t?: number) => (t === undefined ? '?' : `${t - t0} ms`);
  return `check flip at ${ms(flip?.time)}, kernel op logged at ${ms(op?.time)}, the read before (${prev?.source}) at ${ms(prev?.at)}, the first read showing it (${seen.source}) at ${ms(seen.at)}`;
}

/** The first `ipvsadm -Ln` read from `from` on that agrees with `pred`: the independent tool's confirmation. */
async function confirmedByIpvsadm(from: Sample, pred: (s: Sample) => boolean, what: string): Promise<Sample> {
  return sampler!.waitFor((s) => s.source === 'ipvsadm' && pred(s), { after: from.before, timeoutMs: 10_000, what: `ipvsadm read confirming ${what}` });
}

const tcpClients = (host: string, port: number, count: number): Promise<ClientResult> =>
  runClient('client', { host, port, count, timeoutMs: CONNECT_TIMEOUT_MS });

let agentStartedAt = 0;

test('setup: topology, identity servers on rs1 (rs2 stays down), HTTP servers rs3 (200, /live 204), rs4 (/healthz 500), rs5 (never answers)', async () => {
  topo = agentTopology({ gateways: 5 });
  sampler = startSampler('director');
  await startServerPatiently('rs1', { id: 'rs1', tcp: [80, 81] });
  http.push(await startHttpServer('rs3', { id: 'rs3', port: 8080, paths: { '/live': 204 } }));
  http.push(await startHttpServer('rs4', { id: 'rs4', port: 8080, paths: { '/healthz': 500 } }));
  http.push(await startHttpServer('rs5', { id: 'rs5', port: 8080, hang: true }));
  mkdirSync(DIR, { recursive: true });
  copyFileSync('test/kernel/fixtures/health/health.yaml', join(DIR, 'health.yaml'));
  assert.is(nsSh('rs2', "ss -Hltn 'sport = :80 or sport = :81' | wc -l").trim(), '0', 'rs2 must not listen yet');
  assert.ok(sampler.samples.length > 0 || (await sampler.waitFor(() => true, { after: 0 })), 'the sampler reads ipvsadm');
});

test('apply --watch on a clean director: every real server starts at weight 0 and enters after its checks pass', async () => {
  agentStartedAt = Date.now();
  watch = startAgent('director', WATCH);
  const inQ = await sampler!.waitFor((s) => weight(s, Q, q(RS1)) === 3, { after: agentStartedAt, what: `${q(RS1)} at weight 3 in ${Q}` });
  measure('apply --watch start -> rs1 in rotation (agent start, 2 passes, sync)', inQ.at - agentStartedAt);
  // A server that passes its first check but needs two (tcp-quiesce) was programmed at weight 0 first.
  const first = sampler!.samples.find((s) => s.before >= agentStartedAt && destOf(s, Q, q(RS1)) !== undefined)!;
  assert.is(weight(first, Q, q(RS1)), 0, `first sample with ${Q}: ${weightsOf(first, Q).join(', ')}`);
  // Four more rounds of checks: the failing ones have failed failureThreshold times by now.
  await sleep(4 * INTERVAL_MS);
  const settled = await sampler!.waitFor((s) => weight(s, H, h(RS3)) === 1 && weight(s, E, h(RS4)) === 1, { what: 'rs3 in http, rs4 in http-expect' });
  assert.equal(ours(settled.services), {
    [Q]: [`${q(RS1)} 3`, `${q(RS2)} 0`], [R]: [`${r(RS1)} 1`],
    [H]: [`${h(RS3)} 1`, `${h(RS4)} 0`, `${h(RS5)} 0`], [E]: [`${h(RS3)} 0`, `${h(RS4)} 1`],
  });
});

test('HTTP check: /healthz answering 500 is out, 200 is in (default 200-399); expectedStatuses [200] takes out a 204 and keeps a 200', async () => {
  // Never in rotation since the agent started, in any sample.
  for (const s of sampler!.between(agentStartedAt, Date.now())) {
    assert.ok(!weight(s, H, h(RS4)), `rs4 (500) had weight ${weight(s, H, h(RS4))} in http at ${s.at}`);
    assert.ok(!weight(s, E, h(RS3)), `rs3 (204, expected 200) had weight ${weight(s, E, h(RS3))} in http-expect at ${s.at}`);
  }
  // Real traffic: every request to http is answered by rs3, every one to http-expect by rs4.
  const vh = H.split(':')[0], ve = E.split(':')[0];
  assert.equal(httpBurst(`http://${vh}:8080/`, 10), Array(10).fill('rs3 200'));
  assert.equal(httpBurst(`http://${ve}:8080/`, 10), Array(10).fill('rs4 200'));
});

test('HTTP check: a server that accepts but never answers (timeout) is out', async () => {
  const all = sampler!.between(agentStartedAt, Date.now());
  assert.ok(all.length > 10, `only ${all.length} samples`);
  for (const s of all) assert.ok(!weight(s, H, h(RS5)), `rs5 (never answers) had weight ${weight(s, H, h(RS5))} at ${s.at}`);
  // It accepts connections: the check fails on its timeout, not on a refusal.
  assert.is(nsSh('rs5', "ss -Hltn 'sport = :8080' | wc -l").trim(), '1');
});

test('never passed: rs2, not running at apply, stays at weight 0 (tcp-quiesce) and absent (tcp-remove, onFailure Remove) until it starts; then in after 2 passes', async () => {
  const before = Date.now();
  const span = sampler!.between(agentStartedAt, before);
  // (A read during the first sync can see a service before all its destinations are added.)
  for (const s of span) {
    assert.ok(!weight(s, Q, q(RS2)), `rs2 in tcp-quiesce at ${s.at}: ${weightsOf(s, Q).join(', ')}`);
    assert.is(destOf(s, R, r(RS2)), undefined, `rs2 in tcp-remove at ${s.at}: ${weightsOf(s, R).join(', ')}`);
  }
  assert.ok(span.filter((x) => x.source === 'ipvsadm').length >= 10, 'ipvsadm read the table throughout');
  const last = span.at(-1)!;
  assert.is(weight(last, Q, q(RS2)), 0, `tcp-quiesce holds rs2 at weight 0: ${weightsOf(last, Q).join(', ')}`);
  rs2 = await startServerPatiently('rs2', { id: 'rs2', tcp: [80, 81] });
  const listening = Date.now();
  const inQ = await sampler!.waitFor((s) => weight(s, Q, q(RS2)) === 2, { after: listening, what: `${q(RS2)} at weight 2` });
  const inR = await sampler!.waitFor((s) => weight(s, R, r(RS2)) === 1, { after: listening, what: `${r(RS2)} in tcp-remove` });
  measure(`rs2 listening -> weight 2 in tcp-quiesce (successThreshold ${SUCCESS_THRESHOLD})`, inQ.at - listening);
  measure('rs2 listening -> added to tcp-remove (successThreshold 1)', inR.at - listening);
  assert.ok(inQ.at - listening <= BACK_WITHIN_MS, `${inQ.at - listening} ms > ${BACK_WITHIN_MS} ms`);
  // Both real servers take new connections now.
  const [cq, cr] = [await tcpClients(Q.split(':')[0]!, 80, 10), await tcpClients(R.split(':')[0]!, 81, 10)];
  assert.is(cq.errors, 0, cq.firstError);
  assert.equal(cq.byId, { rs1: 5, rs2: 5 });
  assert.is(cr.errors, 0, cr.firstError);
  assert.equal(cr.byId, { rs1: 5, rs2: 5 });
});

test(`TCP check: rs2 killed -> weight 0 within failureThreshold × interval + 1 s (${OUT_WITHIN_MS} ms); afterwards no client connection fails; onFailure Remove drains, then deletes`, async () => {
  // tcp-remove's rs2 holds connection entries from the traffic above (TIME_WAIT: 2 minutes).
  const held = await sampler!.waitFor(() => true);
  assert.ok((destOf(held, R, r(RS2))?.inactConn ?? 0) > 0, `rs2 in tcp-remove: ${JSON.stringify(destOf(held, R, r(RS2)))}`);
  rs2!.process.kill('SIGKILL');
  const killed = Date.now();
  const outQ = await sampler!.waitFor((s) => weight(s, Q, q(RS2)) === 0, { after: killed, what: `${q(RS2)} at weight 0` });
  const drainR = await sampler!.waitFor((s) => weight(s, R, r(RS2)) === 0, { after: killed, what: `${r(RS2)} draining` });
  measure('rs2 killed -> weight 0 in tcp-quiesce', outQ.at - killed);
  measure('rs2 killed -> weight 0 (draining) in tcp-remove', drainR.at - killed);
  const [byQ, byR] = [await confirmedByIpvsadm(outQ, (s) => weight(s, Q, q(RS2)) === 0, 'rs2 at 0 in tcp-quiesce'), await confirmedByIpvsadm(drainR, (s) => weight(s, R, r(RS2)) === 0, 'rs2 draining in tcp-remove')];
  measure('rs2 killed -> ipvsadm shows weight 0 in tcp-quiesce', byQ.at - killed);
  measure('rs2 killed -> ipvsadm shows weight 0 in tcp-remove', byR.at - killed);
  console.log(`# tcp-quiesce after the kill: ${breakdown(killed, outQ, `tcp ${q(RS2)}`, false, `${q(RS2)} of TCP/${Q}`)}`);
  console.log(`# tcp-remove after the kill: ${breakdown(killed, drainR, `tcp ${r(RS2)}`, false, `${r(RS2)} of TCP/${R}`)}`);
  assert.ok(outQ.at - killed <= OUT_WITHIN_MS, `tcp-quiesce: ${outQ.at - killed} ms > ${OUT_WITHIN_MS} ms`);
  assert.ok(drainR.at - killed <= OUT_WITHIN_MS, `tcp-remove: ${drainR.at - killed} ms > ${OUT_WITHIN_MS} ms`);
  // The destinations stay (quiesced) or drain (remove) while their connection entries live.
  assert.is(weight(outQ, Q, q(RS1)), 3);
  assert.ok((destOf(drainR, R, r(RS2))?.inactConn ?? 0) > 0, 'tcp-remove deleted rs2 before its connections drained');
  // 20 connections to each: all succeed, none reaches the dead server.
  const cq = await tcpClients(Q.split(':')[0]!, 80, 20);
  assert.is(cq.errors, 0, cq.firstError);
  assert.equal(cq.byId, { rs1: 20 });
  const cr = await tcpClients(R.split(':')[0]!, 81, 20);
  assert.is(cr.errors, 0, cr.firstError);
  assert.equal(cr.byId, { rs1: 20 });
  // Remove: the destination is deleted once the drain ends (--drain-timeout 5: its TIME_WAIT entries would last 2 min).
  const isGone = (s: Sample) => s.services.some((x) => x.address === R) && destOf(s, R, r(RS2)) === undefined;
  const gone = await sampler!.waitFor(isGone, { after: drainR.at, what: `${r(RS2)} deleted` });
  await confirmedByIpvsadm(gone, isGone, 'rs2 deleted from tcp-remove');
  measure('tcp-remove: rs2 draining -> deleted (drain timeout 5 s)', gone.at - drainR.at);
  assert.ok(gone.at - drainR.at >= 4000, `deleted ${gone.at - drainR.at} ms after the drain began, before the drain timeout`);
  assert.equal(weightsOf(gone, R), [`${r(RS1)} 1`]);
  assert.is(weight(gone, Q, q(RS2)), 0, 'tcp-quiesce keeps rs2 at weight 0');
});

test('TCP check: rs2 back -> its weight is restored after successThreshold passes; tcp-remove adds it again', async () => {
  rs2 = await startServerPatiently('rs2', { id: 'rs2', tcp: [80, 81] });
  const listening = Date.now();
  const inQ = await sampler!.waitFor((s) => weight(s, Q, q(RS2)) === 2, { after: listening, what: `${q(RS2)} back at weight 2` });
  const inR = await sampler!.waitFor((s) => weight(s, R, r(RS2)) === 1, { after: listening, what: `${r(RS2)} back in tcp-remove` });
  measure(`rs2 back (listening) -> weight 2 restored in tcp-quiesce (successThreshold ${SUCCESS_THRESHOLD})`, inQ.at - listening);
  measure('rs2 back (listening) -> ipvsadm shows weight 2 in tcp-quiesce', (await confirmedByIpvsadm(inQ, (s) => weight(s, Q, q(RS2)) === 2, 'rs2 back at 2')).at - listening);
  measure('rs2 back (listening) -> re-added to tcp-remove', inR.at - listening);
  console.log(`# tcp-quiesce after rs2 came back: ${breakdown(listening, inQ, `tcp ${q(RS2)}`, true, `${q(RS2)} of TCP/${Q}`)}`);
  assert.ok(inQ.at - listening <= BACK_WITHIN_MS, `${inQ.at - listening} ms > ${BACK_WITHIN_MS} ms`);
  const cq = await tcpClients(Q.split(':')[0]!, 80, 10);
  assert.is(cq.errors, 0, cq.firstError);
  assert.equal(cq.byId, { rs1: 5, rs2: 5 });
  assert.equal(ours(), ALL_UP);
});

/** The HEALTH column of the `lvs-agent show` line for real server `rs` of service `svc`. */
function healthColumn(table: string, svc: string, rs: string): string | undefined {
  const line = table.split('\n').find((l) => l.includes(` TCP ${svc} `) && l.includes(` ${rs} `));
  return line ? /\s\d+\s+\d+\s+\d+\s{2}(.*)$/.exec(line)?.[1] : undefined;
}

const SHOWN_HEALTH: Array<[string, string, string | RegExp]> = [
  [Q, q(RS1), 'up'], [Q, q(RS2), 'up'], [R, r(RS1), 'up'], [R, r(RS2), 'up'],
  [H, h(RS3), 'up'], [H, h(RS4), 'down: status 500'], [H, h(RS5), /^down: timed out after 1000 ms$/],
  [E, h(RS3), 'down: status 204'], [E, h(RS4), 'up'],
];

function assertShownHealth(table: string, expected = SHOWN_HEALTH): void {
  for (const [svc, rs, want] of expected) {
    const got = healthColumn(table, svc, rs);
    if (typeof want === 'string') assert.is(got, want, `${svc} ${rs}:\n${table}`);
    else assert.match(got ?? '', want, `${svc} ${rs}:\n${table}`);
  }
}

test('lvs-agent show prints up / down: <reason> in its HEALTH column', async () => {
  const r = await agentOk('director', ['show', '--state-file', STATE]);
  console.log(r.stdout);
  assert.match(r.stdout.split('\n')[0]!, /\bHEALTH$/);
  assertShownHealth(r.stdout);
});

test('restart (SIGTERM, start again) with its real servers healthy: no weight drops at any moment (seeding)', async () => {
  const from = Date.now();
  // Client traffic throughout, in batches of sequential connections, until the window closes.
  let windowOpen = true;
  const traffic = later((async () => {
    const all = { errors: 0, firstError: undefined as string | undefined, byId: {} as Record<string, number>, count: 0, endedAt: 0 };
    while (windowOpen) {
      const c = await tcpClients(Q.split(':')[0]!, 80, 100);
      all.errors += c.errors;
      all.firstError ??= c.firstError;
      all.count += c.replies.length + c.errors;
      for (const [id, n] of Object.entries(c.byId)) all.byId[id] = (all.byId[id] ?? 0) + n;
      all.endedAt = Date.now();
    }
    return all;
  })());
  try {
    await restartWhileSampling(from);
  } finally {
    windowOpen = false;
  }
  const c = await traffic;
  measure(`restart: ${c.count} client connections during the restart, none failed; the last ended at`, c.endedAt - from);
  assert.is(c.errors, 0, c.firstError);
  assert.equal(Object.keys(c.byId).sort(), ['rs1', 'rs2']);
  // The new agent's record: its own checks (not the previous run's).
  assertShownHealth((await agentOk('director', ['show', '--state-file', STATE])).stdout);
});

async function restartWhileSampling(from: number): Promise<void> {
  const end = await watch!.kill('SIGTERM');
  assert.is(end.code, 0, watch!.stderr());
  const stopped = Date.now();
  watch = startAgent('director', WATCH);
  // The new agent writes its health record after every sync (and whenever a check changes a state).
  const deadline = Date.now() + 30_000;
  let rec: { writtenAt: string } | undefined;
  for (;;) {
    try { rec = JSON.parse(readFileSync(HEALTH_RECORD, 'utf8')) as { writtenAt: string }; } catch { rec = undefined; }
    if (rec && Date.parse(rec.writtenAt) > stopped) break;
    if (watch.exited || Date.now() > deadline) assert.unreachable(`the restarted agent wrote no health record (last ${rec?.writtenAt}):\n${watch.stderr()}`);
    await sleep(100);
  }
  const recorded = Date.now();
  measure('restart: SIGTERM -> old agent exited', stopped - from);
  measure('restart: new agent started -> its first sync (its health record written)', recorded - stopped);
  // failureThreshold × interval + 1 s more: a seeded server that failed would be out by now.
  await sleep(OUT_WITHIN_MS);
  const to = Date.now();
  const span = sampler!.between(from, to);
  const byIpvsadm = span.filter((s) => s.source === 'ipvsadm').length;
  assert.ok(byIpvsadm >= 10, `only ${byIpvsadm} ipvsadm reads over ${to - from} ms`);
  let maxGap = 0;
  for (let i = 1; i < span.length; i++) maxGap = Math.max(maxGap, span[i]!.before - span[i - 1]!.at);
  assert.ok(maxGap < 2000, `the sampler paused ${maxGap} ms`);
  for (const s of span) assert.equal(ours(s.services), ALL_UP, `at ${s.at} (${s.at - from} ms into the restart)`);
  measure(`restart: the table read ${span.length} times (${byIpvsadm} by ipvsadm) from the SIGTERM to ${to - from} ms (the new agent's first sync at ${recorded - from} ms), all weights unchanged; largest gap between reads`, maxGap);
}

test('one-shot apply with rs2 dead: rs2 programmed at weight 0, rs1 at its weight; Remove leaves it out', async () => {
  const end = await watch!.kill('SIGTERM');
  assert.is(end.code, 0, watch!.stderr());
  await rs2!.stop();
  await agentOk('director', ['cleanup', '--state-file', STATE]);
  assert.equal(ours(), { [Q]: [], [R]: [], [H]: [], [E]: [] });
  const once = await agent('director', ['apply', '-f', DIR, '--state-file', STATE]);
  assert.is(once.code, 0, once.stderr);
  measure('one-shot apply (one round of checks, then sync)', once.ms);
  assert.match(once.stdout, /^4 service\(s\) from 4 VirtualServer\(s\); \d+ kernel operation\(s\)/);
  assert.equal(ours(), {
    [Q]: [`${q(RS1)} 3`, `${q(RS2)} 0`], [R]: [`${r(RS1)} 1`],
    [H]: [`${h(RS3)} 1`, `${h(RS4)} 0`, `${h(RS5)} 0`], [E]: [`${h(RS3)} 0`, `${h(RS4)} 1`],
  });
  const cq = await tcpClients(Q.split(':')[0]!, 80, 10);
  assert.is(cq.errors, 0, cq.firstError);
  assert.equal(cq.byId, { rs1: 10 });
  const shown = (await agentOk('director', ['show', '--state-file', STATE])).stdout;
  assertShownHealth(shown, [[Q, q(RS1), 'up'], [Q, q(RS2), 'down: connection refused'], [H, h(RS4), 'down: status 500'], [E, h(RS4), 'up']]);
  await agentOk('director', ['cleanup', '--state-file', STATE]);
});

uvuSuite.run();
