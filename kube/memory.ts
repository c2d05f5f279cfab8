// What the controller and the agent log at start about memory: V8's heap limit against the
// memory limit of their cgroup (the container's). Node sizes V8's heap from the cgroup limit when
// there is one (libuv's uv_get_constrained_memory), and a heap allowed to grow to that limit lets
// garbage pile up past it before a full collection: the kernel then kills the process (a memory
// cgroup OOM kill), which an operator sees only as restarts. The chart sets
// NODE_OPTIONS=--max-old-space-size-percentage=60; this line shows whether it took effect.
import { totalmem } from 'node:os';
import { getHeapStatistics } from 'node:v8';

export interface MemoryBudget {
  /** V8's heap size limit (every space). */
  heapLimitMiB: number;
  /** The cgroup's memory limit, when there is one below the machine's memory. */
  cgroupLimitMiB?: number;
  /** Set when the heap may grow to 80% of the cgroup limit or more. */
  warning?: string;
}

const MiB = 1024 * 1024;
/** Past this share of the cgroup limit the heap leaves too little for code, buffers and stacks. */
const SAFE_SHARE = 0.8;

/** Pure: `constrained` as process.constrainedMemory() gives it (0 or 2^64 when unconstrained). */
export function memoryBudget(heapLimitBytes: number, constrainedBytes: number, totalBytes: number): MemoryBudget {
  const heapLimitMiB = Math.round(heapLimitBytes / MiB);
  if (!(constrainedBytes > 0 && constrainedBytes < totalBytes)) return { heapLimitMiB };
  const cgroupLimitMiB = Math.round(constrainedBytes / MiB);
  if (heapLimitBytes < SAFE_SHARE * constrainedBytes) return { heapLimitMiB, cgroupLimitMiB };
  return {
    heapLimitMiB, cgroupLimitMiB,
    warning: `V8's heap may grow to ${heapLimitMiB} MiB against a memory limit of ${cgroupLimitMiB} MiB: garbage can pile up past the limit before a full collection and the kernel kills the process; set NODE_OPTIONS=--max-old-space-size-percentage=60 (the chart does)`,
  };
}

/** This process's budget. */
export function processMemoryBudget(): MemoryBudget {
  return memoryBudget(getHeapStatistics().heap_size_limit, process.constrainedMemory(), totalmem());
}

/** The start-up line: info, or warn when the heap can outgrow the container. */
export function logMemoryBudget(log: { info(o: object, m: string): void; warn(o: object, m: string): void }): void {
  const b = processMemoryBudget();
  if (b.warning) log.warn({ op: 'memory', ...b }, b.warning);
  else log.info({ op: 'memory', ...b }, b.cgroupLimitMiB ? 'heap limit within the memory limit' : 'no memory limit');
}
