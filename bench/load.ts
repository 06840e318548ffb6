/**
 * The load generator, in its own process so that it never shares the gateway's event loop. A child of
 * bench/run.ts: it receives one job at a time over IPC, runs autocannon, and answers with the figures.
 *
 * Latency is recorded here from autocannon's per-response times (float milliseconds) into 10 µs buckets:
 * autocannon's own histogram keeps whole milliseconds, too coarse for p50s around 1-2 ms.
 */
import { createHash, createHmac } from 'node:crypto'
import autocannon from 'autocannon'
import { answerJobs } from './lib/job-child.js'
import { LatencyHistogram } from './lib/latency.js'

export interface LoadJob {
  readonly url: string
  readonly connections: number
  readonly pipelining: number
  readonly durationSec: number
  readonly method?: string
  readonly headers?: Record<string, string>
  readonly body?: string
  /** hmac-sha256 signature per request (the gateway refuses replays: each request gets its own target). */
  readonly sign?: { readonly keyId: string, readonly secret: string }
  /** PEM strings; cert/key present a client certificate (mTLS). */
  readonly tls?: { readonly cert?: string, readonly key?: string, readonly ca?: string }
}

export interface LoadResult {
  readonly requests: number
  readonly durationSec: number
  readonly rps: number
  readonly ok: number
  readonly non2xx: number
  readonly errors: number
  readonly timeouts: number
  readonly statusCodes: Record<string, number>
  readonly latencyMs: { readonly p50: number, readonly p90: number, readonly p99: number, readonly max: number, readonly mean: number }
}

/** Request targets of signed requests are unique for the life of the process (warm-up runs included). */
let sequence = 0
const runId = Math.random().toString(36).slice(2, 8)

export async function runLoad (job: LoadJob): Promise<LoadResult> {
  const latency = new LatencyHistogram()
  const statusCodes: Record<string, number> = {}
  const target = new URL(job.url)
  const bodyHash = createHash('sha256').update(job.body ?? '').digest('hex')
  const method = job.method ?? 'GET'
  const sign = job.sign
  const request = sign
    ? {
        method,
        setupRequest (req: { path: string, headers: Record<string, string> }) {
          // A unique request target per request: the replay check sees a new signature every time.
          const path = `${target.pathname}?n=${runId}-${sequence++}`
          const timestamp = String(Math.floor(Date.now() / 1000))
          const base = `${method}\n${path}\n${timestamp}\n${bodyHash}`
          const signature = createHmac('sha256', sign.secret).update(base).digest('base64')
          req.path = path
          req.headers = { ...job.headers, 'x-key-id': sign.keyId, 'x-timestamp': timestamp, 'x-signature': signature }
          return req
        },
      }
    : undefined

  const instance = autocannon({
    url: job.url,
    connections: job.connections,
    pipelining: job.pipelining,
    duration: job.durationSec,
    method: method as 'GET',
    headers: job.headers ?? {},
    ...(job.body !== undefined ? { body: job.body } : {}),
    ...(request ? { requests: [request as never] } : {}),
    ...(job.tls ? { tlsOptions: job.tls } : {}),
    timeout: 10,
  })
  instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
    statusCodes[statusCode] = (statusCodes[statusCode] ?? 0) + 1
    latency.record(responseTime)
  })
  const result = await instance

  const ok = Object.entries(statusCodes).filter(([code]) => code.startsWith('2')).reduce((n, [, c]) => n + c, 0)
  const durationSec = result.duration
  return {
    requests: latency.count,
    durationSec,
    rps: latency.count / durationSec,
    ok,
    non2xx: latency.count - ok,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes,
    latencyMs: latency.summary(),
  }
}

answerJobs(runLoad)
