/**
 * The import graph of the TypeScript sources, read statically: `import ... from`, `export ... from`, `import '...'`
 * and `import('...')` with a literal specifier. `import type` and `export type` are left out (erased at build);
 * `import { type A } from` is kept (verbatimModuleSyntax keeps the import).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { ROOT } from './child.js'

export interface Import {
  /** As written: './x.js', 'node:fs', '@peculiar/x509'. */
  readonly specifier: string
  /** import('...'): loaded when that code runs, not with the module. */
  readonly dynamic: boolean
  /** The project file it names (relative to the root, .ts), when it is one of ours. */
  readonly file?: string
}

const STATIC = /^[ \t]*(?:import|export)[ \t]+(?!type[ \t])(?:[\w$*{},\s]+?[ \t\n]+)?from[ \t]*['"]([^'"]+)['"]/gm
const BARE = /^[ \t]*import[ \t]*['"]([^'"]+)['"]/gm
const DYNAMIC = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g

/** The imports of one source file (path relative to the root). */
export function importsOf (file: string): Import[] {
  const text = readFileSync(join(ROOT, file), 'utf8')
  const found: Import[] = []
  const add = (specifier: string, dynamic: boolean) => {
    const target = resolveSpecifier(file, specifier)
    found.push({ specifier, dynamic, ...(target !== undefined ? { file: target } : {}) })
  }
  for (const match of text.matchAll(STATIC)) add(match[1]!, false)
  for (const match of text.matchAll(BARE)) add(match[1]!, false)
  for (const match of text.matchAll(DYNAMIC)) {
    // Not in a comment: the line the call is on does not start with // or *.
    const line = text.slice(text.lastIndexOf('\n', match.index) + 1, match.index)
    if (/^\s*(\/\/|\*|\/\*)/.test(line)) continue
    add(match[1]!, true)
  }
  return found
}

function resolveSpecifier (from: string, specifier: string): string | undefined {
  if (!specifier.startsWith('.')) return undefined
  const absolute = resolve(ROOT, dirname(from), specifier)
  for (const candidate of [absolute.replace(/\.js$/, '.ts'), `${absolute}.ts`, join(absolute, 'index.ts')]) {
    if (existsSync(candidate)) return relative(ROOT, candidate)
  }
  return undefined
}

/** Every .ts source under the folders (tests and fixtures too unless left out). */
export function sourceFiles (folders: readonly string[], { tests = false } = {}): string[] {
  const files: string[] = []
  const walk = (dir: string) => {
    for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) {
        if (!tests && entry.name === 'fixtures') continue
        walk(path)
      } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') && (tests || !entry.name.endsWith('.test.ts'))) {
        files.push(path)
      }
    }
  }
  for (const folder of folders) walk(folder)
  return files.sort()
}

export type Graph = ReadonlyMap<string, readonly Import[]>

export function importGraph (files: readonly string[]): Graph {
  return new Map(files.map((file) => [file, importsOf(file)]))
}

/** The files reachable from `roots`, following static imports only (what loads with the module) or dynamic ones too. */
export function reachable (roots: readonly string[], { dynamic = false } = {}): Map<string, Import[]> {
  const seen = new Map<string, Import[]>()
  const visit = (file: string) => {
    if (seen.has(file)) return
    const imports = importsOf(file)
    seen.set(file, imports)
    for (const i of imports) if (i.file !== undefined && (dynamic || !i.dynamic)) visit(i.file)
  }
  for (const root of roots) visit(root)
  return seen
}

/** Each cycle as a path a -> b -> ... -> a (one per strongly connected component), following every import. */
export function findCycles (graph: Graph): string[][] {
  // Tarjan's strongly connected components.
  let next = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const onStack = new Set<string>()
  const components: string[][] = []
  const edges = (file: string) => [...new Set((graph.get(file) ?? []).flatMap((i) => i.file !== undefined && graph.has(i.file) ? [i.file] : []))]
  const connect = (file: string) => {
    index.set(file, next)
    low.set(file, next)
    next++
    stack.push(file)
    onStack.add(file)
    for (const to of edges(file)) {
      if (!index.has(to)) {
        connect(to)
        low.set(file, Math.min(low.get(file)!, low.get(to)!))
      } else if (onStack.has(to)) {
        low.set(file, Math.min(low.get(file)!, index.get(to)!))
      }
    }
    if (low.get(file) === index.get(file)) {
      const component: string[] = []
      let member: string
      do {
        member = stack.pop()!
        onStack.delete(member)
        component.push(member)
      } while (member !== file)
      if (component.length > 1 || edges(file).includes(file)) components.push(component)
    }
  }
  for (const file of graph.keys()) if (!index.has(file)) connect(file)
  // One concrete cycle through each component: a shortest path back to its first member.
  return components.map((component) => {
    const members = new Set(component)
    const start = component.sort()[0]!
    const previous = new Map<string, string>()
    const queue = [start]
    while (queue.length > 0) {
      const file = queue.shift()!
      for (const to of edges(file).filter((f) => members.has(f))) {
        if (to === start) {
          const path = [file]
          while (path[0] !== start) path.unshift(previous.get(path[0]!)!)
          return [...path, start]
        }
        if (!previous.has(to)) { previous.set(to, file); queue.push(to) }
      }
    }
    return [...component, start]
  })
}
