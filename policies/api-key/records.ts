/**
 * How dynamic API keys are kept in the store, in one place for the hot path (directory.ts) and the
 * lifecycle (service.ts):
 *
 * - `apikey:<id>`: a hash `{ hash, client, scopes, tier, createdAt, expiresAt, revoked }`. `hash` is
 *   `sha256:<hex>` of the whole key text (never the key); `scopes` is space-separated; times are ISO 8601;
 *   `tier` and `expiresAt` are '' when absent; `revoked` is 'true' or 'false'.
 * - `apikey:<id>:lastUsedAt`: an ISO 8601 string, written in batches. A separate key because `setHash`
 *   replaces the whole record: a batched read-modify-write of the record could undo a revocation made in between.
 * - `apikeys`: the set of dynamic key ids (for `list`).
 * - channel `apikey:events`: `{"type":"created"|"revoked"|"rotated","id":"..."}`; every instance drops its cached
 *   entries for that id.
 */
import { parseKeyHash } from './format.js'
import type { StaticKey } from './schema.js'

export const KEY_INDEX = 'apikeys'
export const KEY_EVENTS = 'apikey:events'

export function recordKey (id: string): string {
  return `apikey:${id}`
}

export function lastUsedKey (id: string): string {
  return `apikey:${id}:lastUsedAt`
}

export type KeyEventType = 'created' | 'revoked' | 'rotated'

export function keyEvent (type: KeyEventType, id: string): string {
  return JSON.stringify({ type, id })
}

/** The id named by an event, or undefined for anything malformed. */
export function parseKeyEvent (message: string): string | undefined {
  try {
    const event = JSON.parse(message) as { id?: unknown }
    return typeof event.id === 'string' ? event.id : undefined
  } catch {
    return undefined
  }
}

/** What a key is allowed to be, wherever it is stored. */
export interface KeyRecord {
  readonly id: string
  readonly digest: Buffer
  readonly client: string
  readonly scopes: readonly string[]
  readonly tier?: string
  readonly createdAtMs?: number
  readonly expiresAtMs?: number
  readonly revoked: boolean
}

/** A stored record, or undefined when the fields are not one (treated like an unknown key). */
export function recordFromFields (id: string, fields: Readonly<Record<string, string>>): KeyRecord | undefined {
  const digest = parseKeyHash(fields.hash ?? '')
  if (!digest || !fields.client) return undefined
  const createdAtMs = fields.createdAt ? Date.parse(fields.createdAt) : NaN
  const expiresAtMs = fields.expiresAt ? Date.parse(fields.expiresAt) : NaN
  // An expiry that does not parse must not mean "never expires".
  if (fields.expiresAt && Number.isNaN(expiresAtMs)) return undefined
  return {
    id,
    digest,
    client: fields.client,
    scopes: fields.scopes ? fields.scopes.split(' ').filter(Boolean) : [],
    ...(fields.tier ? { tier: fields.tier } : {}),
    ...(Number.isNaN(createdAtMs) ? {} : { createdAtMs }),
    ...(Number.isNaN(expiresAtMs) ? {} : { expiresAtMs }),
    revoked: fields.revoked === 'true',
  }
}

export function fieldsFromRecord (record: KeyRecord): Record<string, string> {
  return {
    hash: `sha256:${record.digest.toString('hex')}`,
    client: record.client,
    scopes: record.scopes.join(' '),
    tier: record.tier ?? '',
    createdAt: record.createdAtMs === undefined ? '' : new Date(record.createdAtMs).toISOString(),
    expiresAt: record.expiresAtMs === undefined ? '' : new Date(record.expiresAtMs).toISOString(),
    revoked: record.revoked ? 'true' : 'false',
  }
}

export function recordFromStatic (key: StaticKey): KeyRecord {
  const digest = parseKeyHash(key.hash)
  if (!digest) throw new RangeError(`apiKeys entry ${key.id} has a malformed hash`) // the schema's pattern prevents this
  return {
    id: key.id,
    digest,
    client: key.client,
    scopes: key.scopes ?? [],
    ...(key.tier !== undefined ? { tier: key.tier } : {}),
    ...(key.expiresAt !== undefined ? { expiresAtMs: Date.parse(key.expiresAt) } : {}),
    revoked: false,
  }
}

/** The static keys of a validated configuration document. */
export function staticApiKeys (doc: Readonly<Record<string, unknown>>): readonly StaticKey[] {
  return (doc.apiKeys as StaticKey[] | undefined) ?? []
}
