import { StoreUnavailableError } from '../../gateway/errors.js'
import type { Logger } from '../../gateway/log.js'
import type { Store } from '../../gateway/store/types.js'
import { digestApiKey, digestsMatch, parseApiKey } from './format.js'
import { KEY_EVENTS, lastUsedKey, parseKeyEvent, recordFromFields, recordFromStatic, recordKey, type KeyRecord } from './records.js'
import type { StaticKey } from './schema.js'
import type { CacheReporter, CacheStats } from '../types.js'

export type { KeyRecord } from './records.js'

export type RejectReason = 'API key not accepted' | 'API key expired' | 'API key revoked'

export type Verification = { ok: true, record: KeyRecord } | { ok: false, reason: RejectReason }

/** Per-route cache freshness: one cache serves every route of a configuration, each route decides what is fresh. */
export interface CacheTtls {
  /** How long a verified key is trusted without reading the store again. 0: always read. */
  readonly ttlMs: number
  /** How long a refused key is refused without reading the store again. 0: always read. */
  readonly negativeTtlMs: number
}

export interface KeyDirectoryOptions {
  readonly now: () => number
  readonly log: Logger
  /** How often used keys' lastUsedAt is written (default 10 s). */
  readonly flushIntervalMs?: number
  /** Bound of each cache (default 10,000 entries); the oldest entry goes first. */
  readonly maxEntries?: number
  /** While the store fails, a key verified at most this long ago keeps working (default 5 min). */
  readonly staleIfErrorMs?: number
}

interface Positive { readonly record: KeyRecord, readonly verifiedAt: number }
interface Negative { readonly id: string, readonly reason: RejectReason, readonly at: number }

const NOT_ACCEPTED: Verification = { ok: false, reason: 'API key not accepted' }

/**
 * Finds key records (static from YAML first, then the store) and verifies a presented key in constant time.
 *
 * - Malformed keys are refused before any store access.
 * - Verified keys are cached by the SHA-256 digest of the presented key; refused ones too (bounded), so a flood
 *   of bad keys costs one store read per distinct key and TTL; concurrent lookups of one key share one read.
 * - `apikey:events` (pub/sub) drops every cached entry of a key id at once: revocation reaches all instances.
 * - `lastUsedAt` is written in batches (a timer), never on the request path; flushed on close.
 * - A store failure propagates (503), except that a key verified within `staleIfErrorMs` keeps working.
 */
export class KeyDirectory implements CacheReporter {
  /** Lookups answered from the caches (verified or refused) and those that went to the store: /metrics. */
  readonly cacheStats = { hits: 0, misses: 0 }
  private readonly staticKeys = new Map<string, KeyRecord>()
  private readonly positive = new Map<string, Positive>()
  private readonly negative = new Map<string, Negative>()
  private readonly inFlight = new Map<string, Promise<Verification>>()
  private lastUsed = new Map<string, number>()
  private readonly maxEntries: number
  private readonly staleIfErrorMs: number
  private readonly timer: NodeJS.Timeout
  private readonly unsubscribe: () => void
  private closed: Promise<void> | undefined
  private warnedStale = false
  private warnedFlush = false

  /** /metrics: cache `apiKey`. */
  reportCaches (): CacheStats[] {
    return [{ cache: 'apiKey', ...this.cacheStats }]
  }

  constructor (keys: readonly StaticKey[], private readonly store: Store, private readonly options: KeyDirectoryOptions) {
    for (const key of keys) this.staticKeys.set(key.id, recordFromStatic(key))
    this.maxEntries = options.maxEntries ?? 10_000
    this.staleIfErrorMs = options.staleIfErrorMs ?? 5 * 60_000
    this.timer = setInterval(() => { void this.flush() }, options.flushIntervalMs ?? 10_000)
    this.timer.unref()
    let unsubscribe = () => {}
    try {
      unsubscribe = store.subscribe(KEY_EVENTS, (message) => {
        const id = parseKeyEvent(message)
        if (id !== undefined) this.forget(id)
      })
    } catch (err) {
      // Revocations then reach this instance when the cache TTL ends (DESIGN.md: the TTL bounds it).
      options.log.warn({ err: { message: (err as Error).message } }, 'cannot subscribe to API key events')
    }
    this.unsubscribe = unsubscribe
  }

  async verify (presented: string, ttls: CacheTtls): Promise<Verification> {
    const parsed = parseApiKey(presented)
    if (!parsed) return NOT_ACCEPTED
    const digest = digestApiKey(presented)
    const now = this.options.now()

    const fixed = this.staticKeys.get(parsed.id)
    if (fixed) return this.judge(digestsMatch(fixed.digest, digest) ? fixed : undefined, now)

    const cacheKey = digest.toString('hex')
    const hit = this.positive.get(cacheKey)
    if (hit && now - hit.verifiedAt < ttls.ttlMs) { this.cacheStats.hits++; return this.judge(hit.record, now) }
    const miss = this.negative.get(cacheKey)
    if (miss && now - miss.at < ttls.negativeTtlMs) { this.cacheStats.hits++; return { ok: false, reason: miss.reason } }
    this.cacheStats.misses++

    let pending = this.inFlight.get(cacheKey)
    if (!pending) {
      pending = this.lookup(parsed.id, digest, cacheKey).finally(() => this.inFlight.delete(cacheKey))
      this.inFlight.set(cacheKey, pending)
    }
    return await pending
  }

  /** Writes the lastUsedAt of every key used since the last flush: one write per key id. */
  async flush (): Promise<void> {
    if (this.lastUsed.size === 0) return
    const batch = this.lastUsed
    this.lastUsed = new Map()
    const failed: Array<[string, number]> = []
    await Promise.all([...batch].map(async ([id, at]) => {
      try {
        await this.store.set(lastUsedKey(id), new Date(at).toISOString())
      } catch {
        failed.push([id, at])
      }
    }))
    if (failed.length === 0) this.warnedFlush = false
    if (failed.length > 0) {
      // Once per outage: the timer retries every interval.
      if (!this.warnedFlush) this.options.log.warn({ keys: failed.length }, 'could not record API key lastUsedAt; will retry')
      this.warnedFlush = true
      for (const [id, at] of failed) {
        if (!this.lastUsed.has(id) && this.lastUsed.size < this.maxEntries) this.lastUsed.set(id, at)
      }
    }
  }

  /** Drops every cached answer about this key id (revoked, rotated or created elsewhere). */
  forget (id: string): void {
    for (const [key, entry] of this.positive) if (entry.record.id === id) this.positive.delete(key)
    for (const [key, entry] of this.negative) if (entry.id === id) this.negative.delete(key)
  }

  /** Idempotent: every route's instance closes the one shared directory. */
  close (): Promise<void> {
    this.closed ??= (async () => {
      clearInterval(this.timer)
      this.unsubscribe()
      await this.flush()
    })()
    return this.closed
  }

  private async lookup (id: string, digest: Buffer, cacheKey: string): Promise<Verification> {
    let fields: Record<string, string> | null
    try {
      fields = await this.store.getHash(recordKey(id))
    } catch (err) {
      const stale = this.positive.get(cacheKey)
      const now = this.options.now()
      if (err instanceof StoreUnavailableError && stale && now - stale.verifiedAt < this.staleIfErrorMs) {
        if (!this.warnedStale) this.options.log.warn('store unavailable: API keys verified recently keep working from the cache')
        this.warnedStale = true
        return this.judge(stale.record, now)
      }
      throw err
    }
    this.warnedStale = false
    const now = this.options.now()
    const stored = fields ? recordFromFields(id, fields) : undefined
    // Constant time, and the same comparison when there is no record (no timing oracle on ids).
    const record = digestsMatch(stored?.digest, digest) ? stored : undefined
    const result = this.judge(record, now)
    if (result.ok) {
      this.remember(this.positive, cacheKey, { record: result.record, verifiedAt: now })
      this.negative.delete(cacheKey)
    } else {
      this.positive.delete(cacheKey)
      this.remember(this.negative, cacheKey, { id, reason: result.reason, at: now })
    }
    return result
  }

  private judge (record: KeyRecord | undefined, now: number): Verification {
    if (!record) return NOT_ACCEPTED
    if (record.revoked) return { ok: false, reason: 'API key revoked' }
    if (record.expiresAtMs !== undefined && record.expiresAtMs <= now) return { ok: false, reason: 'API key expired' }
    const previous = this.lastUsed.get(record.id)
    if (previous === undefined || previous < now) {
      if (previous !== undefined || this.lastUsed.size < this.maxEntries) this.lastUsed.set(record.id, now)
    }
    return { ok: true, record }
  }

  private remember<T> (cache: Map<string, T>, key: string, value: T): void {
    cache.delete(key)
    if (cache.size >= this.maxEntries) cache.delete(cache.keys().next().value!)
    cache.set(key, value)
  }
}
