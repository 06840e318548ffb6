/**
 * Latency percentiles at 10 µs resolution (autocannon's, h2load's and the gRPC load generator's answer times):
 * p50s around 1-2 ms need finer buckets than whole milliseconds.
 */
import type { LoadResult } from '../load.js'

const BUCKET_US = 10
const BUCKETS = 200_000 // 2 s; slower answers land in the last bucket (max keeps the truth)

export class LatencyHistogram {
  readonly #buckets = new Uint32Array(BUCKETS)
  #count = 0
  #sumMs = 0
  #maxMs = 0

  record (ms: number): void {
    this.#buckets[Math.min(BUCKETS - 1, Math.floor(ms * 1000 / BUCKET_US))]!++
    this.#count++
    this.#sumMs += ms
    if (ms > this.#maxMs) this.#maxMs = ms
  }

  get count (): number { return this.#count }

  percentile (p: number): number {
    if (this.#count === 0) return 0
    const rank = Math.ceil(this.#count * p)
    let seen = 0
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.#buckets[i]!
      if (seen >= rank) return (i + 1) * BUCKET_US / 1000
    }
    return this.#maxMs
  }

  summary (): LoadResult['latencyMs'] {
    return {
      p50: this.percentile(0.5),
      p90: this.percentile(0.9),
      p99: this.percentile(0.99),
      max: this.#maxMs,
      mean: this.#count === 0 ? 0 : this.#sumMs / this.#count,
    }
  }
}
