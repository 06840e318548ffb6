/**
 * Timing helpers of the micro-benchmarks. Synchronous functions: best of 7 rounds after a warm-up (the machine
 * is shared, the best round is the least disturbed one). Asynchronous ones: calls per second with a fixed number
 * in flight, best of 5 rounds.
 */

export interface MicroResult { readonly label: string, readonly nsPerOp: number, readonly opsPerSec: number }

export const results: MicroResult[] = []

function report (label: string, nsPerOp: number): void {
  results.push({ label, nsPerOp, opsPerSec: 1e9 / nsPerOp })
  const per = nsPerOp >= 10_000 ? `${(nsPerOp / 1000).toFixed(1).padStart(7)} µs/op` : `${nsPerOp.toFixed(1).padStart(7)} ns/op`
  console.log(`${label.padEnd(64)} ${per} ${Math.round(1e9 / nsPerOp).toLocaleString('en-US').padStart(12)} op/s`)
}

let sink = 0

/** `fn` n times per round. Its result is kept alive (no dead-code elimination). */
export function bench (label: string, n: number, fn: (i: number) => unknown): void {
  for (let i = 0; i < Math.min(n, 100_000); i++) if (fn(i)) sink++
  let best = Infinity
  for (let round = 0; round < 7; round++) {
    const start = process.hrtime.bigint()
    for (let i = 0; i < n; i++) if (fn(i)) sink++
    best = Math.min(best, Number(process.hrtime.bigint() - start) / n)
  }
  report(label, best)
}

/** `total` calls of `fn` per round, `inFlight` at a time. */
export async function benchAsync (label: string, total: number, inFlight: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  const round = async () => {
    let next = 0
    const worker = async () => {
      while (next < total) {
        const i = next++
        if (await fn(i)) sink++
      }
    }
    const start = process.hrtime.bigint()
    await Promise.all(Array.from({ length: inFlight }, worker))
    return Number(process.hrtime.bigint() - start) / total
  }
  await round()
  let best = Infinity
  for (let r = 0; r < 5; r++) best = Math.min(best, await round())
  report(label, best)
}

export function section (title: string): void {
  console.log(`\n## ${title}${sink < 0 ? '!' : ''}`)
}
