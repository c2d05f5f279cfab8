// dataplane/sync/apply.ts's log: up to PER_OP_INFO_MAX operations in one call, a line per accepted
// operation at info; above it, those lines at debug and one info line counting them by kind.
// Failures are logged one by one (warn) either way.
import { Writable } from 'node:stream';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import pino from 'pino';
import { FakeIpvsKernel } from '../../dataplane/ipvs/testing/fake.ts';
import type { IpvsDestination, IpvsService } from '../../dataplane/ipvs/types.ts';
import { applyOps, PER_OP_INFO_MAX } from '../../dataplane/sync/apply.ts';
import type { SyncOp } from '../../dataplane/sync/diff.ts';
import { nodeLogger } from '../../dataplane/sync/syncer-types.ts';

const test = suite('apply log');

/** `services` services with `dests` destinations each, as the diff would ask for them; service 0's scheduler is unknown to the kernel when `failFirst`. */
function ops(services: number, dests: number, failFirst = false): SyncOp[] {
  const out: SyncOp[] = [];
  for (let i = 0; i < services; i++) {
    const service: IpvsService = { family: 4, protocol: 'TCP', address: `203.0.${113 + (i >> 8)}.${i & 0xff}`, port: 80, scheduler: failFirst && i === 0 ? 'nosuch' : 'rr', flags: 0, timeout: 0, netmask: '255.255.255.255' };
    const key = `TCP/${service.address}:80`;
    out.push({ kind: 'addService', key, service } as SyncOp);
    for (let j = 0; j < dests; j++) {
      const destination: IpvsDestination = { family: 4, address: `10.1.${i}.${j + 1}`, port: 8080, forward: 'masq', weight: 1, upperThreshold: 0, lowerThreshold: 0 };
      out.push({ kind: 'addDestination', key, service, dest: `${destination.address}:8080`, destination } as SyncOp);
    }
  }
  return out;
}

async function logged(list: SyncOp[], level: string): Promise<Array<Record<string, unknown>>> {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({ write(chunk: Buffer, _e, cb) { for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>); cb(); } });
  await applyOps(list, { kernel: new FakeIpvsKernel(), log: pino({ level }, sink) });
  return lines;
}

const kernelOps = (lines: Array<Record<string, unknown>>, level: number) => lines.filter((l) => l.level === level && (l.op === 'addService' || l.op === 'addDestination'));

test(`up to ${PER_OP_INFO_MAX} operations: one info line each, no summary`, async () => {
  const list = ops(100, 9); // 1,000 operations
  assert.is(list.length, PER_OP_INFO_MAX);
  const lines = await logged(list, 'info');
  assert.is(kernelOps(lines, 30).length, PER_OP_INFO_MAX);
  assert.not.ok(lines.some((l) => l.op === 'applySummary'));
});

test('more: the accepted ones at debug, one info summary by kind; failures still each at warn', async () => {
  const list = ops(101, 9, true); // 1,010 operations; service 0 fails, its 9 destinations are skipped
  const atInfo = await logged(list, 'info');
  assert.is(kernelOps(atInfo, 30).length, 0);
  const summary = atInfo.filter((l) => l.op === 'applySummary');
  assert.is(summary.length, 1);
  assert.equal({ ...summary[0], level: undefined, time: undefined, pid: undefined, hostname: undefined, msg: undefined },
    { level: undefined, time: undefined, pid: undefined, hostname: undefined, msg: undefined, op: 'applySummary', ops: 1010, applied: 1000, failed: 1, skipped: 9, byKind: { addService: 101, addDestination: 909 } });
  assert.is(atInfo.filter((l) => l.level === 40).length, 1, 'the failed addService, at warn');
  const atDebug = await logged(list, 'debug');
  assert.is(kernelOps(atDebug, 20).length, 1000, 'every accepted operation at debug');
});

test('a line through the cluster agent, its loop and its syncer names its node once', () => {
  let text = '';
  const sink = new Writable({ write(chunk: Buffer, _e, cb) { text += chunk.toString(); cb(); } });
  const base = pino({ level: 'info' }, sink);
  const inner = nodeLogger(nodeLogger(nodeLogger(base, 'n1'), 'n1'), 'n1');
  inner.info({ op: 'sync' }, 'x');
  assert.is(text.match(/"node":/g)?.length, 1, text);
  nodeLogger(inner, 'n2').info('y');
  assert.match(text, /"node":"n1","node":"n2"/, 'another node is still bound');
});

test.run();
