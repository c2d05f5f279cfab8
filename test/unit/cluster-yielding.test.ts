// When a director's node makes it yielding in the election (dataplane/cluster/yielding.ts): the
// signals of a node being taken out of service, and nothing else.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { AUTOSCALER_DELETE_TAINT, EXCLUDE_LABEL, yieldingReason } from '../../dataplane/cluster/yielding.ts';
import type { NodeObject } from '../../kube/types.ts';

const test = suite('cluster yielding');
const node = (over: Partial<NodeObject> = {}): NodeObject => ({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1', ...(over.metadata ?? {}) }, ...(over.spec ? { spec: over.spec } : {}) });

test('a node in service, or none read yet, is not yielding', () => {
  assert.is(yieldingReason(undefined), undefined);
  assert.is(yieldingReason(node()), undefined);
  assert.is(yieldingReason(node({ spec: { unschedulable: false, taints: [{ key: 'node-role.kubernetes.io/control-plane', effect: 'NoSchedule' }] } })), undefined);
  assert.is(yieldingReason(node({ metadata: { name: 'n1', labels: { 'lvs.dev/director': 'true' } } })), undefined);
});

test('cordoned, excluded from load balancers (any label value) or about to be deleted by the autoscaler: yielding, with the reason', () => {
  assert.match(yieldingReason(node({ spec: { unschedulable: true } }))!, /cordoned/);
  assert.match(yieldingReason(node({ metadata: { name: 'n1', labels: { [EXCLUDE_LABEL]: '' } } }))!, /exclude-from-external-load-balancers/);
  assert.match(yieldingReason(node({ metadata: { name: 'n1', labels: { [EXCLUDE_LABEL]: 'false' } } }))!, /exclude-from-external-load-balancers/);
  assert.match(yieldingReason(node({ spec: { taints: [{ key: AUTOSCALER_DELETE_TAINT, value: '1764900000', effect: 'NoSchedule' }] } }))!, /ToBeDeletedByClusterAutoscaler/);
});

test.run();
