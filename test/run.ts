// Test entry point: `npm test` runs the typecheck and every tier that exists; `npm test -- unit kernel`
// runs the named tiers. Each test file runs in its own process (uvu prints its own totals), and
// the last line is the sum: "N passed, N failed[, N skipped]". Under CI=true a skip is a failure.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const TIERS = ['typecheck', 'unit', 'api', 'apiserver', 'kernel', 'system', 'ha', 'chart', 'cluster'] as const;
const root = join(dirname(fileURLToPath(import.meta.url)), '..');

interface Totals { passed: number; failed: number; skipped: number }

// What failed, repeated at the end: a CI log is often read from its tail, and a tier of several
// minutes of VM output buries uvu's FAIL block far above the sum.
const failures: string[] = [];

// uvu's FAIL headers with the lines that follow each (the assertion and the first stack lines);
// a VM tier prints its guest's with a prefix ("[vm] ", "[node] ").
function failBlocks(out: string): string[] {
  const lines = out.replace(/\x1b\[[0-9;]*m/g, '').split('\n');
  const blocks: string[] = [];
  lines.forEach((line, i) => {
    if (/^(\[[^\]]*\]\s*)?\s*FAIL\s/.test(line)) blocks.push(lines.slice(i, i + 8).map((l) => `    ${l.trimEnd()}`).join('\n'));
  });
  return blocks;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const tee = (stream: NodeJS.WritableStream) => (chunk: Buffer) => { out += chunk.toString(); stream.write(chunk); };
    child.stdout.on('data', tee(process.stdout));
    child.stderr.on('data', tee(process.stderr));
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), out }));
  });
}

// uvu's summary block: "Total: N / Passed: N / Skipped: N" (possibly coloured). Total counts the
// tests that ran; skipped ones are outside it.
function parseUvu(out: string): Totals | undefined {
  const plain = out.replace(/\x1b\[[0-9;]*m/g, '');
  const total = [...plain.matchAll(/Total:\s+(\d+)/g)].map((m) => Number(m[1]));
  const passed = [...plain.matchAll(/Passed:\s+(\d+)/g)].map((m) => Number(m[1]));
  const skipped = [...plain.matchAll(/Skipped:\s+(\d+)/g)].map((m) => Number(m[1]));
  if (total.length === 0) return undefined;
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const t = sum(total), p = sum(passed), s = sum(skipped);
  return { passed: p, skipped: s, failed: t - p };
}

function testFiles(tier: string): string[] {
  const dir = join(root, 'test', tier);
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => f.endsWith('.test.ts')).sort().map((f) => join(dir, f));
}

async function runTier(tier: string): Promise<Totals> {
  if (tier === 'typecheck') {
    console.log('\n== typecheck (tsc --noEmit, strict)');
    const { code } = await run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '--noEmit', '-p', 'tsconfig.json']);
    if (code !== 0) failures.push(`typecheck: tsc exited ${code}`);
    return code === 0 ? { passed: 1, failed: 0, skipped: 0 } : { passed: 0, failed: 1, skipped: 0 };
  }
  const totals: Totals = { passed: 0, failed: 0, skipped: 0 };
  for (const file of testFiles(tier)) {
    console.log(`\n== ${tier}: ${relative(root, file)}`);
    const { code, out } = await run(process.execPath, [file]);
    const parsed = parseUvu(out);
    const name = relative(root, file);
    if (!parsed) {
      totals.failed += 1; failures.push(`${name}: exited ${code} without a uvu summary`);
      console.log(`!! ${name} exited ${code} without a uvu summary`); continue;
    }
    // A file whose process failed after its tests (unhandled rejection, teardown error) fails once more.
    if (code !== 0 && parsed.failed === 0) { parsed.failed = 1; failures.push(`${name}: exited ${code} after its tests passed`); }
    else if (parsed.failed > 0) failures.push(`${name}: ${parsed.failed} failed\n${failBlocks(out).join('\n')}`);
    totals.passed += parsed.passed; totals.failed += parsed.failed; totals.skipped += parsed.skipped;
  }
  return totals;
}

async function main() {
  const asked = process.argv.slice(2);
  const unknown = asked.filter((t) => !(TIERS as readonly string[]).includes(t));
  if (unknown.length) { console.error(`unknown tier(s): ${unknown.join(', ')}; tiers: ${TIERS.join(' ')}`); process.exit(2); }
  const tiers = asked.length ? asked : TIERS.filter((t) => t === 'typecheck' || testFiles(t).length > 0);
  const all: Totals = { passed: 0, failed: 0, skipped: 0 };
  for (const tier of tiers) {
    const t = await runTier(tier);
    all.passed += t.passed; all.failed += t.failed; all.skipped += t.skipped;
  }
  const ci = process.env.CI === 'true';
  if (failures.length) console.log(`\n== what failed (repeated from above)\n${failures.join('\n')}`);
  if (ci && all.skipped > 0) console.log(`\nCI=true: ${all.skipped} skipped test(s) count as failures`);
  console.log(`\n${all.passed} passed, ${all.failed + (ci ? all.skipped : 0)} failed${all.skipped ? `, ${all.skipped} skipped` : ''}`);
  process.exit(all.failed > 0 || (ci && all.skipped > 0) ? 1 : 0);
}

await main();
