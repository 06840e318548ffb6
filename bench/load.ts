/**
 * The load generator, in its own process so that it never shares the gateway's event loop. A child of
 * bench/run.ts: it receives one job at a time over IPC, runs autocannon, and answers with the figures.
 *
 * Latency is recorded here from autocannon's per-response times (float milliseconds) into 10 µs buckets:
 * autocannon's own histogram keeps whole milliseconds, too coarse for p50s around 1-2 ms.
 */
import { createHash, createHmac } from 'node:crypto'
import autocannon from 'autocannon'

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

const BUCKET_US = 10
const BUCKETS = 200_000 // 2 s; slower answers land in the last bucket (max keeps the truth)

export async function runLoad (job: LoadJob): Promise<LoadResult> {
  const histogram = new Uint32Array(BUCKETS)
  let count = 0
  let sum = 0
  let max = 0
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
    const bucket = Math.min(BUCKETS - 1, Math.floor(responseTime * 1000 / BUCKET_US))
    histogram[bucket]!++
    count++
    sum += responseTime
    if (responseTime > max) max = responseTime
  })
  const result = await instance

  const percentile = (p: number): number => {
    if (count === 0) return 0
    const rank = Math.ceil(count * p)
    let seen = 0
    for (let i = 0; i < BUCKETS; i++) {
      seen += histogram[i]!
      if (seen >= rank) return (i + 1) * BUCKET_US / 1000
    }
    return max
  }
  const ok = Object.entries(statusCodes).filter(([code]) => code.startsWith('2')).reduce((n, [, c]) => n + c, 0)
  const durationSec = result.duration
  return {
    requests: count,
    durationSec,
    rps: count / durationSec,
    ok,
    non2xx: count - ok,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes,
    latencyMs: { p50: percentile(0.5), p90: percentile(0.9), p99: percentile(0.99), max, mean: count === 0 ? 0 : sum / count },
  }
}

if (process.send) {
  process.on('message', (job: LoadJob) => {
    runLoad(job).then(
      (result) => process.send!({ result }),
      (error: Error) => process.send!({ error: error.message }),
    )
  })
  process.on('disconnect', () => process.exit(0))
  process.send({ ready: true })
}
