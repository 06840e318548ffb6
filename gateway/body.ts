import type { Readable } from 'node:stream'

/** A request body passed the route's maxBodyBytes (413 payload_too_large), however it was being read. */
export class BodyTooLargeError extends Error {
  constructor (readonly limitBytes: number) { super('request body too large') }
}

/** The client went away while its body was being read. */
export class BodyAbortedError extends Error {
  constructor () { super('client aborted the request') }
}

/** Reads a whole body into one Buffer, refusing it as soon as it passes `maxBytes`. */
export function readBody (source: Readable, maxBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let total = 0
    const onData = (chunk: Buffer) => {
      total += chunk.length
      if (total > maxBytes) {
        cleanup()
        reject(new BodyTooLargeError(maxBytes))
        return
      }
      chunks.push(chunk)
    }
    const onEnd = () => { cleanup(); resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total)) }
    const onError = (error: Error) => { cleanup(); reject(error) }
    const onAborted = () => { cleanup(); reject(new BodyAbortedError()) }
    const cleanup = () => {
      source.off('data', onData); source.off('end', onEnd); source.off('error', onError); source.off('aborted', onAborted)
    }
    source.on('data', onData)
    source.once('end', onEnd)
    source.once('error', onError)
    source.once('aborted', onAborted)
  })
}

/** The body as it streams, counted and cut with BodyTooLargeError once it passes `maxBytes`. */
export async function * limitedBody (source: AsyncIterable<Buffer>, maxBytes: number): AsyncGenerator<Buffer> {
  let total = 0
  for await (const chunk of source) {
    total += chunk.length
    if (total > maxBytes) throw new BodyTooLargeError(maxBytes)
    yield chunk
  }
}
