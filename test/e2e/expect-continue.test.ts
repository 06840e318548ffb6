import net from 'node:net'
import test from 'ava'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'

const key = newApiKey()

function config () {
  return {
    apiKeys: [{ id: key.id, hash: hashApiKey(key.key), client: 'continue-app', scopes: [] }],
    routes: [{ name: 'keyed', match: { path: '/v1/**' }, upstream: 'demo', policies: [{ apiKey: {} }] }],
  }
}

/** Resolves when `done()` holds after some data arrived, when the socket closes, or at `deadline` (the caller asserts). */
function arrived (socket: net.Socket, done: () => boolean, deadline: number): Promise<void> {
  if (done() || socket.destroyed) return Promise.resolve()
  return new Promise((resolve) => {
    const finish = () => { clearTimeout(timer); socket.off('data', onData); socket.off('close', finish); resolve() }
    const onData = () => { if (done()) finish() }
    const timer = setTimeout(finish, Math.max(0, deadline - Date.now()))
    socket.on('data', onData) // registered after the caller's listener, so `received` already holds this chunk
    socket.once('close', finish)
  })
}

/** Sends a head with Expect: 100-continue, returns what arrives before the body is sent, then sends it. */
async function expectContinue (gw: TestGateway, headers: string[]): Promise<{ first: string, final: string }> {
  const { port } = new URL(gw.url)
  const socket = net.connect(Number(port), '127.0.0.1')
  await new Promise((resolve) => socket.once('connect', resolve))
  let received = ''
  socket.on('data', (chunk) => { received += chunk.toString('latin1') })
  socket.write(['POST /v1/items HTTP/1.1', 'Host: gw.test', 'Content-Length: 5', 'Expect: 100-continue', ...headers, '', ''].join('\r\n'))
  const deadline = Date.now() + 5_000
  await arrived(socket, () => received.includes('\r\n\r\n'), deadline)
  const first = received
  received = ''
  if (first.startsWith('HTTP/1.1 100')) socket.write('hello')
  await arrived(socket, () => /\r\n\r\n[\s\S]*\}$/.test(received), deadline)
  socket.destroy()
  return { first, final: received }
}

test('Expect: 100-continue without a credential gets the 401 instead of 100, so the body is never invited', async (t) => {
  const gw = await startGateway(config())
  t.teardown(() => gw.close())
  const { first } = await expectContinue(gw, [])
  t.regex(first, /^HTTP\/1\.1 401 /)
  t.notRegex(first, /100 Continue/)
  t.regex(first, /connection: close/i)
})

test('Expect: 100-continue with a valid key gets 100, and the body then reaches the upstream', async (t) => {
  const gw = await startGateway(config())
  t.teardown(() => gw.close())
  const { first, final } = await expectContinue(gw, [`X-API-Key: ${key.key}`])
  t.regex(first, /^HTTP\/1\.1 100 Continue/)
  t.regex(final, /^HTTP\/1\.1 200 /)
  t.regex(final, /"body":"hello"/)
})
