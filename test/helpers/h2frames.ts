/**
 * A raw HTTP/2 client for the probes no well-behaved client library will send: connection-specific headers, a rapid
 * reset flood, a CONTINUATION flood. Frames are written by hand (RFC 9113 §4.1); header blocks use HPACK literals
 * without indexing (RFC 7541 §6.2.2), so no encoder state is needed.
 */
import net from 'node:net'
import tls from 'node:tls'

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const
export const FLAG = { END_STREAM: 0x1, END_HEADERS: 0x4, ACK: 0x1 } as const

export interface Frame { type: number, flags: number, stream: number, payload: Buffer }

export function frame (type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9)
  head.writeUIntBE(payload.length, 0, 3)
  head[3] = type
  head[4] = flags
  head.writeUInt32BE(stream & 0x7fffffff, 5)
  return Buffer.concat([head, payload])
}

function hpackString (text: string): Buffer {
  const bytes = Buffer.from(text, 'latin1')
  if (bytes.length < 127) return Buffer.concat([Buffer.from([bytes.length]), bytes])
  // Length >= 127: 7-bit prefix all ones, then the rest in 7-bit groups.
  const out = [127]
  let rest = bytes.length - 127
  while (rest >= 128) { out.push((rest & 0x7f) | 0x80); rest >>= 7 }
  out.push(rest)
  return Buffer.concat([Buffer.from(out), bytes])
}

/** A header block of literal fields without indexing, new names. */
export function headerBlock (fields: Array<[string, string]>): Buffer {
  return Buffer.concat(fields.flatMap(([name, value]) => [Buffer.from([0]), hpackString(name), hpackString(value)]))
}

export function rstStream (stream: number, code = 8): Buffer {
  const payload = Buffer.alloc(4)
  payload.writeUInt32BE(code)
  return frame(FRAME.RST_STREAM, 0, stream, payload)
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')

/** A raw HTTP/2 connection: frames in, frames out, and when it closed. */
export class RawH2 {
  readonly frames: Frame[] = []
  closed = false
  socketError: Error | undefined = undefined
  readonly closedPromise: Promise<void>
  #buffer = Buffer.alloc(0)
  #waiters: Array<() => void> = []

  private constructor (readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => this.#take(chunk))
    socket.on('error', (error) => { this.socketError = error })
    this.closedPromise = new Promise((resolve) => socket.once('close', () => { this.closed = true; this.#wake(); resolve() }))
  }

  /** Connects (TLS with ALPN h2 when `url` is https), sends the preface and an empty SETTINGS. */
  static async connect (url: string, ca?: string): Promise<RawH2> {
    const { hostname, port, protocol } = new URL(url)
    const socket = protocol === 'https:'
      ? tls.connect({ host: hostname, port: Number(port), ALPNProtocols: ['h2'], ca, servername: 'localhost' })
      : net.connect({ host: hostname, port: Number(port) })
    await new Promise<void>((resolve, reject) => {
      socket.once(protocol === 'https:' ? 'secureConnect' : 'connect', () => resolve())
      socket.once('error', reject)
    })
    const raw = new RawH2(socket)
    socket.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0)]))
    return raw
  }

  write (data: Buffer): boolean {
    if (this.socket.destroyed) return false
    return this.socket.write(data)
  }

  /** Resolves with the first frame (received so far or later) that `match` accepts; rejects if the connection closes first. */
  async waitFor (match: (frame: Frame) => boolean, timeoutMs = 5_000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const found = this.frames.find(match)
      if (found) return found
      if (this.closed) throw new Error('connection closed before the frame came')
      const left = deadline - Date.now()
      if (left <= 0) throw new Error('no such frame in time')
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.#waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  close (): void { this.socket.destroy() }

  #wake (): void {
    const waiters = this.#waiters
    this.#waiters = []
    for (const wake of waiters) wake()
  }

  #take (chunk: Buffer): void {
    this.#buffer = Buffer.concat([this.#buffer, chunk])
    while (this.#buffer.length >= 9) {
      const length = this.#buffer.readUIntBE(0, 3)
      if (this.#buffer.length < 9 + length) break
      const f: Frame = { type: this.#buffer[3]!, flags: this.#buffer[4]!, stream: this.#buffer.readUInt32BE(5) & 0x7fffffff, payload: this.#buffer.subarray(9, 9 + length) }
      this.#buffer = this.#buffer.subarray(9 + length)
      // SETTINGS from the server are acknowledged, as a client must.
      if (f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0) this.write(frame(FRAME.SETTINGS, FLAG.ACK, 0))
      this.frames.push(f)
    }
    this.#wake()
  }
}

/** The error code of a RST_STREAM or GOAWAY frame. */
export function errorCode (f: Frame): number {
  return f.type === FRAME.GOAWAY ? f.payload.readUInt32BE(4) : f.payload.readUInt32BE(0)
}
