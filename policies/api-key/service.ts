import { DURATION_PATTERN, parseDuration } from '../../gateway/config/units.js'
import type { Store } from '../../gateway/store/types.js'
import { digestApiKey, newApiKey } from './format.js'
import {
  KEY_EVENTS, KEY_INDEX, fieldsFromRecord, keyEvent, lastUsedKey, recordFromFields, recordKey, type KeyRecord,
} from './records.js'
import type { StaticKey } from './schema.js'

/** `keys create --json`, `POST /admin/keys`: the key is in this object and nowhere else, ever. */
export interface CreatedKey {
  id: string
  key: string
  client: string
  scopes: string[]
  tier: string | null
  expiresAt: string | null
}

/** `keys rotate --json`, `POST /admin/keys/ID/rotate`. */
export interface RotatedKey extends CreatedKey {
  replaces: string
}

/** One entry of `keys list --json` / `GET /admin/keys`: never a secret or a hash. */
export interface KeyListing {
  id: string
  client: string
  scopes: string[]
  tier: string | null
  createdAt: string | null
  expiresAt: string | null
  revoked: boolean
  lastUsedAt: string | null
  /** Only on static keys from gateway.yaml (`apiKeys:`), which the CLI and admin API cannot change. */
  source?: 'config'
}

export interface CreateKeyInput {
  client: unknown
  scopes?: unknown
  tier?: unknown
  /** A duration (`90d`, `12h`) or a number of seconds; absent: the key does not expire. */
  expiresIn?: unknown
}

export type KeyProblem = 'invalid' | 'not_found' | 'static' | 'revoked'

/** A request the service refuses: bad input (`invalid`), unknown id, a static key, a revoked key. */
export class KeyRequestError extends Error {
  constructor (readonly problem: KeyProblem, message: string) {
    super(message)
    this.name = 'KeyRequestError'
  }
}

export interface KeyServiceOptions {
  /** The store, or a getter (the gateway's store may be replaced on reload). */
  readonly store: Store | (() => Store)
  /** Static keys from gateway.yaml, listed read-only; their ids are never issued. */
  readonly staticKeys?: readonly StaticKey[] | (() => readonly StaticKey[])
  readonly now?: () => number
}

const KEY_ID = /^[a-z0-9]{8,32}$/
// RFC 6749 §3.3 scope-token: visible ASCII except space, `"` and `\`.
const SCOPE = /^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/
const TIER = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/
const DURATION = new RegExp(DURATION_PATTERN)
const MAX_LIFETIME_MS = 100 * 365 * 86_400_000

/**
 * The API key lifecycle over the store: create, list, revoke, rotate. Shared by `authgate keys` and the admin API,
 * so both have the same semantics. Revocation and rotation are published on `apikey:events`.
 */
export class KeyService {
  private readonly getStore: () => Store
  private readonly getStatic: () => readonly StaticKey[]
  private readonly now: () => number

  constructor (options: KeyServiceOptions) {
    const { store, staticKeys } = options
    this.getStore = typeof store === 'function' ? store : () => store
    this.getStatic = typeof staticKeys === 'function' ? staticKeys : () => staticKeys ?? []
    this.now = options.now ?? Date.now
  }

  async create (input: CreateKeyInput): Promise<CreatedKey> {
    const client = checkClient(input.client)
    const scopes = checkScopes(input.scopes)
    const tier = checkTier(input.tier)
    const lifetimeMs = checkExpiresIn(input.expiresIn)
    const now = this.now()
    return await this.issue({ client, scopes, ...(tier !== undefined ? { tier } : {}), createdAtMs: now, ...(lifetimeMs !== undefined ? { expiresAtMs: now + lifetimeMs } : {}) })
  }

  async list (): Promise<KeyListing[]> {
    const store = this.getStore()
    const ids = (await store.members(KEY_INDEX)).filter((id) => KEY_ID.test(id))
    const rows = await Promise.all(ids.map(async (id) => {
      const [fields, lastUsedAt] = await Promise.all([store.getHash(recordKey(id)), store.get(lastUsedKey(id))])
      const record = fields ? recordFromFields(id, fields) : undefined
      return record ? listing(record, lastUsedAt) : undefined
    }))
    const dynamic = rows.filter((row): row is KeyListing => row !== undefined)
      .sort((a, b) => (a.createdAt ?? '').localeCompare(b.createdAt ?? '') || a.id.localeCompare(b.id))
    const fixed = this.getStatic().map((key): KeyListing => ({
      id: key.id,
      client: key.client,
      scopes: [...key.scopes ?? []],
      tier: key.tier ?? null,
      createdAt: null,
      expiresAt: key.expiresAt === undefined ? null : new Date(Date.parse(key.expiresAt)).toISOString(),
      revoked: false,
      lastUsedAt: null,
      source: 'config',
    }))
    // Static keys' lastUsedAt is recorded too (by the gateway that verified them).
    await Promise.all(fixed.map(async (row) => { row.lastUsedAt = await store.get(lastUsedKey(row.id)) })).catch(() => {})
    return [...dynamic, ...fixed]
  }

  /** Idempotent; published so every instance drops its cached entry at once. */
  async revoke (id: unknown): Promise<{ id: string, revoked: true }> {
    const record = await this.find(id)
    const store = this.getStore()
    if (!record.revoked) await store.setHash(recordKey(record.id), fieldsFromRecord({ ...record, revoked: true }))
    await store.publish(KEY_EVENTS, keyEvent('revoked', record.id))
    return { id: record.id, revoked: true }
  }

  /**
   * Issues a new key (new id, same client, scopes, tier and lifetime) and makes the old one expire at
   * now + grace (or earlier, if it already expired sooner). Both are valid until then.
   */
  async rotate (id: unknown, grace?: unknown): Promise<RotatedKey> {
    const graceMs = checkGrace(grace)
    const old = await this.find(id)
    if (old.revoked) throw new KeyRequestError('revoked', `API key ${old.id} is revoked; create a new key instead`)
    const now = this.now()
    const lifetimeMs = old.expiresAtMs !== undefined && old.createdAtMs !== undefined ? old.expiresAtMs - old.createdAtMs : undefined
    const created = await this.issue({
      client: old.client,
      scopes: [...old.scopes],
      ...(old.tier !== undefined ? { tier: old.tier } : {}),
      createdAtMs: now,
      ...(lifetimeMs !== undefined && lifetimeMs > 0 ? { expiresAtMs: now + lifetimeMs } : {}),
    })
    const graceEnd = now + graceMs
    const expiresAtMs = old.expiresAtMs === undefined ? graceEnd : Math.min(old.expiresAtMs, graceEnd)
    const store = this.getStore()
    await store.setHash(recordKey(old.id), fieldsFromRecord({ ...old, expiresAtMs }))
    await store.publish(KEY_EVENTS, keyEvent('rotated', old.id))
    return { ...created, replaces: old.id }
  }

  private async issue (fields: Omit<KeyRecord, 'id' | 'digest' | 'revoked'>): Promise<CreatedKey> {
    const store = this.getStore()
    const taken = new Set(this.getStatic().map((k) => k.id))
    let issued = newApiKey()
    // 64 random bits: a collision is all but impossible, but never overwrite a key.
    for (let attempt = 0; taken.has(issued.id) || await store.getHash(recordKey(issued.id)) !== null; attempt++) {
      if (attempt >= 5) throw new Error('could not find a free key id')
      issued = newApiKey()
    }
    const record: KeyRecord = { ...fields, id: issued.id, digest: digestApiKey(issued.key), revoked: false }
    await store.setHash(recordKey(record.id), fieldsFromRecord(record))
    await store.addToSet(KEY_INDEX, record.id)
    await store.publish(KEY_EVENTS, keyEvent('created', record.id))
    return {
      id: record.id,
      key: issued.key,
      client: record.client,
      scopes: [...record.scopes],
      tier: record.tier ?? null,
      expiresAt: record.expiresAtMs === undefined ? null : new Date(record.expiresAtMs).toISOString(),
    }
  }

  private async find (id: unknown): Promise<KeyRecord> {
    if (typeof id !== 'string' || !KEY_ID.test(id)) throw new KeyRequestError('not_found', 'no API key with this id')
    if (this.getStatic().some((k) => k.id === id)) {
      throw new KeyRequestError('static', `API key ${id} is defined in the configuration (apiKeys:); change it there`)
    }
    const fields = await this.getStore().getHash(recordKey(id))
    const record = fields ? recordFromFields(id, fields) : undefined
    if (!record) throw new KeyRequestError('not_found', `no API key with id ${id}`)
    return record
  }
}

function listing (record: KeyRecord, lastUsedAt: string | null): KeyListing {
  return {
    id: record.id,
    client: record.client,
    scopes: [...record.scopes],
    tier: record.tier ?? null,
    createdAt: record.createdAtMs === undefined ? null : new Date(record.createdAtMs).toISOString(),
    expiresAt: record.expiresAtMs === undefined ? null : new Date(record.expiresAtMs).toISOString(),
    revoked: record.revoked,
    lastUsedAt,
  }
}

function checkClient (value: unknown): string {
  if (typeof value !== 'string' || value.trim() === '') throw new KeyRequestError('invalid', 'client is required (a non-empty string)')
  if (value.length > 200 || CONTROL.test(value)) throw new KeyRequestError('invalid', 'client must be at most 200 characters, without control characters')
  return value
}

function checkScopes (value: unknown): string[] {
  if (value === undefined || value === null) return []
  const list = typeof value === 'string' ? value.split(/[\s,]+/).filter(Boolean) : value
  if (!Array.isArray(list) || list.length > 100 || !list.every((s) => typeof s === 'string' && SCOPE.test(s))) {
    throw new KeyRequestError('invalid', 'scopes must be a list of scope names (visible ASCII, no spaces, quotes or backslashes)')
  }
  return [...new Set(list as string[])]
}

function checkTier (value: unknown): string | undefined {
  if (value === undefined || value === null || value === '') return undefined
  if (typeof value !== 'string' || !TIER.test(value)) throw new KeyRequestError('invalid', 'tier must be a name (letters, digits, _ . -)')
  return value
}

function duration (value: unknown, what: string): number {
  let ms: number
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) ms = value * 1000
  else if (typeof value === 'string' && DURATION.test(value.trim())) ms = parseDuration(value)
  else throw new KeyRequestError('invalid', `${what} must be a duration like 90d, 12h or 30m`)
  if (ms > MAX_LIFETIME_MS) throw new KeyRequestError('invalid', `${what} is too long (at most 100 years)`)
  return ms
}

function checkExpiresIn (value: unknown): number | undefined {
  if (value === undefined || value === null || value === '') return undefined
  const ms = duration(value, 'expiresIn')
  if (ms <= 0) throw new KeyRequestError('invalid', 'expiresIn must be longer than 0')
  return ms
}

function checkGrace (value: unknown): number {
  if (value === undefined || value === null || value === '') return 24 * 3_600_000
  return duration(value, 'grace')
}
