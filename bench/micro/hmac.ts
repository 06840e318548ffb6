// Micro-benchmark: hmac-sha256 request signatures. The base string and its HMAC alone, and the hmac policy's
// whole check (headers, window, constant-time compare, replay record in the in-process store) with a 1 KiB body.
// Run: node --import tsx bench/micro/hmac.ts
import { createHash, createHmac, randomBytes } from 'node:crypto'
import { MemoryStore } from '../../gateway/store/memory.js'
import { benchAsync, bench, section } from './harness.js'

let schemes: typeof import('../../policies/hmac/schemes.js')
let clients: typeof import('../../policies/hmac/signing-clients.js')
let harness: typeof import('../../test/helpers/policy-harness.js')
try {
  schemes = await import('../../policies/hmac/schemes.js')
  clients = await import('../../policies/hmac/signing-clients.js')
  harness = await import('../../test/helpers/policy-harness.js')
} catch {
  console.log('\n## HMAC\nskipped: policy not available (policies/hmac/)')
  process.exit(0)
}

const secret = randomBytes(32).toString('hex')
const body = Buffer.from('x'.repeat(1024))
const bodyHash = createHash('sha256').update(body).digest('hex')
const now = Date.now()
const timestamp = String(Math.floor(now / 1000))

section('HMAC (hmac-sha256 scheme)')
bench('base string: METHOD\\nTARGET\\nTIMESTAMP\\nsha256hex(1 KiB body)', 300_000, (i) =>
  `POST\n/v1/payments?n=${i}\n${timestamp}\n${createHash('sha256').update(body).digest('hex')}`)
bench('HMAC-SHA256 of the base string, base64', 300_000, (i) =>
  createHmac('sha256', secret).update(`POST\n/v1/payments?n=${i}\n${timestamp}\n${bodyHash}`).digest('base64'))

const keys = clients.buildSigningKeys([{ keyId: 'bench', client: 'bench', secret, secretEncoding: 'utf8', algorithm: 'hmac-sha256', scopes: [] }])
const COUNT = 20_000
const contexts = Array.from({ length: COUNT }, (_, i) => {
  const target = `/v1/payments?n=${i}`
  const signature = createHmac('sha256', secret).update(`POST\n${target}\n${timestamp}\n${bodyHash}`).digest('base64')
  return harness.makeContext({ method: 'POST', target, scheme: 'https', authority: 'api.example.com', body, now, headers: [['X-Key-Id', 'bench'], ['X-Timestamp', timestamp], ['X-Signature', signature]] })
})
// Each round gets a new store: the same signature twice is refused as a replay.
let store = new MemoryStore({ prefix: 'micro:' })
let scheme = schemes.createScheme({ scheme: 'hmac-sha256', window: '300s', replay: true, requireNonce: false } as never, { store, realm: 'authgate', routeName: 'payments', keys })
let accepted = 0
await benchAsync('hmac policy evaluate (1 KiB body, replay check in memory)', COUNT, 1, async (i) => {
  if (i === 0) {
    void store.close()
    store = new MemoryStore({ prefix: 'micro:' })
    scheme = schemes.createScheme({ scheme: 'hmac-sha256', window: '300s', replay: true, requireNonce: false } as never, { store, realm: 'authgate', routeName: 'payments', keys })
  }
  const outcome = await scheme.evaluate(contexts[i]!)
  if (!('status' in outcome)) accepted++
  return outcome
})
if (accepted === 0) throw new Error('the hmac micro-benchmark built no valid signature')
await store.close()
