// When a director's node makes it standby in the election (dataplane/cluster/standby.ts): the
// signals of a node being taken out of service, and nothing else.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { AUTOSCALER_DELETE_TAINT, EXCLUDE_LABEL, standbyReason } from '../../dataplane/cluster/standby.ts';
import type { NodeObject } from '../../kube/types.ts';

const test = suite('cluster standby');
const node = (over: Partial<NodeObject> = {}): NodeObject => ({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1', ...(over.metadata ?? {}) }, ...(over.spec ? { spec: over.spec } : {}) });

test('a node in service, or none read yet, is not standby', () => {
  assert.is(standbyReason(undefined), undefined);
  assert.is(standbyReason(node()), undefined);
  assert.is(standbyReason(node({ spec: { unschedulable: false, taints: [{ key: 'node-role.kubernetes.io/control-plane', effect: 'NoSchedule' }] } })), undefined);
  assert.is(standbyReason(node({ metadata: { name: 'n1', labels: { 'lvs.dev/director': 'true' } } })), undefined);
});

test('cordoned, excluded from load balancers (any label value) or about to be deleted by the autoscaler: standby, with the reason', () => {
  assert.match(standbyReason(node({ spec: { unschedulable: true } }))!, /cordoned/);
  assert.match(standbyReason(node({ metadata: { name: 'n1', labels: { [EXCLUDE_LABEL]: '' } } }))!, /exclude-from-external-load-balancers/);
  assert.match(standbyReason(node({ metadata: { name: 'n1', labels: { [EXCLUDE_LABEL]: 'false' } } }))!, /exclude-from-external-load-balancers/);
  assert.match(standbyReason(node({ spec: { taints: [{ key: AUTOSCALER_DELETE_TAINT, value: '1764900000', effect: 'NoSchedule' }] } }))!, /ToBeDeletedByClusterAutoscaler/);
});

test.run();
