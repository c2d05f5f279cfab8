// status.announcers (operator/announce-status.ts): who answers ARP/NDP for a VirtualServer's
// addresses, from its directors' AgentReports; and a change of a report's announced list marks
// the VirtualServers that node directs (operator/reports.ts).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { buildAgentReport, type AgentReportObject } from '../../api/agent-report.ts';
import { announcersOf } from '../../operator/announce-status.ts';
import { reportChange } from '../../operator/reports.ts';

const test = suite('controller: status.announcers');
const report = (node: string, announced: string[]): AgentReportObject =>
  buildAgentReport(node, { syncedResourceVersion: '5', nodeErrors: [], failing: [], frozen: [], prepared: [], announced });
const view = (...rs: AgentReportObject[]) => ({ get: (n: string) => rs.find((r) => r.node === n) });

test('per address won: the directors reporting it announced; others\' VIPs and non-directors ignored', () => {
  const services = ['TCP/203.0.113.10:80', 'TCP/203.0.113.10:443', 'UDP/[2001:db8::10]:53'];
  const reports = view(report('d1', ['203.0.113.10', '198.51.100.1']), report('d2', ['2001:db8::10']), report('x', ['203.0.113.10']));
  assert.equal(announcersOf(services, ['d2', 'd1'], reports), [{ address: '2001:db8::10', node: 'd2' }, { address: '203.0.113.10', node: 'd1' }]);
  // Nobody announces (a silent pool, or dead directors): an empty list, not a stale one.
  assert.equal(announcersOf(services, ['d1', 'd2'], view(report('d1', []), report('d2', []))), []);
  // A partition between the directors: both listed.
  assert.equal(announcersOf(['TCP/203.0.113.10:80'], ['d1', 'd2'], view(report('d1', ['203.0.113.10']), report('d2', ['203.0.113.10'])))!.map((a) => a.node), ['d1', 'd2']);
  assert.is(announcersOf([], ['d1'], reports), undefined, 'nothing won: no field');
});

test('a report whose announced list changed marks every VirtualServer its node directs; an unchanged one does not', () => {
  assert.ok(reportChange('d1', report('d1', []), report('d1', ['203.0.113.10'])).directed);
  assert.not.ok(reportChange('d1', report('d1', ['203.0.113.10']), report('d1', ['203.0.113.10'])).directed);
});

test.run();
