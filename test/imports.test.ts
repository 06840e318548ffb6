/** The shape of the import graph: no cycle anywhere, and what `authgate start` and cli/ may load. */
import test from 'ava'
import { findCycles, importGraph, importsOf, reachable, sourceFiles } from './helpers/imports.js'

const SOURCES = ['gateway', 'cli', 'policies', 'certs']

test('no import cycle in gateway/, cli/, policies/ or certs/', (t) => {
  const graph = importGraph(sourceFiles(SOURCES))
  t.true(graph.size > 50, 'the walker found the sources')
  const staticOnly = new Map([...graph].map(([file, imports]) => [file, imports.filter((i) => !i.dynamic)]))
  t.deepEqual(findCycles(staticOnly).map((cycle) => cycle.join(' -> ')), [])
})

test('no cycle in cli/ even through dynamic imports (a command never imports the dispatcher back)', (t) => {
  // Across folders a lazily loaded command may lead back to where it was declared (the keys command loads the
  // config, whose validation reads the registry that declares it): that loop is closed only when the command runs.
  const graph = importGraph(sourceFiles(['cli']))
  t.deepEqual(findCycles(graph).map((cycle) => cycle.join(' -> ')), [])
})

test('the cycle finder finds a cycle, and the walker reads the import forms the sources use', (t) => {
  const graph = new Map([
    ['a.ts', [{ specifier: './b.js', dynamic: false, file: 'b.ts' }]],
    ['b.ts', [{ specifier: './c.js', dynamic: true, file: 'c.ts' }]],
    ['c.ts', [{ specifier: './a.js', dynamic: false, file: 'a.ts' }, { specifier: 'node:fs', dynamic: false }]],
    ['d.ts', [{ specifier: './a.js', dynamic: false, file: 'a.ts' }]],
  ])
  t.deepEqual(findCycles(graph), [['a.ts', 'b.ts', 'c.ts', 'a.ts']])
  const main = importsOf('cli/main.ts')
  t.true(main.some((i) => i.file === 'policies/index.ts' && !i.dynamic))
  t.true(main.some((i) => i.file === 'cli/start.ts' && i.dynamic))
  t.false(importsOf('policies/index.ts').some((i) => i.file === 'policies/types.ts'), '`import type` is not an import')
  t.true(importsOf('certs/x509.ts').some((i) => i.specifier === 'reflect-metadata'), 'a side-effect import is one')
})

test('authgate start loads no development PKI: neither certs/ nor @peculiar/x509 nor reflect-metadata is a static import of it', (t) => {
  const loaded = reachable(['cli/main.ts', 'cli/start.ts'])
  t.true(loaded.has('gateway/gateway.ts'), 'the walk reached the gateway')
  const offending = [...loaded].flatMap(([file, imports]) => [
    ...(file.startsWith('certs/') ? [file] : []),
    ...imports.filter((i) => !i.dynamic && (i.specifier === '@peculiar/x509' || i.specifier === 'reflect-metadata')).map((i) => `${file} imports ${i.specifier}`),
  ])
  t.deepEqual(offending, [])
  // It is loaded when needed: by a dynamic import from start.
  t.true(importsOf('cli/start.ts').some((i) => i.file === 'certs/pki.ts' && i.dynamic))
})

test('cli/ imports no policy module but the registry (policies/index.ts) and the contract (policies/types.ts)', (t) => {
  const offending = sourceFiles(['cli'], { tests: true }).flatMap((file) => importsOf(file)
    .filter((i) => i.file?.startsWith('policies/') && i.file !== 'policies/index.ts' && i.file !== 'policies/types.ts')
    .map((i) => `${file} imports ${i.file}`))
  t.deepEqual(offending, [])
})

test('gateway/ imports no policy module but the registry (policies/index.ts) and the contract (policies/types.ts)', (t) => {
  // The core asks the registry (credential headers, lint rules, files, admin routes, commands); tests under gateway/ too.
  const offending = sourceFiles(['gateway'], { tests: true }).flatMap((file) => importsOf(file)
    .filter((i) => i.file?.startsWith('policies/') && i.file !== 'policies/index.ts' && i.file !== 'policies/types.ts')
    .map((i) => `${file} imports ${i.file}`))
  t.deepEqual(offending, [])
  t.true(importsOf('gateway/generation.ts').some((i) => i.file === 'policies/index.ts'), 'the walker sees gateway/ importing the registry')
})

test('gateway/, policies/ and certs/ do not depend on cli/ beyond its leaf module cli/command.ts', (t) => {
  const offending = sourceFiles(['gateway', 'policies', 'certs']).flatMap((file) => importsOf(file)
    .filter((i) => i.file?.startsWith('cli/') && i.file !== 'cli/command.ts')
    .map((i) => `${file} imports ${i.file}`))
  t.deepEqual(offending, [])
  t.deepEqual(importsOf('cli/command.ts').filter((i) => !i.specifier.startsWith('node:')), [], 'cli/command.ts imports nothing of the project')
})
