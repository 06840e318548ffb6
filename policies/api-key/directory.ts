import type { Store } from '../../gateway/store/types.js'
import type { Logger } from '../../gateway/log.js'
import type { StaticKey } from './schema.js'
import { digestApiKey, digestsMatch, parseApiKey, parseKeyHash } from './format.js'

/** What a key is allowed to be, wherever it is stored. */
export interface KeyRecord {
  readonly id: string
  readonly digest: Buffer
  readonly client: string
  readonly scopes: readonly string[]
  readonly tier?: string
  readonly expiresAtMs?: number
  readonly revoked: boolean
}

export type Verification = { ok: true, record: KeyRecord } | { ok: false, reason: string }

/**
 * Finds key records (static from YAML first, then the store) and verifies a presented key in constant time.
 * Malformed keys are refused before any store access.
 */
export class KeyDirectory {
  private readonly staticKeys = new Map<string, KeyRecord>()

  constructor (keys: readonly StaticKey[], private readonly store: Store,
    private readonly options: { now: () => number, log: Logger }) {
    for (const key of keys) {
      this.staticKeys.set(key.id, {
        id: key.id,
        digest: parseKeyHash(key.hash)!,
        client: key.client,
        scopes: key.scopes,
        ...(key.tier !== undefined ? { tier: key.tier } : {}),
        ...(key.expiresAt !== undefined ? { expiresAtMs: Date.parse(key.expiresAt) } : {}),
        revoked: false,
      })
    }
  }

  async verify (presented: string): Promise<Verification> {
    const parsed = parseApiKey(presented.trim())
    if (!parsed) return { ok: false, reason: 'API key not accepted' }
    const record = this.staticKeys.get(parsed.id) ?? await this.fromStore(parsed.id)
    if (!digestsMatch(record?.digest, digestApiKey(presented.trim())) || !record) return { ok: false, reason: 'API key not accepted' }
    if (record.revoked) return { ok: false, reason: 'API key revoked' }
    if (record.expiresAtMs !== undefined && record.expiresAtMs <= this.options.now()) return { ok: false, reason: 'API key expired' }
    return { ok: true, record }
  }

  private async fromStore (id: string): Promise<KeyRecord | undefined> {
    const fields = await this.store.getHash(`apikey:${id}`)
    if (!fields) return undefined
    const digest = parseKeyHash(fields.hash ?? '')
    if (!digest) return undefined
    return {
      id,
      digest,
      client: fields.client ?? id,
      scopes: fields.scopes ? fields.scopes.split(' ').filter(Boolean) : [],
      ...(fields.tier ? { tier: fields.tier } : {}),
      ...(fields.expiresAt ? { expiresAtMs: Date.parse(fields.expiresAt) } : {}),
      revoked: fields.revoked === 'true',
    }
  }

  close (): void {}
}
