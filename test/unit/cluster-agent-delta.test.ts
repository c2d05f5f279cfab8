// The cluster agent hands its syncer where the plan changed (planDelta): a change of one
// VirtualServer among many is patched into the desired state after comparing that one plan
// entry, not every entry (the CPU per change of issue 14; the replay bench measures it, this
// fails if the wiring goes). The first change after start included: the node's first report,
// with nothing prepared, used to replace the real-server gates and remap the whole plan once.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { SyncResult } from '../../dataplane/sync/sync.ts';
import { harness, ownerPlan, publish, service } from '../lib/cluster-fixtures.ts';

const test = suite('cluster agent: a plan change reaches the syncer as a delta');
const N = 40;
const vip = (i: number) => `198.18.0.${i + 1}`;
const planOf = (i: number, address: string, generation: number) =>
  ownerPlan(`vs-${i}`, [service({ vip: vip(i), realServers: [{ address, port: 8080, weight: 1, state: 'Ready' }] })], { generation });

test(`one VirtualServer of ${N} changed: the desired state is patched after comparing one plan entry`, async () => {
  const h = harness('n1');
  const results: SyncResult[] = [];
  const metrics = { programmed: () => {}, synced: (r: SyncResult) => { results.push(r); } };
  for (let i = 0; i < N; i++) publish(h.api, planOf(i, '10.244.1.5', 1));
  await h.start({ metrics });
  try {
    assert.is(h.view().length, N);
    for (const i of [17, 3]) {
      const before = results.length;
      publish(h.api, planOf(i, '10.244.1.6', 2));
      await h.clock.advance(1_100);
      assert.ok(h.view().includes(`TCP/${vip(i)}:80 -> 10.244.1.6:8080 w=1`), `VirtualServer ${i} programmed`);
      const changed = results.slice(before).filter((r) => r.patched?.changed);
      assert.equal(changed.map((r) => r.patched), [{ compared: 1, changed: 1 }], `the sync of VirtualServer ${i}'s change`);
    }
  } finally { await h.close(); }
});

test.run();
