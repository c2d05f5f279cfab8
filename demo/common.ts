// What the demo's guest parts (demo/guest.ts, demo/failover.ts) share: printing, claims, and
// one-shot lvs-agent commands.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { AGENT_ENTRY } from '../lab/vm/guest-agent.ts';

const execFileP = promisify(execFile);

export const say = (s = ''): void => console.log(s);

/** The demo states only what it measured: a claim that does not hold ends the demo, naming what it saw. */
export class ClaimFailed extends Error {}
export function claim(ok: boolean, saw: string): void {
  if (!ok) throw new ClaimFailed(`the demo expected otherwise and saw: ${saw}`);
}

/** One lvs-agent command, awaited (never execFileSync: the running agents' output and the kernel polls must go on meanwhile). */
export async function agent(ns: string | undefined, args: string[]): Promise<string> {
  const argv = [process.execPath, AGENT_ENTRY, ...args, '--log-level', 'warn'];
  const { stdout } = await execFileP(ns ? 'ip' : argv[0]!, ns ? ['netns', 'exec', ns, ...argv] : argv.slice(1), { encoding: 'utf8' });
  return stdout;
}
