// Compiles a parsed CEL expression (api/cel/parse.ts) into a JavaScript closure over JSON values,
// with the semantics CRD validation relies on:
//   - selecting an absent field is an error ("no such key"), has(a.f) tests presence;
//   - && and || are commutative over errors: false && error is false, true || error is true,
//     otherwise the error propagates (an erroring rule fails, as on the API server);
//   - all/exists/exists_one iterate list elements or map keys; all is false if any item is false
//     and otherwise an error if any item errs (exists likewise with true); exists_one errs on any error;
//   - == is heterogeneous: values of different types are unequal, never an error;
//   - size() counts code points of a string, items of a list, keys of a map;
//   - matches() is RE2 partial matching: a pattern is compiled as a JavaScript "u" regexp, and RE2
//     syntax that JavaScript would read differently ((?flags), [[:class:]]) is refused;
//   - Kubernetes' IP library (api/cel/ip.ts): isIP, ip(), ip.isCanonical and the ip methods.
// Every function, method, macro and variable is resolved at compile time: an unknown one is a
// CelCompileError, never a rule that silently passes.
import { CelCompileError, CelEvalError } from './errors.ts';
import { parseCel, type Ast } from './parse.ts';
import { IP_FUNCTIONS, IP_METHODS, CelIp } from './ip.ts';

type Scope = { readonly [name: string]: unknown };
export type Program = (scope: Scope) => unknown;

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof CelIp);
const typeName = (v: unknown) => v === null ? 'null' : Array.isArray(v) ? 'list' : v instanceof CelIp ? 'net.IP'
  : isMap(v) ? 'map' : typeof v === 'number' ? 'int' : typeof v === 'boolean' ? 'bool' : typeof v;
const noOverload = (what: string, ...vs: unknown[]) => new CelEvalError(`no such overload: ${what}(${vs.map(typeName).join(', ')})`);

export function celEquals(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => celEquals(x, b[i]));
  if (isMap(a) && isMap(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => k in b && celEquals(a[k], b[k]));
  }
  if (a instanceof CelIp && b instanceof CelIp) return a.ip.address === b.ip.address;
  return false;
}

function asBool(v: unknown, what: string): boolean {
  if (typeof v !== 'boolean') throw noOverload(what, v);
  return v;
}

function sizeOf(v: unknown): number {
  if (typeof v === 'string') { let n = 0; for (const _ of v) n++; return n; }
  if (Array.isArray(v)) return v.length;
  if (isMap(v)) return Object.keys(v).length;
  throw noOverload('size', v);
}

/** An RE2 pattern as a JavaScript regexp; refuses RE2 syntax JavaScript would read differently. */
export function re2(pattern: string): RegExp {
  if (/\(\?[^:]/.test(pattern)) throw new Error(`RE2 flag groups (?...) are not supported: ${pattern}`);
  if (pattern.includes('[:')) throw new Error(`POSIX classes [[:...:]] are not supported: ${pattern}`);
  return new RegExp(pattern, 'u');
}

const regexCache = new Map<string, RegExp>();
function matcher(pattern: string): RegExp {
  let re = regexCache.get(pattern);
  if (!re) {
    try { re = re2(pattern); } catch (err) { throw new CelEvalError((err as Error).message); }
    regexCache.set(pattern, re);
  }
  return re;
}

function strings(what: string, a: unknown, b: unknown): [string, string] {
  if (typeof a !== 'string' || typeof b !== 'string') throw noOverload(what, a, b);
  return [a, b];
}

const STRING_METHODS: Record<string, (s: unknown, arg: unknown) => unknown> = {
  contains: (s, a) => { const [x, y] = strings('contains', s, a); return x.includes(y); },
  startsWith: (s, a) => { const [x, y] = strings('startsWith', s, a); return x.startsWith(y); },
  endsWith: (s, a) => { const [x, y] = strings('endsWith', s, a); return x.endsWith(y); },
  matches: (s, a) => { const [x, y] = strings('matches', s, a); return matcher(y).test(x); },
};

function compare(op: string, a: unknown, b: unknown): boolean {
  if (typeof a !== typeof b || !['number', 'string', 'boolean'].includes(typeof a)) throw noOverload(op, a, b);
  const x = a as number, y = b as number;
  return op === '<' ? x < y : op === '<=' ? x <= y : op === '>' ? x > y : x >= y;
}

function arith(op: string, a: unknown, b: unknown): unknown {
  if (op === '+' && typeof a === 'string' && typeof b === 'string') return a + b;
  if (op === '+' && Array.isArray(a) && Array.isArray(b)) return [...a, ...b];
  if (typeof a !== 'number' || typeof b !== 'number') throw noOverload(op, a, b);
  if ((op === '/' || op === '%') && b === 0) throw new CelEvalError(op === '/' ? 'division by zero' : 'modulus by zero');
  const r = op === '+' ? a + b : op === '-' ? a - b : op === '*' ? a * b : op === '/' ? Math.trunc(a / b) : a % b;
  if (!Number.isSafeInteger(r)) throw new CelEvalError('integer overflow');
  return r;
}

function inOp(a: unknown, b: unknown): boolean {
  if (Array.isArray(b)) return b.some((x) => celEquals(a, x));
  if (isMap(b)) return typeof a === 'string' && Object.hasOwn(b, a);
  throw noOverload('in', a, b);
}

function binary(op: string, l: Program, r: Program): Program {
  if (op === '&&' || op === '||') {
    const short = op === '||';
    return (s) => {
      let err: unknown;
      try { if (asBool(l(s), op) === short) return short; } catch (e) { err = e; }
      if (asBool(r(s), op) === short) return short;
      if (err !== undefined) throw err;
      return !short;
    };
  }
  if (op === '==') return (s) => celEquals(l(s), r(s));
  if (op === '!=') return (s) => !celEquals(l(s), r(s));
  if (op === 'in') return (s) => inOp(l(s), r(s));
  if (['<', '<=', '>', '>='].includes(op)) return (s) => compare(op, l(s), r(s));
  return (s) => arith(op, l(s), r(s));
}

function select(v: unknown, field: string): unknown {
  if (!isMap(v)) throw noOverload(`.${field}`, v);
  if (!Object.hasOwn(v, field)) throw new CelEvalError(`no such key: ${field}`);
  return v[field];
}

function index(v: unknown, i: unknown): unknown {
  if (Array.isArray(v) && typeof i === 'number') {
    if (i < 0 || i >= v.length) throw new CelEvalError(`index out of range: ${i}`);
    return v[i];
  }
  if (isMap(v) && typeof i === 'string') return select(v, i);
  throw noOverload('_[_]', v, i);
}

function itemsOf(v: unknown, macro: string): unknown[] {
  if (Array.isArray(v)) return v;
  if (isMap(v)) return Object.keys(v);
  throw noOverload(macro, v);
}

/** all / exists / exists_one / map / filter over a list's items or a map's keys. */
function macro(name: string, target: Program, variable: string, body: Program): Program {
  const run = (s: Scope, x: unknown) => body({ ...s, [variable]: x });
  switch (name) {
    case 'all':
    case 'exists': {
      const decisive = name === 'exists';
      return (s) => {
        let err: unknown;
        for (const x of itemsOf(target(s), name)) {
          try { if (asBool(run(s, x), name) === decisive) return decisive; } catch (e) { err ??= e; }
        }
        if (err !== undefined) throw err;
        return !decisive;
      };
    }
    case 'exists_one':
      return (s) => itemsOf(target(s), name).filter((x) => asBool(run(s, x), name)).length === 1;
    case 'filter':
      return (s) => itemsOf(target(s), name).filter((x) => asBool(run(s, x), name));
    default: // map
      return (s) => itemsOf(target(s), name).map((x) => run(s, x));
  }
}

const MACROS = new Set(['all', 'exists', 'exists_one', 'map', 'filter']);

function compileCall(ast: Extract<Ast, { kind: 'call' }>, vars: ReadonlySet<string>, src: string): Program {
  const fail = (m: string): never => { throw new CelCompileError(m, src); };
  const { fn, target } = ast;
  const args = (extra: ReadonlySet<string> = vars) => ast.args.map((a) => compileAst(a, extra, src));
  if (fn === 'has') {
    const arg = ast.args[0];
    if (target || ast.args.length !== 1 || arg?.kind !== 'select') return fail('has() takes one field selection, e.g. has(self.field)');
    const operand = compileAst(arg.operand, vars, src);
    return (s) => { const v = operand(s); if (!isMap(v)) throw noOverload('has', v); return Object.hasOwn(v, arg.field); };
  }
  if (target && MACROS.has(fn)) {
    const v = ast.args[0];
    if (ast.args.length !== 2 || v?.kind !== 'ident') return fail(`${fn}() takes a variable and an expression`);
    const body = compileAst(ast.args[1] as Ast, new Set([...vars, v.name]), src);
    return macro(fn, compileAst(target, vars, src), v.name, body);
  }
  // ip.isCanonical(s): a namespaced function, unless "ip" is a variable in scope.
  const qualified = target?.kind === 'ident' && !vars.has(target.name) ? `${target.name}.${fn}` : undefined;
  const global = qualified ?? (target ? undefined : fn);
  if (global !== undefined) {
    const g = global === 'size' ? (v: unknown) => sizeOf(v)
      : global === 'matches' ? (a: unknown, b: unknown) => STRING_METHODS.matches!(a, b) : IP_FUNCTIONS[global];
    if (!g) return fail(`unsupported function ${global}()`);
    if (g.length !== ast.args.length) return fail(`${global}() takes ${g.length} argument(s)`);
    const [a, b] = args();
    if (global === 'matches') checkLiteralPattern(ast.args[1], fail);
    return b ? (s) => g(a!(s), b(s)) : (s) => (g as (x: unknown) => unknown)(a!(s));
  }
  const recv = compileAst(target as Ast, vars, src);
  if (fn === 'size' && ast.args.length === 0) return (s) => sizeOf(recv(s));
  const sm = STRING_METHODS[fn];
  if (sm && ast.args.length === 1) {
    if (fn === 'matches') checkLiteralPattern(ast.args[0], fail);
    const [a] = args();
    return (s) => sm(recv(s), a!(s));
  }
  const im = IP_METHODS[fn];
  if (im && ast.args.length === 0) {
    return (s) => { const v = recv(s); if (!(v instanceof CelIp)) throw noOverload(fn, v); return im(v); };
  }
  return fail(`unsupported method .${fn}() with ${ast.args.length} argument(s)`);
}

/** A literal pattern is checked at compile time, so a bad regexp is a load error. */
function checkLiteralPattern(arg: Ast | undefined, fail: (m: string) => never): void {
  if (arg?.kind !== 'lit' || typeof arg.value !== 'string') return;
  try { matcher(arg.value); } catch (err) { fail((err as Error).message); }
}

function compileAst(ast: Ast, vars: ReadonlySet<string>, src: string): Program {
  switch (ast.kind) {
    case 'lit': { const v = ast.value; return () => v; }
    case 'ident': {
      if (!vars.has(ast.name)) throw new CelCompileError(`undeclared reference to '${ast.name}'`, src);
      const name = ast.name;
      return (s) => s[name];
    }
    case 'select': { const o = compileAst(ast.operand, vars, src); const f = ast.field; return (s) => select(o(s), f); }
    case 'index': { const o = compileAst(ast.operand, vars, src), i = compileAst(ast.index, vars, src); return (s) => index(o(s), i(s)); }
    case 'list': { const items = ast.items.map((a) => compileAst(a, vars, src)); return (s) => items.map((f) => f(s)); }
    case 'unary': {
      const o = compileAst(ast.operand, vars, src);
      if (ast.op === '!') return (s) => !asBool(o(s), '!');
      return (s) => { const v = o(s); if (typeof v !== 'number') throw noOverload('-', v); return -v; };
    }
    case 'binary': return binary(ast.op, compileAst(ast.left, vars, src), compileAst(ast.right, vars, src));
    case 'cond': {
      const t = compileAst(ast.test, vars, src), a = compileAst(ast.then, vars, src), b = compileAst(ast.else, vars, src);
      return (s) => (asBool(t(s), '?:') ? a(s) : b(s));
    }
    case 'call': return compileCall(ast, vars, src);
  }
}

/** Compiles a CEL expression whose free variables are `vars` (e.g. self); throws CelCompileError. */
export function compileCel(src: string, vars: readonly string[] = ['self']): Program {
  return compileAst(parseCel(src), new Set(vars), src);
}

export { CelCompileError, CelEvalError };
