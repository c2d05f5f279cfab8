// A parser for the subset of CEL (github.com/google/cel-spec, langdef.md) that CRD validation rules
// use: literals (int, string, bool, null, lists), identifiers, field selection, function and
// method calls, indexing, ! and unary -, * / %, + -, relations (== != < <= > >= in), && and ||,
// and the ternary ?:. Anything else — doubles, uints, bytes, raw or triple-quoted strings, map
// literals, message construction — is a CelCompileError here, at load time, so a rule this
// evaluator cannot read is never silently skipped.

import { CelCompileError } from './errors.ts';

export type Ast =
  | { kind: 'lit'; value: unknown }
  | { kind: 'ident'; name: string }
  | { kind: 'select'; operand: Ast; field: string }
  | { kind: 'call'; fn: string; target?: Ast; args: Ast[] }
  | { kind: 'index'; operand: Ast; index: Ast }
  | { kind: 'list'; items: Ast[] }
  | { kind: 'unary'; op: '!' | '-'; operand: Ast }
  | { kind: 'binary'; op: string; left: Ast; right: Ast }
  | { kind: 'cond'; test: Ast; then: Ast; else: Ast };

type Token = { t: 'num' | 'str' | 'ident' | 'op' | 'eof'; v: string; value?: unknown; at: number };

const OPS = ['==', '!=', '<=', '>=', '&&', '||', '<', '>', '!', '-', '+', '*', '/', '%', '?', ':', '.', ',', '(', ')', '[', ']', '{', '}'];
const ESCAPES: Record<string, string> = { '\\': '\\', "'": "'", '"': '"', '`': '`', '?': '?', n: '\n', t: '\t', r: '\r', a: '\x07', b: '\b', f: '\f', v: '\v' };

function readString(src: string, start: number, fail: (m: string) => never): { value: string; end: number } {
  const q = src[start] as string;
  if (src.startsWith(q.repeat(3), start)) fail('triple-quoted strings are not supported');
  let out = '';
  for (let i = start + 1; i < src.length; i++) {
    const c = src[i] as string;
    if (c === q) return { value: out, end: i + 1 };
    if (c === '\n') break;
    if (c !== '\\') { out += c; continue; }
    const e = src[++i] ?? '';
    if (e in ESCAPES) { out += ESCAPES[e]; continue; }
    const hex = e === 'x' ? 2 : e === 'u' ? 4 : e === 'U' ? 8 : 0;
    if (hex === 0 || !/^[0-9a-fA-F]+$/.test(src.slice(i + 1, i + 1 + hex)) || src.slice(i + 1, i + 1 + hex).length !== hex) {
      fail(`unsupported escape \\${e}`);
    }
    out += String.fromCodePoint(parseInt(src.slice(i + 1, i + 1 + hex), 16));
    i += hex;
  }
  return fail('unterminated string');
}

export function tokenize(src: string): Token[] {
  const fail = (m: string): never => { throw new CelCompileError(m, src); };
  const out: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i] as string;
    if (/\s/.test(c)) { i++; continue; }
    const ident = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i))?.[0];
    if (ident !== undefined) {
      if (/^[rRbB]$/.test(ident) && (src[i + 1] === "'" || src[i + 1] === '"')) fail(`${ident}-prefixed strings are not supported`);
      out.push({ t: 'ident', v: ident, at: i });
      i += ident.length;
      continue;
    }
    const num = /^(0x[0-9a-fA-F]+|\d+)([.eEuU]?)/.exec(src.slice(i));
    if (num) {
      if (num[2]) fail('only int literals are supported (no double or uint)');
      out.push({ t: 'num', v: num[1] as string, value: Number(num[1]), at: i });
      i += (num[1] as string).length;
      continue;
    }
    if (c === "'" || c === '"') {
      const s = readString(src, i, fail);
      out.push({ t: 'str', v: src.slice(i, s.end), value: s.value, at: i });
      i = s.end;
      continue;
    }
    const op = OPS.find((o) => src.startsWith(o, i));
    if (!op) fail(`unexpected character ${JSON.stringify(c)} at ${i}`);
    out.push({ t: 'op', v: op as string, at: i });
    i += (op as string).length;
  }
  out.push({ t: 'eof', v: '', at: src.length });
  return out;
}

const RELATIONS = new Set(['==', '!=', '<', '<=', '>', '>=', 'in']);

/** Parses one CEL expression; throws CelCompileError on anything outside the subset. */
export function parseCel(src: string): Ast {
  const toks = tokenize(src);
  let p = 0;
  const peek = () => toks[p] as Token;
  const fail = (m: string): never => { throw new CelCompileError(m, src); };
  const isOp = (v: string) => peek().t === 'op' && peek().v === v;
  const take = (v: string) => { if (!isOp(v)) fail(`expected '${v}' at ${peek().at}`); p++; };

  const expr = (): Ast => {
    const test = or();
    if (!isOp('?')) return test;
    p++;
    const then = or();
    take(':');
    return { kind: 'cond', test, then, else: expr() };
  };
  // Left-associative binary levels, as in the CEL grammar.
  const binaryLevel = (next: () => Ast, ops: (t: Token) => boolean) => (): Ast => {
    let left = next();
    while (ops(peek())) {
      const op = (toks[p++] as Token).v;
      left = { kind: 'binary', op, left, right: next() };
    }
    return left;
  };
  const args = (close: string): Ast[] => {
    const list: Ast[] = [];
    while (!isOp(close)) {
      list.push(expr());
      if (!isOp(close)) take(',');
    }
    p++;
    return list;
  };
  const primary = (): Ast => {
    const tok = toks[p++] as Token;
    if (tok.t === 'num' || tok.t === 'str') return { kind: 'lit', value: tok.value };
    if (tok.t === 'ident') {
      if (tok.v === 'true' || tok.v === 'false') return { kind: 'lit', value: tok.v === 'true' };
      if (tok.v === 'null') return { kind: 'lit', value: null };
      if (isOp('(')) { p++; return { kind: 'call', fn: tok.v, args: args(')') }; }
      return { kind: 'ident', name: tok.v };
    }
    if (tok.v === '(') { const e = expr(); take(')'); return e; }
    if (tok.v === '[') return { kind: 'list', items: args(']') };
    if (tok.v === '{') fail('map literals are not supported');
    return fail(`unexpected '${tok.v || 'end of input'}' at ${tok.at}`);
  };
  const member = (): Ast => {
    let e = primary();
    for (;;) {
      if (isOp('.')) {
        p++;
        const name = toks[p++] as Token;
        if (name.t !== 'ident') fail(`expected a field name at ${name.at}`);
        if (isOp('(')) { p++; e = { kind: 'call', fn: name.v, target: e, args: args(')') }; } else e = { kind: 'select', operand: e, field: name.v };
      } else if (isOp('[')) {
        p++;
        const index = expr();
        take(']');
        e = { kind: 'index', operand: e, index };
      } else if (isOp('{')) {
        return fail('message construction is not supported');
      } else return e;
    }
  };
  const unary = (): Ast => {
    if (isOp('!') || isOp('-')) {
      const op = (toks[p++] as Token).v as '!' | '-';
      return { kind: 'unary', op, operand: unary() };
    }
    return member();
  };
  const mul = binaryLevel(unary, (t) => t.t === 'op' && ['*', '/', '%'].includes(t.v));
  const add = binaryLevel(mul, (t) => t.t === 'op' && ['+', '-'].includes(t.v));
  const rel = binaryLevel(add, (t) => (t.t === 'op' || t.t === 'ident') && RELATIONS.has(t.v));
  const and = binaryLevel(rel, (t) => t.t === 'op' && t.v === '&&');
  const or = binaryLevel(and, (t) => t.t === 'op' && t.v === '||');

  const ast = expr();
  if (peek().t !== 'eof') fail(`unexpected '${peek().v}' at ${peek().at}`);
  return ast;
}
