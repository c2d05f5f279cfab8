// A suite whose prerequisites are missing is skipped with its reason printed; the runner turns
// any skip into a failure under CI=true.
import type { Test } from 'uvu';

export function gated(test: Test, missing: string | undefined): Test {
  if (!missing) return test;
  console.log(`# skipped: ${missing}`);
  const skip = ((name: string, fn: Parameters<Test>[1]) => test.skip(name, fn)) as Test;
  return Object.assign(skip, test, { only: skip, skip: test.skip });
}
