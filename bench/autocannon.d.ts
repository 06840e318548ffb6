// The few parts of autocannon 9's API the benchmark uses (the package ships no types).
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events'

  interface Request {
    method?: string
    path?: string
    headers?: Record<string, string>
    body?: string | Buffer
    setupRequest? (request: { method: string, path: string, headers: Record<string, string>, body?: string | Buffer }, context: Record<string, unknown>): unknown
  }

  interface Options {
    url: string
    connections?: number
    pipelining?: number
    duration?: number
    timeout?: number
    method?: string
    headers?: Record<string, string>
    body?: string | Buffer
    requests?: Request[]
    tlsOptions?: Record<string, unknown>
    servername?: string
  }

  interface Result {
    duration: number
    errors: number
    timeouts: number
    non2xx: number
    requests: { total: number, average: number }
    latency: { p50: number, p99: number }
  }

  type Instance = EventEmitter & PromiseLike<Result> & { stop (): void }

  function autocannon (options: Options): Instance
  export default autocannon
}
