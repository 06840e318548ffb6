import test from 'ava'
import { MemoryStore } from '../../gateway/store/memory.js'
import { parseUntil, revokeJti, tokensCommand } from './tokens.js'

function capture () {
  const out: string[] = []
  const err: string[] = []
  return { io: { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) } }, out, err }
}

const NOW = Date.parse('2025-06-01T12:00:00Z')

/** The store as the command sees it, except that its close() is recorded instead of closing. */
function keepOpen (store: MemoryStore) {
  const state = { closed: 0 }
  const view = new Proxy(store, {
    get (target, prop) {
      if (prop === 'close') return async () => { state.closed++ }
      const value = Reflect.get(target, prop, target) as unknown
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
  return { view, state }
}

test('tokens revoke JTI --until 24h puts the jti on the deny-list for 24 hours, then closes the store', async (t) => {
  let clock = NOW
  const store = new MemoryStore({ now: () => clock })
  const { view, state } = keepOpen(store)
  const { io, out, err } = capture()
  t.is(await tokensCommand(['revoke', 'abc-123', '--until', '24h', '-c', 'gateway.yaml'], io, async () => view, NOW), 0)
  t.deepEqual(err, [])
  t.deepEqual(out, ['revoked abc-123 until 2025-06-02T12:00:00.000Z\n'])
  t.is(state.closed, 1)
  t.is(await store.get('jwt:revoked:abc-123'), String(NOW + 86_400_000))
  clock += 86_400_000
  t.is(await store.get('jwt:revoked:abc-123'), null)
  await store.close()
})

test('tokens revoke --json prints {jti, revoked, until}, and an ISO --until is accepted', async (t) => {
  const store = new MemoryStore({ now: () => NOW })
  const { view } = keepOpen(store)
  const { io, out } = capture()
  t.is(await tokensCommand(['revoke', 'j1', '--until=2025-06-03T00:00:00Z', '--json'], io, async () => view, NOW), 0)
  t.deepEqual(JSON.parse(out[0]!), { jti: 'j1', revoked: true, until: '2025-06-03T00:00:00.000Z' })
  t.is(await store.get('jwt:revoked:j1'), String(Date.parse('2025-06-03T00:00:00Z')))
  await store.close()
})

test('tokens revoke without --until, with a past time or a bad value is a usage error that opens no store', async (t) => {
  const opened: string[] = []
  const open = async () => { opened.push('x'); return new MemoryStore() }
  for (const args of [['revoke', 'j1'], ['revoke', 'j1', '--until', '2020-01-01T00:00:00Z'], ['revoke', 'j1', '--until', 'soon'], ['revoke'], ['list'], ['revoke', 'j1', '--until', '1h', '--bogus']]) {
    const { io, err } = capture()
    t.is(await tokensCommand(args, io, open, NOW), 2, args.join(' '))
    t.true(err.join('').length > 0)
  }
  t.deepEqual(opened, [])
})

test('revokeJti refuses an empty jti and a revocation that ends in the past', async (t) => {
  const store = new MemoryStore({ now: () => NOW })
  await t.throwsAsync(() => revokeJti(store, '', NOW + 1000, NOW), { instanceOf: RangeError })
  await t.throwsAsync(() => revokeJti(store, 'j', NOW - 1, NOW), { instanceOf: RangeError })
  await revokeJti(store, 'j', NOW + 1000, NOW)
  t.is(await store.get('jwt:revoked:j'), String(NOW + 1000))
  await store.close()
})

test('parseUntil reads durations from now and ISO times', (t) => {
  t.is(parseUntil('90m', NOW), NOW + 90 * 60_000)
  t.is(parseUntil('2025-06-02', NOW), Date.parse('2025-06-02'))
  t.is(parseUntil('tomorrow', NOW), undefined)
})
