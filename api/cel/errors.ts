// The two ways a CEL rule can fail: at load time (the expression is outside the supported subset,
// or malformed) and at evaluation time (a missing field, a wrong type, an invalid IP), which fails
// the rule as the API server fails it.

export class CelCompileError extends Error {
  readonly source: string;
  constructor(message: string, source: string) {
    super(`${message} in CEL expression: ${source}`);
    this.source = source;
    this.name = 'CelCompileError';
  }
}

export class CelEvalError extends Error {
  constructor(message: string) { super(message); this.name = 'CelEvalError'; }
}
