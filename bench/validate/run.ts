// Validation CPU of lvs-agent's standalone loader: 10,000 generated VirtualServer documents
// (IPv4 and IPv6 VIPs, 1-3 ports, 2-6 static real servers, every forwarding method) checked as
// the API server would — defaults, the CRD's OpenAPI schema (ajv) and its 30 CEL rules — with the
// CRD compiled once per process. Prints the one-time compile cost, the CPU for the 10,000
// documents with and without YAML parsing (loadManifests on one file), and, for comparison, the
// per-document cost of compiling the CRD for every document. Run:
//   node bench/validate/run.ts [N]
// Not a test: nothing here asserts a time.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { defaultCompiledCrd, loadCrd } from '../../api/schema.ts';
import { compileCrd } from '../../api/schema-compile.ts';
import { loadManifests } from '../../dataplane/agent/manifests.ts';

const N = Number(process.argv[2] ?? 10_000);
const FORWARDING = ['NAT', 'DR', 'TUN'] as const;

function doc(i: number): Record<string, unknown> {
  const v6 = i % 4 === 3;
  const forwarding = FORWARDING[i % 3];
  const vip = v6 ? `2001:db8::${(i + 1).toString(16)}` : `203.0.${113 + Math.floor(i / 250) % 100}.${(i % 250) + 1}`;
  const rs = Array.from({ length: 2 + (i % 5) }, (_, j) => ({
    address: v6 ? `2001:db8:1::${(j + 1).toString(16)}` : `192.0.2.${j + 1}`, weight: 1 + (j % 3),
  }));
  return {
    apiVersion: 'lvs.dev/v1alpha1', kind: 'VirtualServer', metadata: { name: `vs-${i}`, namespace: 'bench' },
    spec: {
      addresses: [vip],
      ports: Array.from({ length: 1 + (i % 3) }, (_, j) => ({ name: `p${j}`, port: 80 + j, protocol: j === 2 ? 'UDP' : 'TCP' })),
      forwarding,
      scheduler: { name: i % 2 ? 'wrr' : 'sh', ...(i % 2 ? {} : { flags: ['sh-port'] }) },
      persistence: { timeoutSeconds: 300, ...(v6 ? { ipv6PrefixLength: 64 } : { netmask: '255.255.255.0' }) },
      backends: { static: rs },
      ...(forwarding === 'NAT' ? {} : { realServers: { prepare: true } }),
      ...(forwarding === 'TUN' ? { tunnel: { type: 'ipip' } } : {}),
    },
  };
}

const cpuMs = (f: () => void): number => {
  const t = process.cpuUsage();
  f();
  const d = process.cpuUsage(t);
  return (d.user + d.system) / 1000;
};

const docs = Array.from({ length: N }, (_, i) => doc(i));
let compiled = await defaultCompiledCrd();
const compileMs = cpuMs(() => { compiled = compileCrd(loadCrd()); });
let invalid = 0;
const validateMs = cpuMs(() => { for (const d of docs) if (compiled.check(d).errors.length > 0) invalid++; });

const dir = mkdtempSync(join(tmpdir(), 'lvs-bench-validate-'));
let loadMs = 0;
try {
  const file = join(dir, 'set.yaml');
  writeFileSync(file, docs.map((d) => stringify(d)).join('---\n'));
  const crd = compiled; // the loader's compile happens once, outside the measurement
  loadMs = cpuMs(() => loadManifests([file], crd));
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const SAMPLE = 50;
const perDocRecompileMs = cpuMs(() => { for (const d of docs.slice(0, SAMPLE)) compileCrd(loadCrd()).check(d); }) / SAMPLE;

console.log(`CRD compile (read, ajv, 30 CEL rules), once: ${compileMs.toFixed(1)} ms CPU`);
console.log(`validate ${N} documents (defaults, schema, CEL): ${validateMs.toFixed(0)} ms CPU, ${(validateMs * 1000 / N).toFixed(1)} us/document, ${invalid} invalid`);
console.log(`loadManifests of one ${N}-document file (YAML parse + the above): ${loadMs.toFixed(0)} ms CPU`);
console.log(`for comparison, compiling the CRD for every document: ${perDocRecompileMs.toFixed(1)} ms CPU/document (sample of ${SAMPLE})`);
