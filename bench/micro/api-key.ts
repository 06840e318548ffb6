// Micro-benchmark: API key parsing, hashing and KeyDirectory.verify answered from the cache (static and
// store-held keys), and an unknown key answered by the negative cache.
// Run: node --import tsx bench/micro/api-key.ts
import { createLogger } from '../../gateway/log.js'
import { MemoryStore } from '../../gateway/store/memory.js'
import { KeyDirectory } from '../../policies/api-key/directory.js'
import { digestApiKey, hashApiKey, newApiKey, parseApiKey } from '../../policies/api-key/format.js'
import { fieldsFromRecord, recordKey } from '../../policies/api-key/records.js'
import { bench, benchAsync, section } from './harness.js'

const log = createLogger({ level: 'silent' })
const store = new MemoryStore({ prefix: 'micro:' })
const staticKey = newApiKey()
const dynamicKey = newApiKey()
const unknownKey = newApiKey()
await store.setHash(recordKey(dynamicKey.id), fieldsFromRecord({ id: dynamicKey.id, digest: digestApiKey(dynamicKey.key), client: 'dyn', scopes: ['read'], revoked: false }))
const directory = new KeyDirectory([{ id: staticKey.id, hash: hashApiKey(staticKey.key), client: 'static', scopes: ['read'] }], store, { now: Date.now, log })
const ttls = { ttlMs: 5_000, negativeTtlMs: 2_000 }

section('API keys')
bench('parseApiKey (regex)', 1_000_000, () => parseApiKey(staticKey.key))
bench('digestApiKey (SHA-256 of the key text)', 1_000_000, () => digestApiKey(staticKey.key))
bench('hashApiKey (sha256:<hex>)', 1_000_000, () => hashApiKey(staticKey.key))
await benchAsync('KeyDirectory.verify, static key (cached), 1 in flight', 300_000, 1, () => directory.verify(staticKey.key, ttls))
await benchAsync('KeyDirectory.verify, store key (cached), 1 in flight', 300_000, 1, () => directory.verify(dynamicKey.key, ttls))
await benchAsync('KeyDirectory.verify, store key (cached), 64 in flight', 300_000, 64, () => directory.verify(dynamicKey.key, ttls))
await benchAsync('KeyDirectory.verify, unknown key (negative cache)', 300_000, 1, () => directory.verify(unknownKey.key, ttls))
await benchAsync('KeyDirectory.verify, malformed key (no store access)', 300_000, 1, () => directory.verify('agk_nope', ttls))
await directory.close()
await store.close()
