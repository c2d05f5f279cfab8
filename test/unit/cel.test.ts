// The in-process CEL evaluator (api/cel) on the semantics the CRD's rules depend on, with expected
// values taken from the CEL spec and from Kubernetes' IP library (Go's net/netip underneath).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { compileCel } from '../../api/cel/eval.ts';
import { CelCompileError, CelEvalError } from '../../api/cel/errors.ts';
import { compileRuleTree, evaluateRules } from '../../api/cel/rules.ts';
import { withSchemaDefaults } from '../../api/defaults.ts';

const run = (expr: string, self: unknown = {}) => compileCel(expr)({ self });
const fails = (expr: string, self: unknown, re: RegExp) =>
  assert.throws(() => run(expr, self), (e: unknown) => e instanceof CelEvalError && re.test((e as Error).message));

const lang = suite('cel language');

lang('literals, operators and precedence', () => {
  assert.is(run("1 + 2 * 3 == 7 && !(1 > 2) && 'a' + 'b' == 'ab' && -3 < 0"), true);
  assert.is(run("true ? 'y' : 'n'"), 'y');
  assert.is(run("false || false ? 1 : 2"), 2);
  assert.is(run("'a\\\\.b\\'\\x41'"), "a\\.b'A");
  assert.is(run('7 / 2 == 3 && 7 % 2 == 1'), true);
  assert.equal(run('[1, 2] + [3]'), [1, 2, 3]);
});

lang('field selection: an absent field is an error, has() tests presence', () => {
  assert.is(run('self.a.b', { a: { b: 1 } }), 1);
  fails('self.x == 1', { a: 1 }, /no such key: x/);
  assert.is(run('has(self.a) && !has(self.b)', { a: 1 }), true);
  fails('has(self.a.b)', {}, /no such key: a/);
});

lang('&& and || absorb an error when the other side decides', () => {
  assert.is(run('self.x || true'), true);
  assert.is(run('true || self.x'), true);
  assert.is(run('self.x && false'), false);
  fails('self.x || false', {}, /no such key/);
  fails('true && self.x', {}, /no such key/);
});

lang('== is heterogeneous; in tests list items and map keys', () => {
  assert.is(run("1 == 'a'"), false);
  assert.is(run("self == [1, 'a']", [1, 'a']), true);
  assert.is(run("'b' in ['a', 'b'] && !('c' in ['a'])"), true);
  assert.is(run("'k' in self && !('v' in self)", { k: 'v' }), true);
});

lang('macros over lists and map keys, with CEL error semantics', () => {
  assert.is(run('self.all(x, x > 0)', [1, 2]), true);
  assert.is(run('self.exists(x, x == 2)', [1, 2]), true);
  assert.is(run('self.exists_one(x, x == 1)', [1, 2, 1]), false);
  assert.is(run("self.all(k, k.startsWith('a'))", { ab: 1, ac: 2 }), true);
  assert.equal(run('self.filter(x, x > 1).map(x, x * 10)', [1, 2, 3]), [20, 30]);
  // all: a false item decides even past an erroring one; exists: a true one does.
  assert.is(run('self.all(x, x.a == 1)', [{}, { a: 2 }]), false);
  assert.is(run('self.exists(x, x.a == 1)', [{}, { a: 1 }]), true);
  fails('self.all(x, x.a == 1)', [{}, { a: 1 }], /no such key: a/);
  fails('self.exists_one(x, x.a == 1)', [{ a: 1 }, {}], /no such key: a/);
});

lang('strings: size counts code points; contains, startsWith, matches (partial, RE2 syntax)', () => {
  assert.is(run('size(self) == 5 && self.size() == 5', 'héllo'), true);
  assert.is(run("self.contains('--') && self.endsWith('b')", 'a--b'), true);
  assert.is(run("self.matches('[a-z]') && !self.matches('^[a-z]+$')", '8a0'), true);
  assert.is(run("matches(self, '^x')", 'xy'), true);
});

lang.run();

// ---------------------------------------------------------------------------------------------
const ip = suite("Kubernetes' IP library");

ip('isIP: no leading zeros, no zone, no IPv4-mapped IPv6', () => {
  const cases: Array<[string, boolean]> = [
    ['192.0.2.1', true], ['2001:db8::1', true], ['2001:DB8:0::1', true], ['::1.2.3.4', true],
    ['010.0.0.1', false], ['fe80::1%eth0', false], ['::ffff:192.0.2.1', false], ['::ffff:c000:201', false],
    ['1.2.3', false], ['example.com', false], ['', false], ['1:2:3:4:5:6:7:8:9', false],
  ];
  for (const [s, want] of cases) assert.is(run('isIP(self)', s), want, s);
});

ip('ip.isCanonical is Go netip Addr.String() == s; an invalid address is an error', () => {
  const cases: Array<[string, boolean]> = [
    ['2001:db8::10', true], ['2001:DB8::10', false], ['2001:db8:0::10', false], ['2001:db8:1:0::5', false],
    ['2001:db8:0:1:1:1:1:1', true], ['2001:0db8::1', false], ['1:0:0:1:0:0:0:1', false], ['1:0:0:1::1', true],
    ['::1.2.3.4', false], ['::102:304', true], ['10.0.0.1', true],
  ];
  for (const [s, want] of cases) assert.is(run('ip.isCanonical(self)', s), want, s);
  fails('ip.isCanonical(self)', '1.2.3', /parse error/);
});

ip('ip(s).isGlobalUnicast and friends, as netip', () => {
  const global = (s: string) => run('ip(self).isGlobalUnicast()', s);
  for (const s of ['192.0.2.1', '10.0.0.1', '2001:db8::1', 'fc00::1']) assert.is(global(s), true, s);
  for (const s of ['0.0.0.0', '255.255.255.255', '127.0.0.1', '224.0.0.1', '239.1.1.1', '169.254.1.1', '::', '::1', 'ff02::1', 'fe80::1', 'febf::1']) {
    assert.is(global(s), false, s);
  }
  assert.is(run('ip(self).isUnspecified() && ip(self).family() == 6', '::'), true);
  assert.is(run('ip(self).isLoopback() && !ip(self).isLinkLocalUnicast()', '127.9.9.9'), true);
  fails('ip(self)', 'nope', /parse error/);
});

ip.run();

// ---------------------------------------------------------------------------------------------
const load = suite('compile time');

load('constructs outside the subset are refused when compiled, not when evaluated', () => {
  const refused = ['1.5', '2u', "{'a': 1}", "r'x'", "b'x'", "'''x'''", 'oldSelf == self', 'self.foo(1)',
    'unknownFn(self)', 'self.all(1, true)', 'has(self)', "self.matches('(?i)x')", "self.matches('[[:alpha:]]')",
    "self.matches('\\\\z')", 'self +', "'unterminated"];
  for (const expr of refused) assert.throws(() => compileCel(expr), (e: unknown) => e instanceof CelCompileError, expr);
});

load('a variable named ip shadows the ip namespace', () => {
  assert.is(compileCel('self.all(ip, ip.isCanonical)')({ self: [{ isCanonical: true }] }), true);
});

load.run();

// ---------------------------------------------------------------------------------------------
const tree = suite('rules in a schema, and defaults');

const schema = {
  type: 'object',
  properties: {
    mode: { type: 'string', default: 'A' },
    opts: { type: 'object', default: {}, properties: { level: { type: 'integer', default: 3 } } },
    items: {
      type: 'array',
      items: { type: 'string', 'x-kubernetes-validations': [{ rule: "self != 'bad'", message: 'no bad' }] },
    },
    labels: {
      type: 'object',
      additionalProperties: { type: 'string', 'x-kubernetes-validations': [{ rule: 'size(self) < 3', messageExpression: "'too long: ' + self" }] },
    },
  },
  'x-kubernetes-validations': [
    { rule: "self.mode == 'A' || !has(self.items)", fieldPath: '.items', message: 'items need mode A' },
    { rule: 'self.nothing' },
  ],
};

tree('defaults: absent and non-nullable null fields get the default, then defaults inside it', () => {
  const input = { mode: null, items: [] };
  assert.equal(withSchemaDefaults(input, schema), { mode: 'A', items: [], opts: { level: 3 } });
  assert.equal(input, { mode: null, items: [] }, 'the input is not modified');
});

tree('each rule runs where its value is present and reports at path + fieldPath; an error fails the rule', () => {
  const got = evaluateRules(compileRuleTree(schema), { mode: 'B', items: ['ok', 'bad'], labels: { a: 'xy', b: 'xyz' } });
  assert.equal(got.map((v) => `${v.path}: ${v.message}`), [
    'items: items need mode A',
    ': self.nothing: evaluation error: no such key: nothing',
    'items[1]: no bad',
    'labels[b]: too long: xyz',
  ]);
  assert.equal(evaluateRules(compileRuleTree(schema), { mode: 'A', nothing: true }), []);
});

tree.run();
