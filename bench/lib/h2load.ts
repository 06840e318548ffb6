/**
 * h2load (Debian `nghttp2-client`) as the load generator of the HTTP/2 rows (issue 17): one process per measurement,
 * `-c` connections with `-m` concurrent streams each, `--warm-up-time` then `-D` seconds. The CPU window of the
 * process under test follows h2load's own phases (it prints "Main benchmark duration is started/over" as they
 * happen), so the warm-up is outside it, as with the autocannon rows' separate warm-up run.
 *
 * h2load prints min/max/mean/sd of the request time, not percentiles: p50/p99 are computed from `--log-file` (one
 * line per request, ordered by end of response with one thread; the warm-up's requests are in it too, so only the
 * last `done` lines are read).
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { LoadResult } from '../load.js'
import { LatencyHistogram } from './latency.js'
import { spawnTracked } from './procs.js'

export interface H2loadJob {
  readonly url: string
  readonly headers?: Record<string, string>
  readonly connections: number
  /** Concurrent streams per connection (`-m`). */
  readonly streams: number
  readonly warmupSec: number
  readonly durationSec: number
}

/** Called when h2load's measured phase starts and ends: the caller reads the CPU of the process under test. */
export interface MeasureWindow { start (): void, end (): void }

export const H2LOAD_BIN = process.env.H2LOAD_BIN ?? 'h2load'

/** h2load's version, or undefined when it is not installed (the h2 rows are then skipped). */
export function findH2load (): string | undefined {
  const result = spawnSync(H2LOAD_BIN, ['--version'], { encoding: 'utf8' })
  return result.status === 0 ? /nghttp2\/([\d.]+)/.exec(result.stdout)?.[1] ?? 'unknown' : undefined
}

export async function runH2load (job: H2loadJob, options: { cpus?: string | undefined, window?: MeasureWindow } = {}): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), 'authgate-h2load-'))
  const logFile = join(dir, 'requests.tsv')
  try {
    const output = await spawnH2load(h2loadArgs(job, logFile), options, (job.warmupSec + job.durationSec + 30) * 1000)
    const summary = parseH2loadOutput(output)
    return { ...summary, durationSec: job.durationSec, latencyMs: latencyFromLog(logFile, summary.requests) }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

function h2loadArgs (job: H2loadJob, logFile: string): string[] {
  const headers = Object.entries(job.headers ?? {}).flatMap(([name, value]) => ['-H', `${name}: ${value}`])
  return [
    '-c', String(job.connections), '-m', String(job.streams), '-t', '1',
    ...(job.warmupSec > 0 ? ['--warm-up-time', `${job.warmupSec}s`] : []), '-D', `${job.durationSec}s`,
    '--log-file', logFile, ...headers, job.url,
  ]
}

/** Runs h2load to its end; calls the window's start and end as h2load announces its measured phase. */
function spawnH2load (args: string[], options: { cpus?: string | undefined, window?: MeasureWindow }, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawnTracked(H2LOAD_BIN, args, { cpus: options.cpus, stdout: 'pipe' })
    let output = ''
    let started = false
    let ended = false
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      if (!started && output.includes('Main benchmark duration is started')) { started = true; options.window?.start() }
      if (started && !ended && output.includes('Main benchmark duration is over')) { ended = true; options.window?.end() }
    })
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      if (!ended) options.window?.end()
      if (code === 0) resolve(output)
      else reject(new Error(`h2load exited (${signal ?? code})\n${output.slice(-2000)}\n${child.stderrText()}`))
    })
  })
}

type Summary = Omit<LoadResult, 'latencyMs' | 'durationSec'>

/**
 * The figures of h2load's summary: `finished in …, N req/s`, `requests: … N done, … N failed, … N timeout`,
 * `status codes: N 2xx, N 3xx, N 4xx, N 5xx`. h2load's `failed` counts the 4xx and 5xx answers as well as the requests
 * that got no answer (errored, timed out): errors are the latter.
 */
export function parseH2loadOutput (text: string): Summary {
  const number = (pattern: RegExp) => {
    const match = pattern.exec(text)
    if (!match) throw new Error(`h2load output without ${pattern.source}:\n${text.slice(-2000)}`)
    return Number(match[1])
  }
  const statusCodes: Record<string, number> = {}
  for (const klass of ['2xx', '3xx', '4xx', '5xx']) statusCodes[klass] = number(new RegExp(`status codes:.*?(\\d+) ${klass}`))
  const requests = number(/requests: .*?(\d+) done/)
  return {
    requests,
    rps: number(/finished in [\d.]+\w+, ([\d.]+) req\/s/),
    ok: statusCodes['2xx']!,
    non2xx: statusCodes['3xx']! + statusCodes['4xx']! + statusCodes['5xx']!,
    errors: Math.max(0, number(/requests: .*?(\d+) failed/) - statusCodes['4xx']! - statusCodes['5xx']!),
    timeouts: 0,
    statusCodes,
  }
}

/** Percentiles of the last `count` requests of the log (the measured phase's): column 3 is µs to the end of the answer. */
function latencyFromLog (logFile: string, count: number): LoadResult['latencyMs'] {
  const lines = readFileSync(logFile, 'utf8').trimEnd().split('\n')
  const histogram = new LatencyHistogram()
  for (const line of lines.slice(Math.max(0, lines.length - count))) {
    const micros = Number(line.split('\t')[2])
    if (Number.isFinite(micros)) histogram.record(micros / 1000)
  }
  return histogram.summary()
}
