/**
 * The benchmark's upstream: a minimal HTTP/1.1 responder on a raw TCP socket, so that it is not the bottleneck
 * (node:http costs about as much per request as the proxies under test). It answers every request with the same
 * small JSON body, except `GET /jwks.json`, which serves `BENCH_JWKS` (the ES256 scenario's key set).
 *
 * It understands what the clients in this benchmark send: Content-Length or chunked bodies (read and dropped),
 * keep-alive, pipelining, `Connection: close`. It is not a general HTTP server.
 *
 * Run as a child of bench/run.ts: prints nothing, sends `{ port }` over IPC once listening on 127.0.0.1.
 */
import net from 'node:net'

const BODY = '{"ok":true,"service":"bench-upstream"}'
const OK = Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${BODY.length}\r\n\r\n${BODY}`)
const jwks = process.env.BENCH_JWKS ?? '{"keys":[]}'
const JWKS = Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: max-age=300\r\nContent-Length: ${Buffer.byteLength(jwks)}\r\n\r\n${jwks}`)
const BAD = Buffer.from('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')

const CRLFCRLF = Buffer.from('\r\n\r\n')
const CRLF = Buffer.from('\r\n')

const enum State { Head, Body, ChunkSize, ChunkData, ChunkTrailer }

function serve (socket: net.Socket): void {
  socket.setNoDelay(true)
  let buf: Buffer = Buffer.alloc(0)
  let state = State.Head
  let remaining = 0
  let reply = OK
  let close = false
  const out: Buffer[] = []

  const finish = () => {
    out.push(reply)
    state = State.Head
  }

  socket.on('data', (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
    for (;;) {
      if (state === State.Head) {
        const end = buf.indexOf(CRLFCRLF)
        if (end === -1) break
        const head = buf.toString('latin1', 0, end).toLowerCase()
        buf = buf.subarray(end + 4)
        reply = head.startsWith('get /jwks.json ') ? JWKS : OK
        close = head.includes('\nconnection: close')
        const te = head.indexOf('\ntransfer-encoding:')
        const cl = head.indexOf('\ncontent-length:')
        if (te !== -1 && head.indexOf('chunked', te) !== -1) {
          state = State.ChunkSize
        } else if (cl !== -1) {
          remaining = Number.parseInt(head.slice(cl + 16, head.indexOf('\r', cl + 16) >>> 0), 10)
          if (!Number.isFinite(remaining) || remaining < 0) { socket.end(BAD); return }
          if (remaining === 0) finish()
          else state = State.Body
        } else {
          finish()
        }
      } else if (state === State.Body) {
        if (buf.length < remaining) { remaining -= buf.length; buf = Buffer.alloc(0); break }
        buf = buf.subarray(remaining)
        remaining = 0
        finish()
      } else if (state === State.ChunkSize) {
        const end = buf.indexOf(CRLF)
        if (end === -1) break
        const size = Number.parseInt(buf.toString('latin1', 0, end), 16)
        buf = buf.subarray(end + 2)
        if (!Number.isFinite(size) || size < 0) { socket.end(BAD); return }
        if (size === 0) { state = State.ChunkTrailer } else { remaining = size + 2; state = State.ChunkData }
      } else if (state === State.ChunkData) {
        if (buf.length < remaining) { remaining -= buf.length; buf = Buffer.alloc(0); break }
        buf = buf.subarray(remaining)
        state = State.ChunkSize
      } else {
        // Trailer section: ends with an empty line.
        const end = buf.indexOf(CRLF)
        if (end === -1) break
        buf = buf.subarray(end + 2)
        if (end === 0) finish()
      }
      if (close && state === State.Head) break
    }
    if (out.length > 0) {
      socket.write(out.length === 1 ? out[0]! : Buffer.concat(out))
      out.length = 0
      if (close) socket.end()
    }
  })
  socket.on('error', () => socket.destroy())
}

const server = net.createServer({ noDelay: true }, serve)
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as net.AddressInfo
  process.send?.({ port })
})
process.on('disconnect', () => process.exit(0))
