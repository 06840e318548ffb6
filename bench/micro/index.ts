/**
 * Runs every micro-benchmark, each in its own process (a clean heap and JIT state per file), prints what they
 * print and keeps it in bench/results/micro-<date>-<machine>.txt.
 *   npm run bench -- --micro            or    node --import tsx bench/micro/index.ts [name...]
 */
import { spawn } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, hostname, loadavg } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const MICRO_DIR = fileURLToPath(new URL('.', import.meta.url))
const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** In the order printed. */
export const MICRO = ['router', 'headers', 'api-key', 'jwt', 'hmac', 'logging', 'request-overhead', 'rate-limit'] as const

function runOne (name: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(MICRO_DIR, `${name}.ts`)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (chunk: Buffer) => { out += chunk; process.stdout.write(chunk) })
    child.stderr.on('data', (chunk: Buffer) => { process.stderr.write(chunk) })
    child.once('error', reject)
    child.once('exit', (code) => code === 0 ? resolve(out) : reject(new Error(`bench/micro/${name}.ts exited with ${code}`)))
  })
}

export async function runMicro (names: readonly string[] = MICRO): Promise<number> {
  const header = `# micro-benchmarks: ${cpus()[0]?.model ?? 'unknown'} × ${cpus().length}, node ${process.version}, load average ${loadavg().map((n) => n.toFixed(2)).join(' ')}, ${new Date().toISOString()}\n`
  console.log(header)
  let text = header
  let failed = 0
  for (const name of names) {
    if (name === 'router') { console.log('\n## route table (bench/micro/router.ts)'); text += '\n## route table (bench/micro/router.ts)\n' }
    try {
      text += await runOne(name)
    } catch (error) {
      failed++
      console.error((error as Error).message)
    }
  }
  const dir = join(ROOT, 'bench', 'results')
  mkdirSync(dir, { recursive: true })
  const file = `micro-${new Date().toISOString().slice(0, 10)}-${hostname().toLowerCase().replace(/[^a-z0-9-]+/g, '-').slice(0, 40)}.txt`
  writeFileSync(join(dir, file), text)
  console.log(`\nwrote bench/results/${file}`)
  return failed === 0 ? 0 : 1
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const names = process.argv.slice(2)
  process.exitCode = await runMicro(names.length > 0 ? names : MICRO)
}
