/**
 * The gRPC rows' load generator (issue 17), in its own process like load.ts: one @grpc/grpc-js channel (one HTTP/2
 * connection), `concurrency` unary calls in flight, each loop starting its next call when the last one answered,
 * until the duration is over. Calls are never cancelled: once the time is up no new call starts, the ones in flight
 * finish, and only then is the channel closed (a client reset while the gateway forwards a call is a known gateway
 * bug, being fixed separately; the benchmark measures throughput, not that path).
 *
 * A child of bench/run.ts: receives one job at a time over IPC and answers with the figures (a LoadResult, with
 * gRPC status names in `statusCodes`, `ok` the calls that ended OK and `non2xx` those that ended with another status).
 */
import * as grpc from '@grpc/grpc-js'
import type { LoadResult } from './load.js'
import { answerJobs } from './lib/job-child.js'
import { LatencyHistogram } from './lib/latency.js'

export interface GrpcJob {
  /** `http://host:port/package.Service/Method` (h2c). */
  readonly url: string
  /** Metadata sent with every call (the credentials). */
  readonly headers?: Record<string, string>
  readonly concurrency: number
  readonly durationSec: number
}

const REQUEST = Buffer.from('{"item":1,"sku":"SKU-000001"}')
const raw = (bytes: Buffer): Buffer => bytes

export async function runGrpcLoad (job: GrpcJob): Promise<LoadResult> {
  const target = new URL(job.url)
  const client = new grpc.Client(target.host, grpc.credentials.createInsecure())
  try {
    await connected(client, 10_000)
    const metadata = new grpc.Metadata()
    for (const [name, value] of Object.entries(job.headers ?? {})) metadata.set(name, value)
    const histogram = new LatencyHistogram()
    const statusCodes: Record<string, number> = {}
    const call = () => new Promise<void>((resolve) => {
      const t0 = performance.now()
      client.makeUnaryRequest(target.pathname, raw, raw, REQUEST, metadata, {}, (error: grpc.ServiceError | null) => {
        histogram.record(performance.now() - t0)
        const status = grpc.status[error?.code ?? grpc.status.OK]
        statusCodes[status] = (statusCodes[status] ?? 0) + 1
        resolve()
      })
    })
    const started = performance.now()
    const deadline = started + job.durationSec * 1000
    const loop = async () => { while (performance.now() < deadline) await call() }
    // Every loop ends after its last call answered: nothing is in flight when the channel closes.
    await Promise.all(Array.from({ length: job.concurrency }, loop))
    const durationSec = (performance.now() - started) / 1000
    const ok = statusCodes.OK ?? 0
    return {
      requests: histogram.count,
      durationSec,
      rps: histogram.count / durationSec,
      ok,
      non2xx: histogram.count - ok,
      errors: 0,
      timeouts: 0,
      statusCodes,
      latencyMs: histogram.summary(),
    }
  } finally {
    client.close()
  }
}

function connected (client: grpc.Client, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => client.waitForReady(Date.now() + timeoutMs, (error) => error ? reject(error) : resolve()))
}

answerJobs(runGrpcLoad)
