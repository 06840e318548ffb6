/**
 * A CI-sized soak: bench/soak.ts for 25 s (the full one is `node --import tsx bench/soak.ts`, 10 minutes, or
 * `--duration 60`; see SECURITY.md). The gateway runs in a child process under a mixed load (public, good key, bad
 * keys, 404, 400); after the warm-up its RSS must not grow more than 10%, its open handles must not keep growing,
 * and every request must get the answer its kind calls for.
 */
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import test from 'ava'
import type { Summary } from '../../bench/soak.js'

const SOAK = fileURLToPath(new URL('../../bench/soak.ts', import.meta.url))

test('25 s of mixed load: RSS flat after warm-up, no handle growth, every answer as expected', async (t) => {
  t.timeout(120_000)
  const { code, stdout, stderr } = await new Promise<{ code: number, stdout: string, stderr: string }>((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', SOAK, '--duration', '25', '--interval', '2', '--warmup', '7', '--concurrency', '8', '--json'],
      { timeout: 110_000, maxBuffer: 16 * 1024 * 1024 },
      (error, out, err) => resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout: out, stderr: err }))
  })
  const line = stdout.trim().split('\n').pop() ?? ''
  let summary: Summary
  try {
    summary = JSON.parse(line) as Summary
  } catch {
    t.fail(`no JSON summary (exit ${code}):\n${stdout.slice(-2000)}\n${stderr.slice(-2000)}`)
    return
  }
  t.log(`${summary.requests} requests (${summary.requestsPerSecond}/s); RSS ${summary.rss.baseMB} -> ${summary.rss.endMB} MB (${summary.rss.growthPct}%); ` +
    `heap ${summary.heapUsed.baseMB} -> ${summary.heapUsed.endMB} MB; handles ${summary.handles.base} -> ${summary.handles.end}; loop p99 max ${summary.loopDelay.p99MaxMs} ms`)
  t.deepEqual(summary.failures, [])
  t.is(code, 0)
  t.true(summary.rss.growthPct <= 10, `RSS growth ${summary.rss.growthPct}%`)
  t.false(summary.handles.growing)
  t.is(summary.unexpected, 0, summary.unexpectedExamples.join('; '))
  t.true(summary.samples.length >= 8, `${summary.samples.length} samples`)
  t.true(summary.requests > 1000, `${summary.requests} requests`)
  // Every kind of the mix was answered: 200, 400, 401 and 404 all occur.
  for (const status of ['200', '400', '401', '404']) t.true((summary.statuses[status] ?? 0) > 0, `no ${status} in ${JSON.stringify(summary.statuses)}`)
})
