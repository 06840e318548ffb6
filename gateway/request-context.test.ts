import { createServer, type IncomingMessage } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import test from 'ava'
import { HttpRequestContext } from './request-context.js'

/** A real IncomingMessage for a raw HTTP/1.1 head, as Node's parser makes it. */
async function received (head: string): Promise<IncomingMessage> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  try {
    return await new Promise<IncomingMessage>((resolve, reject) => {
      server.once('request', (req: IncomingMessage, res) => { resolve(req); res.end() })
      const socket = connect((server.address() as AddressInfo).port, '127.0.0.1')
      socket.on('error', reject)
      socket.end(head)
    })
  } finally {
    server.close()
    server.closeAllConnections()
  }
}

const contextOf = (req: IncomingMessage) =>
  new HttpRequestContext(req, 'id', 'GET', '/', '/', '', 'http', 'example.test', '127.0.0.1', '127.0.0.1', 'plain', 'route', 'up', 1024, () => 0)

test('headerValues gives every line of a field in order, whatever the case of its name: what headersDistinct holds', async (t) => {
  const req = await received('GET / HTTP/1.1\r\nHost: example.test\r\nAuthorization: Bearer one\r\nX-Api-Key: k1\r\n' +
    'AUTHORIZATION: Bearer two\r\nx-api-key: k2\r\nX-Single: s\r\n\r\n')
  const ctx = contextOf(req)
  t.is(req.headers.authorization, 'Bearer one', 'Node keeps only the first Authorization in headers')
  t.deepEqual(ctx.headerValues('authorization'), ['Bearer one', 'Bearer two'])
  t.deepEqual(ctx.headerValues('x-api-key'), ['k1', 'k2'])
  t.deepEqual(ctx.headerValues('x-single'), ['s'])
  t.deepEqual(ctx.headerValues('x-missing'), [])
  for (const name of ['authorization', 'x-api-key', 'x-single']) t.deepEqual(ctx.headerValues(name), req.headersDistinct[name], name)
})

test('headerValues gives nothing for a field the edge removed from headers, though rawHeaders still has it', async (t) => {
  const req = await received('GET / HTTP/1.1\r\nHost: example.test\r\nX-Auth-Subject: forged\r\nX-Api-Key: k\r\n\r\n')
  delete req.headers['x-auth-subject']
  const ctx = contextOf(req)
  t.deepEqual(ctx.headerValues('x-auth-subject'), [])
  t.deepEqual(ctx.headerValues('x-api-key'), ['k'])
})
