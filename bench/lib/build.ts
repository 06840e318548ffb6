/**
 * Compiles the gateway and the benchmark's child processes to plain JavaScript in bench/.build/ with esbuild
 * (the TypeScript transform tsx uses, minus tsx's `keepNames` wrappers, which add a call per closure created).
 * Children then run as `node bench/.build/bench/X.js`, as close to the published `dist/` build as a type-strip
 * gets, and without depending on a fresh `npm run build`. Takes well under a second.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { ROOT_DIR } from './procs.js'

export const BUILD_DIR = join(ROOT_DIR, 'bench', '.build')

const SOURCES = ['gateway', 'policies', 'certs', 'cli', 'bench']

function sources (dir: string, out: string[] = []): string[] {
  for (const entry of readdirSync(dir)) {
    if (entry === 'node_modules' || entry === '.build' || entry === 'results') continue
    const path = join(dir, entry)
    if (statSync(path).isDirectory()) sources(path, out)
    else if (entry.endsWith('.ts') && !entry.endsWith('.test.ts') && !entry.endsWith('.d.ts')) out.push(path)
  }
  return out
}

/**
 * Returns the build folder, or undefined when esbuild cannot be loaded (children then run through tsx).
 * `overlay`: a folder whose files (same relative paths, e.g. `gateway/handler.ts`) replace the repository's, to
 * compare two versions of the hot path in one run (`--compare`). A folder that is a whole checkout (it has a
 * package.json) is built instead of the repository: versions whose files moved can be compared too
 * (`git worktree add /tmp/old REV`, then `--compare /tmp/old`).
 */
export async function buildForBench (outDir = BUILD_DIR, overlay?: string): Promise<string | undefined> {
  let esbuild: typeof import('esbuild')
  try {
    esbuild = await import('esbuild')
  } catch {
    return undefined
  }
  rmSync(outDir, { recursive: true, force: true })
  const wholeTree = overlay !== undefined && existsSync(join(overlay, 'package.json'))
  const root = wholeTree ? overlay : ROOT_DIR
  const files = SOURCES.filter((dir) => existsSync(join(root, dir))).flatMap((dir) => sources(join(root, dir)))
  await Promise.all(files.map(async (file) => {
    const replacement = overlay && !wholeTree ? join(overlay, relative(ROOT_DIR, file)) : undefined
    const source = replacement && existsSync(replacement) ? readFileSync(replacement, 'utf8') : readFileSync(file, 'utf8')
    const { code } = await esbuild.transform(source, {
      loader: 'ts', format: 'esm', target: 'node20', platform: 'node', sourcefile: file,
    } as import('esbuild').TransformOptions)
    const target = join(outDir, relative(root, file)).replace(/\.ts$/, '.js')
    mkdirSync(dirname(target), { recursive: true })
    writeFileSync(target, code)
  }))
  // Node reads "type": "module" from the nearest package.json: the build is ESM.
  writeFileSync(join(outDir, 'package.json'), '{ "type": "module" }\n')
  return outDir
}
