/** The client side: signRequest, signingInterceptor (undici) and `authgate sign`, checked against the policy. */
import anyTest, { type TestFn } from 'ava'
import { createPrivateKey } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { Agent, fetch as undiciFetch, request as undiciRequest } from 'undici'
import { NOW, billingSecret, ed, passed, policy, rejected, run, setup, type FakeRequest } from './fixtures/policy.js'
import { signCommand, signRequest, signingInterceptor } from './sign.js'

const test = anyTest as TestFn
setup(test)

interface Received { method: string, url: string, headers: Array<[string, string]>, body: Buffer }

async function recordingServer (t: { teardown: (fn: () => Promise<void> | void) => void }): Promise<{ url: string, received: Received[] }> {
  const received: Received[] = []
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const headers: Array<[string, string]> = []
      for (let i = 0; i < req.rawHeaders.length; i += 2) headers.push([req.rawHeaders[i]!, req.rawHeaders[i + 1]!])
      received.push({ method: req.method!, url: req.url!, headers, body: Buffer.concat(chunks) })
      res.end('ok')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received }
}

function asFakeRequest (received: Received): FakeRequest {
  return {
    now: NOW, method: received.method, target: received.url, scheme: 'http',
    headers: received.headers,
    body: received.body,
  }
}

test('signingInterceptor: requests sent through a composed undici Agent verify (string body, fetch stream, no body)', async (t) => {
  const server = await recordingServer(t)
  for (const scheme of ['hmac-sha256', 'rfc9421'] as const) {
    const agent = new Agent().compose(signingInterceptor({ scheme, keyId: 'billing', secret: billingSecret, now: () => NOW }))
    t.teardown(() => agent.close())
    await (await undiciRequest(`${server.url}/v1/payments?id=1`, { method: 'POST', body: '{"amount":1}', dispatcher: agent })).body.text()
    await (await undiciFetch(`${server.url}/v1/payments?id=2`, { method: 'POST', body: '{"amount":2}', dispatcher: agent })).text()
    await (await undiciRequest(`${server.url}/v1/payments?id=3`, { method: 'POST', body: Readable.from([Buffer.from('{"amount"'), Buffer.from(':3}')]), dispatcher: agent })).body.text()
    await (await undiciRequest(`${server.url}/v1/payments?id=4`, { dispatcher: agent })).body.text()
    // a path the URL parser would re-encode ({ } become %7B %7D) is signed exactly as undici sends it
    await (await agent.request({ origin: server.url, path: '/v1/payments/{5}', method: 'GET' })).body.text()
  }
  t.is(server.received.length, 10)
  t.is(server.received[4]!.url, '/v1/payments/{5}')
  const instances = { 'hmac-sha256': await policy({}), rfc9421: await policy({ scheme: 'rfc9421' }) }
  for (const [i, received] of server.received.entries()) {
    const instance = i < 5 ? instances['hmac-sha256'] : instances.rfc9421
    passed(t, await run(instance, asFakeRequest(received)))
    t.is(rejected(t, await run(instance, { ...asFakeRequest(received), target: `${received.url}0` })).code, 'invalid_signature')
  }
})

test('signingInterceptor: a streamed body over maxBodyBytes and a FormData body are refused with a clear error', async (t) => {
  const server = await recordingServer(t)
  const agent = new Agent().compose(signingInterceptor({ keyId: 'billing', secret: billingSecret, maxBodyBytes: 8 }))
  t.teardown(() => agent.close())
  await t.throwsAsync(undiciRequest(`${server.url}/x`, { method: 'POST', body: Readable.from([Buffer.alloc(16)]), dispatcher: agent }), { message: /exceeds 8 bytes/ })
  const form = new FormData()
  form.set('a', 'b')
  await t.throwsAsync(undiciRequest(`${server.url}/x`, { method: 'POST', body: form as never, dispatcher: agent }), { message: /FormData/ })
  t.is(server.received.length, 0)
})

function captureIo (env: Record<string, string | undefined> = {}, cwd?: string) {
  const out: string[] = []
  const err: string[] = []
  return {
    out, err,
    io: { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) }, env, ...(cwd ? { cwd } : {}), now: () => NOW },
  }
}

test('authgate sign prints curl-ready headers that the policy accepts, and never the secret', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-sign-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'body.json'), '{"amount":5}')
  const { out, err, io } = captureIo({ BILLING_SECRET: billingSecret }, dir)
  const code = await signCommand(['--key-id', 'billing', '--secret-env', 'BILLING_SECRET', 'POST', 'https://api.example.com/v1/payments?id=7', '--data', '@body.json'], io)
  t.is(code, 0, err.join(''))
  const lines = out.join('').trimEnd().split('\n')
  t.deepEqual(lines.map((line) => line.slice(0, line.indexOf(':'))), ['X-Key-Id', 'X-Timestamp', 'X-Signature'])
  t.false(out.join('').includes(billingSecret))
  const headers = lines.map((line): [string, string] => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 2)])
  passed(t, await run(await policy({}), { now: NOW, target: '/v1/payments?id=7', body: '{"amount":5}', headers }))
})

test('authgate sign --scheme rfc9421 adds Content-Digest and signs with a secret or a key file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-sign-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'partner.pem'), ed.privateKey.export({ type: 'pkcs8', format: 'pem' }))
  const instance = await policy({ scheme: 'rfc9421', replay: false })
  for (const args of [['--secret-env', 'S', '--key-id', 'billing'], ['--key-file', 'partner.pem', '--key-id', 'partner-ed']]) {
    const { out, err, io } = captureIo({ S: billingSecret }, dir)
    t.is(await signCommand([...args, '--scheme', 'rfc9421', 'PUT', 'https://api.example.com/v1/payments/1', '--data', 'hello'], io), 0, err.join(''))
    const headers = out.join('').trimEnd().split('\n').map((line): [string, string] => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 2)])
    t.deepEqual(headers.map(([name]) => name), ['Content-Digest', 'Signature-Input', 'Signature'])
    passed(t, await run(instance, { now: NOW, method: 'PUT', target: '/v1/payments/1', body: 'hello', headers }))
  }
})

test('authgate sign: usage mistakes exit 2 with the usage, unreadable files exit 1, --help exits 0', async (t) => {
  const cases: Array<[string[], number, RegExp]> = [
    [['POST', 'https://x.example/'], 2, /--key-id is required/],
    [['--key-id', 'k', 'POST', 'https://x.example/'], 2, /exactly one of --secret-env/],
    [['--key-id', 'k', '--secret-env', 'MISSING', 'POST', 'https://x.example/'], 2, /MISSING is not set/],
    [['--key-id', 'k', '--secret-env', 'S', 'POST'], 2, /METHOD and URL are required/],
    [['--key-id', 'k', '--secret-env', 'S', 'POST', '/relative'], 2, /URL must be absolute/],
    [['--key-id', 'k', '--secret-env', 'S', '--scheme', 'md5', 'POST', 'https://x.example/'], 2, /--scheme must be/],
    [['--key-id', 'k', '--secret-env', 'S', '--bogus', 'POST', 'https://x.example/'], 2, /unknown option --bogus/],
    [['--key-id', 'k', '--key-file', 'k.pem', 'POST', 'https://x.example/'], 2, /--key-file needs --scheme rfc9421/],
    [['--key-id', 'k', '--secret-env', 'S', 'POST', 'https://x.example/', '--data', '@/nonexistent/file'], 1, /file not found/],
  ]
  for (const [args, expected, message] of cases) {
    const { out, err, io } = captureIo({ S: billingSecret })
    t.is(await signCommand(args, io), expected, args.join(' '))
    t.regex(err.join(''), message)
    t.is(out.join(''), '')
    t.false(err.join('').includes(billingSecret))
  }
  const { out, io } = captureIo()
  t.is(await signCommand(['--help'], io), 0)
  t.regex(out.join(''), /^usage: authgate sign/)
})

test('signRequest refuses to sign without key material or with an absent covered header', (t) => {
  t.throws(() => signRequest({ keyId: 'k', method: 'GET', url: 'https://x.example/' }), { instanceOf: TypeError })
  t.throws(() => signRequest({ scheme: 'rfc9421', keyId: 'k', method: 'GET', url: 'https://x.example/' }), { instanceOf: TypeError })
  t.throws(() => signRequest({ scheme: 'rfc9421', keyId: 'k', secret: 's', components: ['date'], method: 'GET', url: 'https://x.example/' }), { message: /date is absent/ })
  t.truthy(signRequest({ scheme: 'rfc9421', keyId: 'k', secret: 's', components: ['date'], headers: { Date: 'now' }, method: 'GET', url: 'https://x.example/' }).Signature)
  t.truthy(signRequest({ scheme: 'rfc9421', keyId: 'k', privateKey: createPrivateKey(ed.privateKey.export({ type: 'pkcs8', format: 'pem' })), method: 'GET', url: 'https://x.example/' }).Signature)
})

test('signingInterceptor: headers named like Object.prototype properties are sent once, as given, and signed', async (t) => {
  const server = await recordingServer(t)
  const agent = new Agent().compose(signingInterceptor({ scheme: 'rfc9421', keyId: 'billing', secret: billingSecret, now: () => NOW, components: ['@method', '@target-uri', 'constructor', 'tostring'] }))
  t.teardown(() => agent.close())
  await (await undiciRequest(`${server.url}/v1/payments`, { method: 'GET', headers: { constructor: 'c', toString: 't' }, dispatcher: agent })).body.text()
  const received = server.received[0]!
  t.deepEqual(received.headers.filter(([name]) => /^(constructor|tostring)$/i.test(name)).map(([name, value]) => [name.toLowerCase(), value]), [['constructor', 'c'], ['tostring', 't']])
  passed(t, await run(await policy({ scheme: 'rfc9421' }), asFakeRequest(received)))
})

test('authgate sign: --secret-env naming an Object.prototype property is an unset variable, not a secret', async (t) => {
  for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
    const { out, err, io } = captureIo({ S: billingSecret })
    t.is(await signCommand(['--key-id', 'k', '--secret-env', name, 'POST', 'https://x.example/'], io), 2, name)
    t.regex(err.join(''), new RegExp(`environment variable ${name} is not set`))
    t.is(out.join(''), '')
  }
})
