// Standalone mode's input: VirtualServer manifests from files, checked at every layer we have
// before anything touches the kernel — what the API server would reject on create (the CRD's
// defaults, OpenAPI schema and CEL rules, read from the same file it uses, and metadata.name),
// then the resolver's own checks, then standalone-only rules. One bad document rejects the whole
// set, so a typo never removes rules that are programmed now. The set itself is checked too:
//   - a document of the lvs.dev group whose kind is not VirtualServer (VirtualSever) is an error;
//   - documents of other groups (a Service in a cluster example) are skipped, and reported;
//   - no VirtualServer at all is refused unless allowEmpty: applying an empty set removes every
//     service this host programmed, which a stray `---` file must not do by accident;
//   - two documents with the same namespace/name are an error naming both.
// Documents are numbered from 1 within their file, in the messages.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { VirtualServer } from '../../api/generated/index.ts';
import type { Plan } from '../../api/plan.ts';
import type { CompiledCrd } from '../../api/schema.ts';
import { resolve } from '../../api/resolve/index.ts';
import { parseDocuments } from '../../api/yaml.ts';

export interface ManifestProblem {
  file: string;
  /** 1-based document number within the file, when the problem is about the document itself. */
  document?: number;
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
  const where = `${p.file}${p.document !== undefined ? ` document ${p.document}` : ''}`;
  return `${where}${p.object ? ` (VirtualServer ${p.object})` : ''}: ${p.field}: ${p.message}`;
}

/** Files named by the path: the file itself, or the .yaml/.yml/.json files of a directory (sorted). */
export function manifestFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path).filter((f) => /\.(ya?ml|json)$/.test(f)).sort().map((f) => join(path, f));
}

export interface LoadedManifests {
  virtualServers: Array<{ file: string; object: VirtualServer }>;
  /** Documents of other API groups, skipped (e.g. the Service of a cluster example), one line each. */
  skipped: string[];
}

export interface LoadOptions {
  /** Accept a set with no VirtualServer (it removes everything this host programmed). */
  allowEmpty?: boolean;
}

// The API server's name rules: metadata.name a DNS-1123 subdomain (custom resources), namespace a
// DNS-1123 label; messages as k8s.io/apimachinery/pkg/util/validation words them.
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function metadataProblems(meta: unknown): Array<{ field: string; message: string }> {
  const m = (typeof meta === 'object' && meta !== null ? meta : {}) as { name?: unknown; namespace?: unknown };
  const out: Array<{ field: string; message: string }> = [];
  if (m.name === undefined || m.name === '') out.push({ field: 'metadata.name', message: 'Required value: name is required' });
  else if (typeof m.name !== 'string' || m.name.length > 253 || !DNS1123_SUBDOMAIN.test(m.name)) {
    out.push({ field: 'metadata.name', message: `Invalid value: ${JSON.stringify(m.name)}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (at most 253 characters)` });
  }
  if (m.namespace !== undefined && (typeof m.namespace !== 'string' || m.namespace.length > 63 || !DNS1123_LABEL.test(m.namespace))) {
    out.push({ field: 'metadata.namespace', message: `Invalid value: ${JSON.stringify(m.namespace)}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (at most 63 characters)` });
  }
  return out;
}

const groupOf = (apiVersion: unknown) => (typeof apiVersion === 'string' && apiVersion.includes('/') ? apiVersion.split('/')[0] : '');

type Doc = { file: string; document: number; obj: unknown };

/** Every document of every file, parsed; YAML errors become problems, empty documents vanish. */
function readDocuments(paths: readonly string[], problems: ManifestProblem[]): Doc[] {
  const docs: Doc[] = [];
  for (const file of paths.flatMap(manifestFiles)) {
    parseDocuments(readFileSync(file, 'utf8')).forEach((doc, i) => {
      if ('errors' in doc) {
        problems.push({ file, document: i + 1, field: '(yaml)', message: doc.errors });
        return;
      }
      if (doc.value !== null && doc.value !== undefined) docs.push({ file, document: i + 1, obj: doc.value });
    });
  }
  return docs;
}

/**
 * Parses and validates every VirtualServer document as the API server would against the compiled
 * CRD (api/schema.ts's defaultCompiledCrd()), and checks the set (see the header); throws
 * InvalidManifestsError. Nothing here touches the kernel.
 */
export function loadManifests(paths: readonly string[], crd: CompiledCrd, opts: LoadOptions = {}): LoadedManifests {
  const problems: ManifestProblem[] = [];
  const out: LoadedManifests = { virtualServers: [], skipped: [] };
  const seen = new Map<string, Doc>();
  for (const d of readDocuments(paths, problems)) {
    const { file, document } = d;
    if (typeof d.obj !== 'object' || Array.isArray(d.obj)) {
      problems.push({ file, document, field: '(root)', message: 'a manifest must be an object with apiVersion and kind' });
      continue;
    }
    const obj = d.obj as Record<string, unknown>;
    const ours = groupOf(obj.apiVersion) === crd.crd.group;
    if (obj.kind !== crd.crd.kind) {
      if (ours) problems.push({ file, document, field: 'kind', message: `${JSON.stringify(obj.kind)} is not a kind of ${crd.crd.group}; expected ${crd.crd.kind}` });
      else out.skipped.push(`${file} document ${document}: ${String(obj.apiVersion)} ${String(obj.kind)} ${String((obj.metadata as { name?: string } | undefined)?.name ?? '')}`.trim());
      continue;
    }
    const meta = metadataProblems(obj.metadata);
    if (meta.length > 0) { for (const m of meta) problems.push({ file, document, ...m }); continue; }
    const md = obj.metadata as { name: string; namespace?: string };
    const object = `${md.namespace ?? 'default'}/${md.name}`;
    const first = seen.get(object);
    if (first) {
      problems.push({ file, document, object, field: 'metadata.name', message: `Duplicate value: ${object} is also defined by ${first.file} document ${first.document}` });
      continue;
    }
    seen.set(object, d);
    const { object: defaulted, errors } = crd.check(obj);
    for (const e of errors) problems.push({ file, object, field: e.path || '(root)', message: e.message });
    if (errors.length === 0) out.virtualServers.push({ file, object: withDefaults(defaulted as VirtualServer, out.virtualServers.length) });
  }
  if (problems.length === 0 && out.virtualServers.length === 0 && !opts.allowEmpty) {
    const skipped = out.skipped.length > 0 ? ` (${out.skipped.length} document(s) of other API groups skipped)` : '';
    problems.push({ file: paths.join(', '), field: '(set)', message: `no VirtualServer in the input${skipped}; applying an empty set removes everything lvs-agent programmed on this host: pass --allow-empty to mean it` });
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
  const plan = resolve({ virtualServers, services: [], endpointSlices: [], nodes: [{ metadata: { name: node } }], admission: { unrestricted: true } });
  for (const [object, r] of plan.virtualServers) {
    for (const reason of r.reasons) {
      if (reason.type === 'NoReadyEndpoints') continue;
      problems.push({ file: fileOf.get(object) ?? '?', object, field: reason.field ?? 'spec', message: `${reason.type}: ${reason.message}` });
    }
  }
  if (problems.length > 0) throw new InvalidManifestsError(problems);
  return plan;
}
