// YAML documents as plain values, for the agent's standalone manifests and the CRD it validates
// them against. Two parsers, one meaning: js-yaml with the YAML 1.2 core schema resolves scalars
// as `yaml` does by default (the unit test compares them over every manifest in the repository
// and the tricky scalars), and parses 5-15x faster: a third of a 1,000-VirtualServer
// `lvs-agent apply` went to `yaml` under emulation (bench/RESULTS.md). `yaml` stays for what it
// does better, and a file takes its path when
//   - js-yaml rejects it: `yaml` reports errors per document, which the messages quote;
//   - it has anchors or aliases (`&`, `*` anywhere): `yaml` bounds alias expansion (its
//     maxAliasCount), js-yaml does not;
//   - it has a directive line (`%YAML 1.1` makes `yaml` switch schemas; js-yaml would not).
import { CORE_SCHEMA, loadAll } from 'js-yaml';
import { parseAllDocuments } from 'yaml';

export type YamlDocument = { value: unknown } | { errors: string };

/** Every document of `text` in order (empty ones as null), each its value or its errors. */
export function parseDocuments(text: string): YamlDocument[] {
  if (!text.includes('&') && !text.includes('*') && !/^%/m.test(text)) {
    try {
      return loadAll(text, null, { schema: CORE_SCHEMA }).map((value) => ({ value }));
    } catch { /* `yaml` below says what is wrong, per document */ }
  }
  return slowDocuments(text);
}

/**
 * The one document of a file this project ships (a CRD): js-yaml alone, whatever it contains (the
 * CRDs' CEL rules are full of `&&`, which the check above cannot tell from anchors). The unit test
 * checks that `yaml` reads every shipped CRD the same.
 */
export function parseShipped(text: string, what: string): unknown {
  const docs = loadAll(text, null, { schema: CORE_SCHEMA });
  if (docs.length !== 1) throw new Error(`${what}: expected one YAML document, found ${docs.length}`);
  return docs[0];
}

/** `yaml`'s reading of `text`: the reference parseDocuments must agree with. */
export function slowDocuments(text: string): YamlDocument[] {
  return parseAllDocuments(text).map((d) => {
    if (d.errors.length > 0) return { errors: d.errors.map((e) => e.message).join('; ') };
    // toJS throws on an alias bomb ("Excessive alias count ..."): an error of that document.
    try { return { value: d.toJS() as unknown }; } catch (err) { return { errors: err instanceof Error ? err.message : String(err) }; }
  });
}
