// Health checks for standalone `lvs-agent apply`: the checks, and the health record `lvs-agent
// show` prints, kept next to the owner record. The record follows every change a check makes —
// up/down or only its reason, at most every 250 ms — and every sync (a reload changes what is
// checked). In one-shot mode one round decides, so one pass suffices to be in rotation.
import type { Logger } from 'pino';
import { realClock } from '../../kube/clock.ts';
import { createAgentHealth, type AgentHealth } from './agent-health.ts';
import { healthFileOf, healthRecord, writeHealthRecord } from './record.ts';

export interface StandaloneHealth {
  health: AgentHealth;
  /** Writes the health record now (failures are logged, never thrown). */
  write(): void;
  close(): void;
}

export function standaloneHealth(o: { node: string; log: Logger; stateFile: string; watch: boolean; onFlip: () => void }): StandaloneHealth {
  const file = healthFileOf(o.stateFile);
  let pending: NodeJS.Timeout | undefined;
  const write = () => {
    clearTimeout(pending);
    pending = undefined;
    try { writeHealthRecord(file, healthRecord(health.states(), new Date())); } catch (err) { o.log.warn({ op: 'health', err: String(err) }, 'writing the health record failed'); }
  };
  const health = createAgentHealth({
    node: o.node, clock: realClock, log: o.log, onChange: () => { o.onFlip(); write(); },
    onUpdate: () => { pending ??= setTimeout(write, 250).unref(); },
    ...(o.watch ? {} : { successThreshold: 1 }),
  });
  return { health, write, close: () => { health.close(); clearTimeout(pending); } };
}
