// The environment for a child Node process with extra NODE_OPTIONS (the benchmarks' heap cap or
// profiler flags), added to this process's own rather than replacing them.

/** `env` with `extra` appended to its NODE_OPTIONS; `env` itself when there is nothing to add. */
export function withNodeOptions(env: NodeJS.ProcessEnv, extra: string | undefined): NodeJS.ProcessEnv {
  if (!extra) return env;
  return { ...env, NODE_OPTIONS: [env.NODE_OPTIONS, extra].filter(Boolean).join(' ') };
}
