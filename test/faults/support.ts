/**
 * Shared by the fault-injection tests: a closed-loop load generator that records, for every request, when it
 * started and ended and how it was answered, so a test can assert on the requests that fell entirely inside a
 * fault window; and small timing helpers.
 */
import { Agent, request } from 'undici'

export interface Sample {
  readonly label: string
  readonly path: string
  /** ms on the performance.now() clock. */
  readonly start: number
  readonly end: number
  /** 0 when the request failed without an HTTP answer (connection error). */
  readonly status: number
  readonly code: string | undefined
  readonly error: string | undefined
}

export interface LoadRequest {
  readonly label: string
  readonly url: string
  readonly method?: string
  readonly headers?: Record<string, string>
  readonly body?: string
}

export interface Load {
  readonly samples: Sample[]
  /** Stops the workers and waits for the requests in flight to settle. */
  stop (): Promise<void>
}

/**
 * `workers` loops, each sending `next()` one after the other until stopped. Every request has a client-side
 * timeout (`timeoutMs`) so a hang shows up as a sample with an error, never as a stuck test.
 */
export function startLoad (next: (worker: number, n: number) => LoadRequest, options: { workers?: number, timeoutMs?: number } = {}): Load {
  const samples: Sample[] = []
  const agent = new Agent({ keepAliveTimeout: 10_000, connections: 64 })
  const timeoutMs = options.timeoutMs ?? 10_000
  let running = true
  let n = 0
  const loop = async (worker: number) => {
    while (running) {
      const req = next(worker, n++)
      const start = performance.now()
      try {
        const res = await request(req.url, {
          method: (req.method ?? 'GET') as 'GET',
          headers: req.headers ?? {},
          ...(req.body !== undefined ? { body: req.body } : {}),
          dispatcher: agent,
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        })
        const text = await res.body.text()
        let code: string | undefined
        if (res.statusCode >= 400) {
          try { code = (JSON.parse(text) as { error?: string }).error } catch { code = undefined }
        }
        samples.push({ label: req.label, path: new URL(req.url).pathname, start, end: performance.now(), status: res.statusCode, code, error: undefined })
      } catch (error) {
        samples.push({ label: req.label, path: new URL(req.url).pathname, start, end: performance.now(), status: 0, code: undefined, error: (error as Error).message })
      }
    }
  }
  const loops = Array.from({ length: options.workers ?? 8 }, (_v, i) => loop(i))
  let stopped: Promise<void> | undefined
  return {
    samples,
    stop () {
      running = false
      stopped ??= Promise.all(loops).then(async () => { await agent.close() })
      return stopped
    },
  }
}

/** Samples that started at or after `from` and ended at or before `to` (performance.now() ms). */
export function within (samples: readonly Sample[], from: number, to: number, label?: string): Sample[] {
  return samples.filter((s) => s.start >= from && s.end <= to && (label === undefined || s.label === label))
}

/** `{ "200": 12, "503": 40 }`: for messages. */
export function histogram (samples: readonly Sample[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const s of samples) { const key = s.status === 0 ? `error:${s.error}` : String(s.status); out[key] = (out[key] ?? 0) + 1 }
  return out
}

export function delay (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
