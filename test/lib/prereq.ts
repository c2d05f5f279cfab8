// A suite whose prerequisites are missing is skipped with its reason printed; the runner turns
// any skip into a failure under CI=true.
import type { Test } from 'uvu';

export function gated(test: Test, missing: string | undefined): Test {
  if (!missing) return loudBefore(test);
  console.log(`# skipped: ${missing}`);
  const skip = ((name: string, fn: Parameters<Test>[1]) => test.skip(name, fn)) as Test;
  return Object.assign(skip, test, { only: skip, skip: test.skip });
}

/**
 * uvu swallows an error thrown by a before hook: the suite prints "(0 / N)" with no message and the
 * process exits 0 (test/run.ts still counts the N tests as failed). The error is printed here.
 */
function loudBefore(test: Test): Test {
  const before = test.before;
  const loud = ((fn: Parameters<Test['before']>[0]) => before(async (ctx) => {
    try { await fn(ctx); } catch (err) {
      console.error(`\n# before hook failed, no test of this suite ran: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
      throw err;
    }
  })) as Test['before'];
  loud.each = before.each;
  test.before = loud;
  return test;
}
