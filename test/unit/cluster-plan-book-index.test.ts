// The agent's plan book kept between reads (PlanBookIndex): whatever happens to the slices, a read
// gives exactly what readPlanBook() gives over the same list with the previous read's memory, while
// re-reading only the owners whose slices changed.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { slicePlan, type OwnerPlan } from '../../api/plan-slice.ts';
import { directedKeys, readPlanBook, type PlanBook, type RecordedOwner } from '../../dataplane/cluster/plan-book.ts';
import { PlanBookIndex } from '../../dataplane/cluster/plan-book-index.ts';
import { ownerPlan, service } from '../lib/plan-fixtures.ts';

const test = suite('cluster: plan book index');
const NAMES = ['web', 'api', 'db', 'cache', 'queue'];

/** A small deterministic PRNG (mulberry32): the same sequence on every run. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function plan(name: string, generation: number, big: boolean): OwnerPlan {
  const n = big ? 1500 : 1 + (generation % 3);
  const realServers = Array.from({ length: n }, (_, i) => ({ address: `10.${NAMES.indexOf(name)}.${Math.floor(i / 250)}.${i % 250}`, port: 80, weight: 1 + (generation % 5), state: 'Ready' as const }));
  return ownerPlan(name, [service({ vip: `203.0.113.${10 + NAMES.indexOf(name)}`, realServers })], { generation });
}

const view = (b: PlanBook) => ({ owners: [...b.owners.entries()], lastGood: [...b.lastGood.entries()].sort(([a], [c]) => a.localeCompare(c)) });

/** The informer's list: one object per slice name, replaced in place, new names appended. */
class List {
  readonly items = new Map<string, unknown>();
  #rv = 0;
  put(obj: Record<string, unknown>): void {
    const o = structuredClone(obj) as { metadata: { name: string; resourceVersion?: string } };
    o.metadata.resourceVersion = String(++this.#rv);
    this.items.set(o.metadata.name, o);
  }
  relist(): void {
    for (const [k, v] of this.items) this.items.set(k, structuredClone(v));
  }
}

function step(r: () => number, list: List, gens: Map<string, number>): string {
  const name = NAMES[Math.floor(r() * NAMES.length)]!;
  const gen = (gens.get(name) ?? 0) + 1;
  const pick = r();
  const own = [...list.items.keys()].filter((k) => k.startsWith(`uid-${name}-`));
  if (pick < 0.35) {
    gens.set(name, gen);
    const slices = slicePlan(plan(name, gen, r() < 0.2));
    for (const s of slices) list.put(s as unknown as Record<string, unknown>);
    for (const k of own) if (!slices.some((s) => s.metadata.name === k)) list.items.delete(k);
    return `publish ${name} g${gen} (${slices.length} slices)`;
  }
  if (pick < 0.45) {
    gens.set(name, gen);
    list.put(slicePlan(plan(name, gen, true))[0] as unknown as Record<string, unknown>);
    return `rewrite ${name}: first slice of g${gen} only`;
  }
  if (pick < 0.55 && own.length > 0) {
    list.put({ ...(list.items.get(own[0]!) as object), services: 'not a list' } as Record<string, unknown>);
    return `break ${own[0]}`;
  }
  if (pick < 0.65 && own.length > 0) {
    list.items.delete(own.at(-1)!);
    return `delete ${own.at(-1)}`;
  }
  if (pick < 0.72) {
    for (const k of own) list.items.delete(k);
    return `delete all of ${name}`;
  }
  if (pick < 0.78 && own.length > 0) {
    // A slice under this owner's name that claims another owner.
    const other = NAMES[(NAMES.indexOf(name) + 1) % NAMES.length]!;
    const s = slicePlan(plan(other, gen, false))[0]!;
    list.put({ ...s, metadata: { ...s.metadata, name: own[0]! } } as unknown as Record<string, unknown>);
    return `${own[0]} now claims ${other}`;
  }
  if (pick < 0.85) {
    list.relist();
    return 'relist: every object new, same content';
  }
  return 'nothing changed';
}

test('500 random changes: every read equals readPlanBook over the same list', () => {
  const r = prng(14);
  const list = new List();
  const index = new PlanBookIndex('n1');
  // The agent's: told each slice event (as the informer emits them), reading only those.
  const noted = new PlanBookIndex('n1');
  let before = new Map<string, unknown>();
  const gens = new Map<string, number>();
  let keys = index.directedKeys();
  let kept = 0;
  let memory: PlanBook['lastGood'] = new Map();
  let recorded = new Map<string, RecordedOwner>();
  const seen = new Set<string>();
  for (let i = 0; i < 500; i++) {
    let what = step(r, list, gens);
    if (r() < 0.1) {
      // The agent wrote its owner record again: owners frozen without a plan hold other keys.
      recorded = new Map(NAMES.filter(() => r() < 0.5).map((n) => [`TCP/203.0.113.${10 + NAMES.indexOf(n)}:80`, { uid: `uid-${n}`, virtualServer: `default/${n}` }]));
      what += '; new owner record';
    }
    const objects = [...list.items.values()];
    const want = readPlanBook(objects, memory, recorded);
    memory = want.lastGood;
    assert.equal(view(index.read(objects, recorded)), view(want), `change ${i}: ${what}`);
    for (const [k, o] of before) if (!list.items.has(k)) noted.note(o, true);
    for (const [k, o] of list.items) if (before.get(k) !== o) noted.note(o);
    before = new Map(list.items);
    let walked = false;
    assert.equal(view(noted.readNoted(() => { walked = true; return objects; }, recorded)), view(want), `noted, change ${i}: ${what}`);
    assert.is(walked, i === 0, `change ${i}: only the first read walks the list`);
    assert.equal(noted.frozenOwners(), [...want.owners.values()].filter((o) => o.frozen), `frozen owners after change ${i}: ${what}`);
    const now = index.directedKeys();
    assert.equal([...now], [...directedKeys(want, 'n1')], `directed keys after change ${i}: ${what}`);
    if (now === keys) kept++;
    keys = now;
    for (const o of want.owners.values()) seen.add(o.frozen ? (o.plan ? 'frozen on last good' : o.held.length ? 'held from the record' : 'frozen, nothing held') : 'usable');
  }
  assert.equal([...seen].sort(), ['frozen on last good', 'frozen, nothing held', 'held from the record', 'usable'], 'the sequence reached every kind of owner');
  assert.ok(kept > 100 && kept < 450, `the directed keys map was kept by identity where no key changed (${kept} of 500)`);
});

test('an unchanged list re-reads nothing: the same owner objects come back', () => {
  const index = new PlanBookIndex();
  const list = new List();
  for (const n of NAMES) for (const s of slicePlan(plan(n, 1, n === 'web'))) list.put(s as unknown as Record<string, unknown>);
  const recorded = new Map<string, RecordedOwner>();
  // A book is valid until the next read (no copies): keep what this one said.
  const first = new Map(index.read([...list.items.values()], recorded).owners);
  const again = index.read([...list.items.values()], recorded);
  for (const [uid, o] of first) assert.ok(again.owners.get(uid) === o, `${uid} was not re-read`);
  // One owner's new revision: only that owner is a new object.
  for (const s of slicePlan(plan('db', 2, false))) list.put(s as unknown as Record<string, unknown>);
  const next = index.read([...list.items.values()], recorded);
  for (const [uid, o] of first) assert.is(next.owners.get(uid) === o, uid !== 'uid-db', uid);
  assert.is(next.owners.get('uid-db')!.plan!.owner.generation, 2);
});

test.run();
