// Writes this node's AgentReport when its content changed: create it when absent, else replace
// it conditionally (metadata.resourceVersion), and on a conflict (409: someone wrote it meanwhile,
// or it was created by an earlier run) read it again and retry. A report equal in content to the
// one stored is not written, so a restart over an unchanged state writes nothing. The informer's
// copy lags behind our own writes: one older than our last write is not taken for a change by
// someone else (a deletion is, once the informer reports it: forget()).
import type { Logger } from 'pino';
import { compareResourceVersions, parseAgentReport, type AgentReportObject } from '../../api/agent-report.ts';
import type { KubeApi } from '../../kube/api.ts';
import { isConflict, isNotFound } from '../../kube/errors.ts';
import { AGENT_REPORTS, type KubeObject } from '../../kube/types.ts';
import { reportContent } from './report.ts';

const ATTEMPTS = 3;

export interface ReportWriter {
  /** Resolves true when the stored report has this content (written now or already), false on failure. */
  write(report: AgentReportObject): Promise<boolean>;
  /** The stored report was deleted: the next write writes whatever it is given. */
  forget(): void;
}

function storedContent(obj: KubeObject | undefined): string | undefined {
  if (!obj) return undefined;
  const r = parseAgentReport(obj);
  return r.ok ? reportContent(r.value) : undefined;
}

/** `cached` gives the stored report as the informer last saw it (saves a read when it is current). */
export function createReportWriter(o: { api: KubeApi; node: string; log: Logger; cached: () => KubeObject | undefined }): ReportWriter {
  /** What our last write stored, and at which resourceVersion. */
  let written: { content: string; rv: string } | undefined;

  async function read(): Promise<KubeObject | undefined> {
    try {
      return await o.api.get<KubeObject>(AGENT_REPORTS, undefined, o.node);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async function put(report: AgentReportObject, content: string, cached: KubeObject | undefined): Promise<string> {
    let cur = cached;
    for (let attempt = 1; ; attempt++) {
      if (cur && storedContent(cur) === content) return cur.metadata.resourceVersion ?? '';
      try {
        const done = !cur
          ? await o.api.create(AGENT_REPORTS, undefined, report as unknown as KubeObject)
          : await o.api.replace(AGENT_REPORTS, undefined, o.node, { ...report, metadata: { ...report.metadata, resourceVersion: cur.metadata.resourceVersion } } as unknown as KubeObject);
        return done.metadata.resourceVersion ?? '';
      } catch (err) {
        // 409: stale resourceVersion, or created meanwhile. Anything else is for the caller.
        if (!isConflict(err) || attempt >= ATTEMPTS) throw err;
        cur = await read();
      }
    }
  }

  return {
    async write(report) {
      const content = reportContent(report);
      const cur = o.cached();
      const lagging = written !== undefined && (!cur || compareResourceVersions(cur.metadata.resourceVersion ?? '', written.rv) === -1);
      if (lagging && written!.content === content) return true;
      try {
        // A lagging copy would only cost a 409; a fresh read saves it.
        const rv = await put(report, content, lagging ? await read() : cur);
        written = { content, rv };
        return true;
      } catch (err) {
        written = undefined;
        o.log.warn({ op: 'report', err: String(err) }, 'writing the node report failed; will retry');
        return false;
      }
    },
    forget() {
      written = undefined;
    },
  };
}
