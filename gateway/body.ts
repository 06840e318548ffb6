import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import { Readable } from 'node:stream'

/** A request body passed the route's maxBodyBytes (413 payload_too_large), however it was being read. */
export class BodyTooLargeError extends Error {
  constructor (readonly limitBytes: number) { super('request body too large') }
}

/** The client went away while its body was being read. */
export class BodyAbortedError extends Error {
  constructor () { super('client aborted the request') }
}

/** The client sent nothing of its body for the route's bodyIdleTimeout while the gateway waited for it (408 request_timeout). */
export class BodyStalledError extends Error {
  constructor (readonly idleMs: number) { super('request body stalled') }
}

/** How a request body is read: the route's limits. */
export interface BodyLimits {
  readonly maxBodyBytes: number
  /** Bodies up to this size are read whole before the upstream request starts. */
  readonly bufferBodyBytes: number
  /** Longest pause in the body while it is awaited; 0: no limit. */
  readonly bodyIdleTimeoutMs: number
}

interface Collected { readonly chunks: Buffer[], readonly bytes: number, readonly ended: boolean }

/**
 * Reads `source` until it ends, or until more than `stopAfterBytes` arrived (then it is left paused, the chunks read
 * so far returned). Rejects with BodyTooLargeError past `maxBytes`, BodyStalledError after `idleMs` without data.
 */
function collect (source: Readable, maxBytes: number, idleMs: number, stopAfterBytes: number): Promise<Collected> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let total = 0
    // One timer per body, re-armed by each chunk (refresh() allocates nothing).
    const timer = idleMs > 0 ? setTimeout(() => { cleanup(); reject(new BodyStalledError(idleMs)) }, idleMs) : undefined
    const onData = (chunk: Buffer) => {
      total += chunk.length
      if (total > maxBytes) {
        cleanup()
        reject(new BodyTooLargeError(maxBytes))
        return
      }
      chunks.push(chunk)
      if (total > stopAfterBytes) {
        cleanup()
        source.pause()
        resolve({ chunks, bytes: total, ended: false })
        return
      }
      timer?.refresh()
    }
    const onEnd = () => { cleanup(); resolve({ chunks, bytes: total, ended: true }) }
    const onError = (error: Error) => { cleanup(); reject(error) }
    const onAborted = () => { cleanup(); reject(new BodyAbortedError()) }
    const cleanup = () => {
      clearTimeout(timer)
      source.off('data', onData); source.off('end', onEnd); source.off('error', onError); source.off('aborted', onAborted)
    }
    source.on('data', onData)
    source.once('end', onEnd)
    source.once('error', onError)
    source.once('aborted', onAborted)
  })
}

function concat (collected: Collected): Buffer {
  return collected.chunks.length === 1 ? collected.chunks[0]! : Buffer.concat(collected.chunks, collected.bytes)
}

/** Reads a whole body into one Buffer, refusing it as soon as it passes `maxBytes` or stalls for `idleMs` (0: never). */
export async function readBody (source: Readable, maxBytes: number, idleMs = 0): Promise<Buffer> {
  return concat(await collect(source, maxBytes, idleMs, Infinity))
}

/**
 * The body to forward. One that declares a Content-Length up to `bufferBodyBytes`, or a chunked one that ends
 * within it, is read whole first (a Buffer): the upstream connection is taken only once it is here, so a slow client
 * holds none. A larger one is streamed (what was buffered of it first), cut when it stalls or passes maxBodyBytes.
 */
export function forwardBody (req: IncomingMessage, limits: BodyLimits): Promise<Buffer | Readable> {
  return forwardBodyOf(req, req.headers, limits)
}

/** forwardBody() for a body that is not its request (an HTTP/2 stream, whose headers came apart). */
export async function forwardBodyOf (source: Readable, headers: IncomingHttpHeaders, limits: BodyLimits): Promise<Buffer | Readable> {
  const { maxBodyBytes, bufferBodyBytes, bodyIdleTimeoutMs } = limits
  const length = headers['content-length']
  if (headers['transfer-encoding'] === undefined && length !== undefined && Number(length) > bufferBodyBytes) {
    return new StreamedBody(source, [], 0, maxBodyBytes, bodyIdleTimeoutMs)
  }
  const collected = await collect(source, maxBodyBytes, bodyIdleTimeoutMs, bufferBodyBytes)
  if (collected.ended) return concat(collected)
  return new StreamedBody(source, collected.chunks, collected.bytes, maxBodyBytes, bodyIdleTimeoutMs)
}

/**
 * A body streamed from its first byte, never buffered (gRPC streams: a message may wait for the answer to the one
 * before), cut past `maxBytes`; `idleMs` 0: no idle limit.
 */
export function streamBody (source: Readable, maxBytes: number, idleMs: number): Readable {
  return new StreamedBody(source, [], 0, maxBytes, idleMs)
}

function destroyWith (body: Readable, error: Error): void { body.destroy(error) }

function ignoreError (): void {}

/**
 * The rest of a body as undici reads it: the buffered prefix, then the client's stream. Counted and cut with
 * BodyTooLargeError past maxBytes; cut with BodyStalledError when the client sends nothing for `idleMs` while the
 * upstream side is waiting for more (a pause because the upstream reads slowly is not the client's).
 */
class StreamedBody extends Readable {
  readonly #source: Readable
  readonly #maxBytes: number
  readonly #timer: NodeJS.Timeout | undefined
  #total: number
  #waiting = false
  readonly #onData = (chunk: Buffer) => {
    this.#total += chunk.length
    if (this.#total > this.#maxBytes) { this.#fail(new BodyTooLargeError(this.#maxBytes)); return }
    this.#timer?.refresh()
    if (!this.push(chunk)) { this.#waiting = false; this.#source.pause() }
  }

  readonly #onEnd = () => { this.#stop(); this.push(null) }
  readonly #onError = (error: Error) => { this.#fail(error) }
  readonly #onAborted = () => { this.#fail(new BodyAbortedError()) }

  constructor (source: Readable, prefix: readonly Buffer[], prefixBytes: number, maxBytes: number, idleMs: number) {
    super()
    this.#source = source
    this.#maxBytes = maxBytes
    this.#total = prefixBytes
    for (const chunk of prefix) this.push(chunk)
    this.#timer = idleMs > 0
      ? setTimeout(() => { if (this.#waiting) this.destroy(new BodyStalledError(idleMs)) }, idleMs)
      : undefined
    source.on('data', this.#onData)
    source.once('end', this.#onEnd)
    source.once('error', this.#onError)
    source.once('aborted', this.#onAborted)
    source.pause()
    // undici destroys a body with the request's own error when it aborts it (the client went away, the upstream
    // failed), sometimes before it listens to the body at all: that error is the request's, reported there. Unheard
    // here, it would be an unhandled 'error' event, and one client resetting its stream could end the process.
    this.on('error', ignoreError)
  }

  override _read (): void {
    this.#waiting = true
    this.#timer?.refresh()
    this.#source.resume()
  }

  override _destroy (error: Error | null, callback: (error?: Error | null) => void): void {
    this.#stop()
    callback(error)
  }

  /**
   * Ends the body with an error one turn later, not from within read(): undici 7's HTTP/2 client loops forever when
   * a request body is destroyed synchronously in its first read() (the source's buffered data arrives there).
   */
  #fail (error: Error): void {
    this.#stop()
    this.#source.pause()
    setImmediate(destroyWith, this, error)
  }

  #stop (): void {
    this.#waiting = false
    clearTimeout(this.#timer)
    const source = this.#source
    source.off('data', this.#onData); source.off('end', this.#onEnd); source.off('error', this.#onError); source.off('aborted', this.#onAborted)
  }
}
