// The x-kubernetes-validations of a structural schema, compiled once into a tree that mirrors the
// schema and evaluated against a (defaulted) object the way the API server does:
//   - a rule runs with self bound to the value at its location, only where that value is present;
//     list rules under items run for every item, rules under additionalProperties for every value;
//   - a rule fails when it evaluates to false or to an error; the failure is reported at the
//     value's path plus the rule's fieldPath (spec.addresses[0], spec.ports for fieldPath .ports,
//     spec.directors.nodeSelector[key] for a map value);
//   - the message is messageExpression's value when it evaluates to a string, else message, else
//     "failed rule: <rule>"; an evaluation error reads "<rule>: evaluation error: <detail>".
// Every rule and messageExpression is compiled here, when the schema is loaded: a rule outside the
// supported CEL subset throws CelCompileError naming its location.
import { compileCel, type Program } from './eval.ts';
import { CelCompileError, CelEvalError } from './errors.ts';

type Json = { [key: string]: unknown };
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

export interface CelViolation {
  /** Kubernetes field path, e.g. spec.addresses[0]. */
  path: string;
  message: string;
  rule: string;
  reason?: string;
}

interface CompiledRule {
  rule: string;
  check: Program;
  message?: string;
  messageExpression?: Program;
  fieldPath: string;
  reason?: string;
}

export interface RuleNode {
  rules: CompiledRule[];
  properties: Map<string, RuleNode>;
  items?: RuleNode;
  values?: RuleNode;
}

function compileRule(r: Json, location: string): CompiledRule {
  const rule = String(r.rule);
  try {
    return {
      rule,
      check: compileCel(rule),
      ...(typeof r.message === 'string' ? { message: r.message } : {}),
      ...(typeof r.messageExpression === 'string' ? { messageExpression: compileCel(r.messageExpression) } : {}),
      fieldPath: typeof r.fieldPath === 'string' ? r.fieldPath : '',
      ...(typeof r.reason === 'string' ? { reason: r.reason } : {}),
    };
  } catch (err) {
    if (err instanceof CelCompileError) throw new CelCompileError(`${location || '(root)'}: ${err.message}`, err.source);
    throw err;
  }
}

/** Compiles every rule of a schema; undefined when the schema (sub)tree has none. */
export function compileRuleTree(schema: Json, location = ''): RuleNode | undefined {
  const list = Array.isArray(schema['x-kubernetes-validations']) ? schema['x-kubernetes-validations'] as Json[] : [];
  const node: RuleNode = { rules: list.map((r) => compileRule(r, location)), properties: new Map() };
  let any = node.rules.length > 0;
  if (isObject(schema.properties)) {
    for (const [k, v] of Object.entries(schema.properties)) {
      const child = compileRuleTree(v as Json, location ? `${location}.${k}` : k);
      if (child) { node.properties.set(k, child); any = true; }
    }
  }
  if (isObject(schema.items)) {
    const items = compileRuleTree(schema.items, `${location}[*]`);
    if (items) { node.items = items; any = true; }
  }
  if (isObject(schema.additionalProperties)) {
    const values = compileRuleTree(schema.additionalProperties, `${location}[*]`);
    if (values) { node.values = values; any = true; }
  }
  return any ? node : undefined;
}

function messageOf(r: CompiledRule, self: unknown): string {
  if (r.messageExpression) {
    try {
      const m = r.messageExpression({ self });
      if (typeof m === 'string' && m.trim() !== '') return m;
    } catch { /* the API server falls back to message */ }
  }
  return r.message ?? `failed rule: ${r.rule}`;
}

function runRules(node: RuleNode, value: unknown, path: string, out: CelViolation[]): void {
  for (const r of node.rules) {
    let message: string | undefined;
    try {
      const ok = r.check({ self: value });
      if (ok !== true) message = typeof ok === 'boolean' ? messageOf(r, value) : `${r.rule}: evaluation error: the rule is not a bool`;
    } catch (err) {
      if (!(err instanceof CelEvalError)) throw err;
      message = `${r.rule}: evaluation error: ${err.message}`;
    }
    if (message !== undefined) {
      const at = `${path}${r.fieldPath}`.replace(/^\./, '');
      out.push({ path: at, message, rule: r.rule, ...(r.reason ? { reason: r.reason } : {}) });
    }
  }
}

/** Evaluates a compiled rule tree against a value; [] when every rule holds. */
export function evaluateRules(node: RuleNode | undefined, value: unknown, path = '', out: CelViolation[] = []): CelViolation[] {
  if (!node || value === undefined || value === null) return out;
  runRules(node, value, path, out);
  if (isObject(value)) {
    for (const [k, child] of node.properties) {
      if (Object.hasOwn(value, k)) evaluateRules(child, value[k], path ? `${path}.${k}` : k, out);
    }
    if (node.values) for (const [k, v] of Object.entries(value)) evaluateRules(node.values, v, `${path}[${k}]`, out);
  }
  if (Array.isArray(value) && node.items) value.forEach((v, i) => evaluateRules(node.items, v, `${path}[${i}]`, out));
  return out;
}
