/**
 * Shared by the fuzz tests: the seed (FUZZ_SEED or a fixed default, printed on every run so a failure can be
 * replayed), a fast-check runner that fails the ava test with fast-check's report, a small seeded PRNG for the
 * request-level fuzzer, a raw HTTP/1.1 exchange over a socket that reads every response the server writes, and a
 * node:http upstream that records what reached it.
 */
import http from 'node:http'
import net, { type AddressInfo } from 'node:net'
import fc from 'fast-check'
import type { ExecutionContext } from 'ava'

/** The default seed is fixed so a run is reproducible; FUZZ_SEED=<int> (or FUZZ_SEED=random) explores further. */
export const DEFAULT_SEED = 20240917

let randomSeed: number | undefined

export function fuzzSeed (): number {
  const text = process.env.FUZZ_SEED
  if (text === undefined || text === '') return DEFAULT_SEED
  // One random seed per process, so that every report of this file names the same one.
  if (text === 'random') return (randomSeed ??= (Date.now() ^ (Math.random() * 0x7fffffff)) & 0x7fffffff)
  const seed = Number(text)
  if (!Number.isInteger(seed)) throw new RangeError(`FUZZ_SEED must be an integer or "random", not ${JSON.stringify(text)}`)
  return seed | 0
}

/** Runs a fast-check property with the fuzz seed; on failure the test fails with the seed, path and counterexample. */
export async function checkProperty<Ts extends [unknown, ...unknown[]]> (
  t: ExecutionContext,
  property: fc.IProperty<Ts> | fc.IAsyncProperty<Ts>,
  params: { numRuns?: number, seedOffset?: number } = {},
): Promise<void> {
  const seed = (fuzzSeed() + (params.seedOffset ?? 0)) | 0
  const details = await fc.check(property as fc.IAsyncProperty<Ts>, { seed, numRuns: params.numRuns ?? 200 })
  if (details.failed) {
    const error = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance)
    t.fail(`property failed (replay with FUZZ_SEED=${fuzzSeed()}; fast-check seed ${seed}): ${error}\n${fc.defaultReportMessage(details) ?? ''}`)
  } else {
    t.log(`fast-check seed ${seed}, ${details.numRuns} runs`)
    t.true(details.numRuns > 0)
  }
}

/** mulberry32: small, fast, and the same sequence for the same seed on every platform. */
export class Random {
  #state: number
  constructor (seed: number) { this.#state = seed >>> 0 }
  next (): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0)
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  int (maxExclusive: number): number { return Math.floor(this.next() * maxExclusive) }
  chance (p: number): boolean { return this.next() < p }
  pick<T> (items: readonly T[]): T { return items[this.int(items.length)]! }
  /** Printable ASCII without space and without the characters given. */
  token (length: number, alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-'): string {
    let out = ''
    for (let i = 0; i < length; i++) out += alphabet[this.int(alphabet.length)]
    return out
  }

  bytes (length: number): Buffer {
    const out = Buffer.alloc(length)
    for (let i = 0; i < length; i++) out[i] = this.int(256)
    return out
  }
}

export interface ParsedResponse {
  status: number
  headers: Record<string, string[]>
  body: Buffer
}

export interface Exchange {
  /** Every complete response the server wrote, in order. */
  responses: ParsedResponse[]
  /** The server ended the connection (rather than the client stopping once it had the responses it expected). */
  closed: boolean
  /** The client gave up after `timeoutMs` with the connection still open. */
  timedOut: boolean
  /** Bytes that did not form a complete response (a response cut short, or garbage). */
  trailing: number
  elapsedMs: number
}

export interface ExchangeOptions {
  /** Give up (and destroy the socket) after this long. */
  timeoutMs?: number
  /**
   * Close the write side this many ms after sending (the server sees EOF; Node then drops requests still in
   * progress, so use it only for requests that can never be complete). Default: never.
   */
  endWriteAfterMs?: number
  /** Stop reading once this many final (non-1xx) responses arrived. Default 1: closes right after the first answer. */
  expectResponses?: number
  /** The request is a HEAD: its response has no body whatever Content-Length says. */
  head?: boolean
}

/** Writes `data` exactly as given on a fresh loopback connection and collects every response until close. */
export function exchange (port: number, data: Buffer | string, options: ExchangeOptions = {}): Promise<Exchange> {
  const timeoutMs = options.timeoutMs ?? 10_000
  const started = performance.now()
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true })
    let buffer = Buffer.alloc(0)
    const responses: ParsedResponse[] = []
    let settled = false
    const finish = (closed: boolean, timedOut: boolean) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      resolve({ responses, closed, timedOut, trailing: buffer.length, elapsedMs: performance.now() - started })
    }
    const timer = setTimeout(() => finish(false, true), timeoutMs)
    socket.on('error', () => {}) // a reset after an early answer is fine: what was read counts
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk])
      try {
        for (;;) {
          const parsed = parseOne(buffer, options.head === true)
          if (!parsed) break
          responses.push(parsed.response)
          buffer = buffer.subarray(parsed.used)
        }
      } catch {
        // not HTTP: left in `trailing`
      }
      if (responses.filter((r) => r.status >= 200).length >= (options.expectResponses ?? 1)) finish(false, false)
    })
    socket.on('end', () => {
      // Read to EOF: a response without a length ends with the connection.
      const rest = parseToEof(buffer)
      if (rest) { responses.push(rest); buffer = Buffer.alloc(0) }
      finish(true, false)
    })
    socket.on('close', () => finish(true, false))
    socket.write(data, () => {
      if (options.endWriteAfterMs !== undefined) setTimeout(() => { if (!settled) socket.end() }, options.endWriteAfterMs)
    })
  })
}

const HEAD_END = Buffer.from('\r\n\r\n')

function parseHead (buffer: Buffer): { status: number, headers: Record<string, string[]>, bodyAt: number } | undefined {
  const end = buffer.indexOf(HEAD_END)
  if (end === -1) return undefined
  const lines = buffer.subarray(0, end).toString('latin1').split('\r\n')
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')
  if (!match) throw new Error(`not an HTTP response: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`)
  const headers: Record<string, string[]> = {}
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':')
    if (colon <= 0) continue
    ;(headers[line.slice(0, colon).trim().toLowerCase()] ??= []).push(line.slice(colon + 1).trim())
  }
  return { status: Number(match[1]), headers, bodyAt: end + 4 }
}

/** One complete response from the start of `buffer` (Content-Length, chunked or no body), or undefined. */
function parseOne (buffer: Buffer, isHead: boolean): { response: ParsedResponse, used: number } | undefined {
  const head = parseHead(buffer)
  if (!head) return undefined
  const { status, headers, bodyAt } = head
  if (status === 204 || status === 304 || (status >= 100 && status < 200) || (isHead && status >= 200)) {
    return { response: { status, headers, body: Buffer.alloc(0) }, used: bodyAt }
  }
  if (headers['transfer-encoding']?.some((v) => /chunked/i.test(v))) {
    const chunks: Buffer[] = []
    let at = bodyAt
    for (;;) {
      const eol = buffer.indexOf('\r\n', at)
      if (eol === -1) return undefined
      const size = parseInt(buffer.subarray(at, eol).toString('latin1'), 16)
      if (Number.isNaN(size)) throw new Error('bad chunk size in response')
      if (size === 0) {
        const trailerEnd = buffer.indexOf(HEAD_END, eol)
        const plainEnd = buffer.subarray(eol + 2, eol + 4).toString('latin1') === '\r\n' ? eol + 4 : -1
        const used = plainEnd !== -1 ? plainEnd : trailerEnd !== -1 ? trailerEnd + 4 : -1
        if (used === -1) return undefined
        return { response: { status, headers, body: Buffer.concat(chunks) }, used }
      }
      if (buffer.length < eol + 2 + size + 2) return undefined
      chunks.push(buffer.subarray(eol + 2, eol + 2 + size))
      at = eol + 2 + size + 2
    }
  }
  const length = headers['content-length']?.[0]
  if (length === undefined) return undefined // delimited by close
  const n = Number(length)
  if (buffer.length < bodyAt + n) return undefined
  return { response: { status, headers, body: buffer.subarray(bodyAt, bodyAt + n) }, used: bodyAt + n }
}

function parseToEof (buffer: Buffer): ParsedResponse | undefined {
  if (buffer.length === 0) return undefined
  try {
    const head = parseHead(buffer)
    if (!head) return undefined
    if (head.headers['content-length'] !== undefined || head.headers['transfer-encoding'] !== undefined) return undefined
    return { status: head.status, headers: head.headers, body: buffer.subarray(head.bodyAt) }
  } catch {
    return undefined
  }
}

export interface Seen {
  method: string
  url: string
  headers: http.IncomingHttpHeaders
  rawHeaders: string[]
  bodyBytes: number
}

export interface Recorder {
  url: string
  port: number
  seen: Seen[]
  server: http.Server
  close (): Promise<void>
}

/** A node:http upstream on 127.0.0.1:0 that records every request head and answers 200 once the body is read. */
export async function recordingUpstream (answer?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean): Promise<Recorder> {
  const seen: Seen[] = []
  const server = http.createServer((req, res) => {
    const entry: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes: 0 }
    seen.push(entry)
    if (answer?.(req, res)) return
    req.on('data', (chunk: Buffer) => { entry.bodyBytes += chunk.length })
    req.on('error', () => {})
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' })
      res.end('ok')
    })
  })
  server.keepAliveTimeout = 10_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    server,
    async close () {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

/** The port of a listener URL such as http://127.0.0.1:PORT. */
export function portOf (url: string): number {
  return Number(new URL(url).port)
}

export function delay (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
