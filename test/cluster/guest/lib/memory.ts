// Memory of the chart's containers as the node's kernel accounts it, and the kernel's OOM kills.
// cgroup v2 with the kubelet's cgroupfs driver: a container's cgroup is
// /sys/fs/cgroup/kubepods[/<qos class>]/pod<pod uid>/<container id>; memory.peak (Linux >= 5.19)
// is the most it ever held, what its memory limit is compared against.
import { existsSync, readFileSync } from 'node:fs';
import { sh } from '../../../../lab/guest/netns.ts';
import { logPayload, podsOf, RELEASE_NS } from './cluster.ts';

export interface ContainerMemory { pod: string; currentMiB: number; peakMiB: number; oomKills: number }

const MiB = 1024 * 1024;

/** The chart's running containers now: current and peak memory, OOM kills counted by their cgroup. */
export function chartMemory(): ContainerMemory[] {
  const out: ContainerMemory[] = [];
  for (const p of podsOf(RELEASE_NS, 'app.kubernetes.io/name=lvs-operator')) {
    const id = p.status.containerStatuses?.[0]?.containerID?.replace(/^\w+:\/\//, '');
    if (!id || !p.metadata.uid) continue;
    const dir = ['', 'burstable/', 'besteffort/'].map((q) => `/sys/fs/cgroup/kubepods/${q}pod${p.metadata.uid}/${id}`).find((d) => existsSync(d));
    if (!dir) continue;
    const read = (f: string) => readFileSync(`${dir}/${f}`, 'utf8');
    out.push({
      pod: p.metadata.name,
      currentMiB: Math.round(Number(read('memory.current')) / MiB),
      peakMiB: Math.round(Number(read('memory.peak')) / MiB),
      oomKills: Number(/^oom_kill (\d+)$/m.exec(read('memory.events'))?.[1] ?? 0),
    });
  }
  return out;
}

/** One line for the test log: each container's current / peak MiB. */
export function memoryLine(stage: string): string {
  const m = chartMemory();
  return `# memory ${stage}: ${m.map((c) => `${c.pod} ${c.currentMiB}/${c.peakMiB} MiB${c.oomKills ? ` (${c.oomKills} OOM kills)` : ''}`).join(', ') || '(no container found)'}`;
}

/** The kernel's memory-cgroup OOM kills since boot, one line per killed process. */
export function oomKills(): string[] {
  const lines = sh('dmesg').split('\n').filter((l) => l.includes('Memory cgroup out of memory: Killed process'));
  return [...new Map(lines.map((l) => [/Killed process (\d+)/.exec(l)?.[1] ?? l, l.replace(/^\[[^\]]*\]\s*/, '')])).values()];
}

/** The start-up memory line (kube/memory.ts) each container of the pods of `prefix` logged. */
export function loggedBudgets(prefix: string): Array<{ heapLimitMiB?: number; cgroupLimitMiB?: number; warning?: string }> {
  const text = sh(`grep -hF -e '"op":"memory"' /var/log/pods/${RELEASE_NS}_${prefix}*/*/*.log || true`);
  return text.split('\n').filter((l) => l.includes('{')).map((l) => logPayload(l) as { heapLimitMiB?: number; cgroupLimitMiB?: number; warning?: string });
}
