// Standalone mode's input: VirtualServer manifests from files, checked at every layer we have
// before anything touches the kernel — the CRD's OpenAPI schema (the same file the API server
// uses), then the resolver's own checks (the CEL rules' twins), then standalone-only rules. One
// bad document rejects the whole set, so a typo never removes rules that are programmed now.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { VirtualServer } from '../../api/generated/index.ts';
import type { Plan } from '../../api/plan.ts';
import { validateManifest } from '../../api/schema.ts';
import { resolve } from '../../operator/resolve/index.ts';

export interface ManifestProblem {
  file: string;
  /** namespace/name, when the document got that far. */
  object?: string;
  field: string;
  message: string;
}

export class InvalidManifestsError extends Error {
  readonly problems: ManifestProblem[];
  constructor(problems: ManifestProblem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'InvalidManifestsError';
    this.problems = problems;
  }
}

export function formatProblem(p: ManifestProblem): string {
  return `${p.file}${p.object ? ` (VirtualServer ${p.object})` : ''}: ${p.field}: ${p.message}`;
}

/** Files named by the path: the file itself, or the .yaml/.yml/.json files of a directory (sorted). */
export function manifestFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path).filter((f) => /\.(ya?ml|json)$/.test(f)).sort().map((f) => join(path, f));
}

export interface LoadedManifests {
  virtualServers: Array<{ file: string; object: VirtualServer }>;
  /** Documents of other kinds, skipped (e.g. the Service of a cluster example). */
  skipped: string[];
}

/** Parses and schema-validates every VirtualServer document; throws InvalidManifestsError. */
export function loadManifests(paths: readonly string[]): LoadedManifests {
  const problems: ManifestProblem[] = [];
  const out: LoadedManifests = { virtualServers: [], skipped: [] };
  for (const file of paths.flatMap(manifestFiles)) {
    for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
      if (doc.errors.length > 0) {
        problems.push({ file, field: '(yaml)', message: doc.errors.map((e) => e.message).join('; ') });
        continue;
      }
      const obj = doc.toJS() as Record<string, unknown> | null;
      if (obj === null || obj === undefined) continue;
      if (obj.kind !== 'VirtualServer') {
        out.skipped.push(`${file}: ${String(obj.kind)} ${String((obj.metadata as { name?: string } | undefined)?.name ?? '')}`.trim());
        continue;
      }
      const meta = (obj.metadata ?? {}) as { name?: string; namespace?: string };
      const object = `${meta.namespace ?? 'default'}/${meta.name ?? '?'}`;
      const errors = validateManifest(obj);
      for (const e of errors) problems.push({ file, object, field: e.path || '(root)', message: e.message });
      if (errors.length === 0) out.virtualServers.push({ file, object: withDefaults(obj as unknown as VirtualServer, out.virtualServers.length) });
    }
  }
  if (problems.length > 0) throw new InvalidManifestsError(problems);
  return out;
}

// Standalone objects have no API server to stamp them: default the namespace, and give them a
// creation order (file order) so conflicts between them resolve deterministically.
function withDefaults(vs: VirtualServer, index: number): VirtualServer {
  const base = Date.UTC(2000, 0, 1) + index * 1000;
  return {
    ...vs,
    metadata: {
      namespace: 'default',
      generation: 1,
      creationTimestamp: new Date(base).toISOString() as unknown as Date,
      ...vs.metadata,
    },
  };
}

/**
 * The plan for this host as the only director. directors.nodeSelector has no meaning without a
 * cluster and is ignored; Service backends cannot be resolved and are an error. Any reason the
 * resolver gives other than "no ready real servers" is an error too: standalone input is the
 * operator's own files, so a conflict or an unusable backend is a mistake to fix, not a state.
 */
export function standalonePlan(loaded: LoadedManifests, node = hostname()): Plan {
  const problems: ManifestProblem[] = [];
  const fileOf = new Map<string, string>();
  const virtualServers = loaded.virtualServers.map(({ file, object: vs }) => {
    const object = `${vs.metadata?.namespace}/${vs.metadata?.name}`;
    fileOf.set(object, file);
    const { directors: _ignored, ...spec } = vs.spec;
    if (spec.backends?.service) {
      problems.push({ file, object, field: 'spec.backends.service', message: 'standalone mode has no cluster to resolve a Service; use spec.backends.static' });
    }
    return { ...vs, spec };
  });
  if (problems.length > 0) throw new InvalidManifestsError(problems);
  const plan = resolve({ virtualServers, services: [], endpointSlices: [], nodes: [{ metadata: { name: node } }] });
  for (const [object, r] of plan.virtualServers) {
    for (const reason of r.reasons) {
      if (reason.type === 'NoReadyEndpoints') continue;
      problems.push({ file: fileOf.get(object) ?? '?', object, field: reason.field ?? 'spec', message: `${reason.type}: ${reason.message}` });
    }
  }
  if (problems.length > 0) throw new InvalidManifestsError(problems);
  return plan;
}
