import { webcrypto } from 'node:crypto'
import { createLocalJWKSet, errors, importSPKI, type CryptoKey, type FlattenedJWSInput, type JWSHeaderParameters } from 'jose'
import { parseDuration, parseSize } from '../../gateway/config/units.js'
import type { Logger } from '../../gateway/log.js'
import { fetchJson, RemoteSourceError, remoteUrlProblem } from './http.js'
import { decodeSecret, isHmac, usesDiscovery, type ProviderConfig } from './section.js'

/** What jose's `jwtVerify` takes as its key: one imported key, or a lookup by the token's header. */
export type KeyLookup = (header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey> | CryptoKey
export type VerificationKey = CryptoKey | KeyLookup

/** No signing keys could be loaded (and none is within its stale grace): tokens are refused, never let through. */
export class KeysUnavailableError extends Error {
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'KeysUnavailableError'
  }
}

export interface KeyResolverOptions {
  readonly now: () => number
  readonly log: Logger
}

/**
 * Imports a provider's static keys once: the HS secret as an HMAC CryptoKey per listed algorithm
 * (jose verifies about twice as fast with an imported key), or the PEM key per listed algorithm.
 * Throws with a message naming the problem (never the secret).
 */
export async function importStaticKey (provider: ProviderConfig): Promise<VerificationKey> {
  const keys = new Map<string, CryptoKey>()
  if (provider.secret !== undefined) {
    const bytes = decodeSecret(provider)
    if (bytes === undefined) throw new TypeError('secret is not base64')
    for (const alg of provider.algorithms.filter(isHmac)) {
      keys.set(alg, await webcrypto.subtle.importKey('raw', bytes, { name: 'HMAC', hash: `SHA-${alg.slice(2)}` }, false, ['verify']) as CryptoKey)
    }
  } else if (provider.publicKey !== undefined) {
    for (const alg of provider.algorithms) {
      keys.set(alg, await importSPKI(provider.publicKey, alg))
    }
  } else {
    throw new TypeError('provider has no static key')
  }
  // One algorithm: hand jose the key itself. Several: a CryptoKey is bound to one algorithm, so look it up by `alg`.
  if (keys.size === 1) return keys.values().next().value!
  return (header) => {
    const key = keys.get(header.alg ?? '')
    if (key === undefined) throw new errors.JOSEAlgNotAllowed('"alg" (Algorithm) Header Parameter value not allowed')
    return key
  }
}

interface LoadedKeys {
  readonly lookup: ReturnType<typeof createLocalJWKSet>
  readonly fetchedAt: number
}

export interface RemoteKeyStats {
  fetches: number
  failures: number
}

/**
 * A JWKS of our own, in front of jose's local key set:
 * - keys are used for `jwksCacheTtl`; after that they are refreshed in the background while still served;
 * - an unknown `kid` causes a refetch at most once per `jwksCooldown`, and concurrent lookups share one fetch;
 * - when the IdP cannot be reached the last keys are served until `jwksCacheTtl + jwksStaleGrace`, then
 *   every lookup fails (KeysUnavailableError) until a fetch succeeds: fail closed;
 * - with discovery, `jwks_uri` is read lazily from `${issuer}/.well-known/openid-configuration` on first use,
 *   whose `issuer` must equal the configured one; a failed discovery is retried (see failureRetryMs).
 */
export class RemoteKeySet {
  /** Key lookups answered by the cached key set, and those that needed a fetch (unknown kid): /metrics. */
  readonly cacheStats = { hits: 0, misses: 0 }
  readonly stats: RemoteKeyStats = { fetches: 0, failures: 0 }
  private readonly name: string
  private readonly issuer: string | undefined
  private jwksUri: string | undefined
  private readonly ttlMs: number
  private readonly cooldownMs: number
  private readonly staleGraceMs: number
  private readonly failureRetryMs: number
  private readonly timeoutMs: number
  private readonly maxBytes: number
  private readonly now: () => number
  private readonly log: Logger
  private keys: LoadedKeys | undefined
  private inflight: Promise<void> | undefined
  private lastAttemptAt = -Infinity
  private lastAttemptFailed = false
  private lastError: Error | undefined

  constructor (name: string, provider: ProviderConfig, options: KeyResolverOptions) {
    this.name = name
    this.issuer = usesDiscovery(provider) ? provider.issuer : undefined
    this.jwksUri = provider.jwksUri
    this.ttlMs = parseDuration(provider.jwksCacheTtl)
    this.cooldownMs = parseDuration(provider.jwksCooldown)
    this.staleGraceMs = parseDuration(provider.jwksStaleGrace)
    // A failed fetch is not remembered as an answer for long: retry after at most 5 s.
    this.failureRetryMs = Math.min(this.cooldownMs, 5000)
    this.timeoutMs = parseDuration(provider.timeout)
    this.maxBytes = parseSize(provider.maxResponseBytes)
    this.now = options.now
    this.log = options.log
    this.getKey = this.getKey.bind(this)
  }

  /** jose key lookup. Throws jose's JWKSNoMatchingKey for an unknown `kid`, KeysUnavailableError when no keys can be had. */
  async getKey (header: JWSHeaderParameters, token: FlattenedJWSInput): Promise<CryptoKey> {
    const keys = await this.usableKeys()
    try {
      const key = await keys.lookup(header, token) as CryptoKey
      this.cacheStats.hits++
      return key
    } catch (error) {
      if (!(error instanceof errors.JWKSNoMatchingKey)) throw error
      this.cacheStats.misses++
      // Unknown kid: the IdP may have rotated. Join a fetch in flight, or start one if the cooldown allows.
      if (this.inflight) await this.inflight
      else if (this.mayFetch(this.now(), false)) await this.refresh()
      else throw error
      const fresh = this.keys
      if (fresh === undefined || fresh === keys) throw error
      return await fresh.lookup(header, token) as CryptoKey
    }
  }

  /** Resolves once no fetch is in flight (tests; shutdown). */
  async idle (): Promise<void> {
    while (this.inflight) await this.inflight
  }

  private async usableKeys (): Promise<LoadedKeys> {
    const now = this.now()
    const current = this.keys
    if (current !== undefined && now - current.fetchedAt < this.ttlMs + this.staleGraceMs) {
      // Past the TTL: refresh in the background and keep serving these keys meanwhile.
      if (now - current.fetchedAt >= this.ttlMs && !this.inflight && this.mayFetch(now, true)) void this.refresh()
      return current
    }
    if (this.inflight) await this.inflight
    else if (this.mayFetch(now, true)) await this.refresh()
    const loaded = this.keys
    if (loaded === undefined || this.now() - loaded.fetchedAt >= this.ttlMs + this.staleGraceMs) {
      throw new KeysUnavailableError(`signing keys of provider "${this.name}" are unavailable` +
        (this.lastError ? `: ${this.lastError.message}` : ''), { cause: this.lastError })
    }
    return loaded
  }

  /** Scheduled refreshes wait only for a failure's short retry; kid-triggered ones wait for the cooldown too. */
  private mayFetch (now: number, scheduled: boolean): boolean {
    const wait = this.lastAttemptFailed ? this.failureRetryMs : scheduled ? 0 : this.cooldownMs
    return now - this.lastAttemptAt >= wait
  }

  /** Single-flight: every caller while a fetch runs gets the same promise. Never rejects. */
  private refresh (): Promise<void> {
    this.inflight ??= this.fetchKeys().finally(() => { this.inflight = undefined })
    return this.inflight
  }

  private async fetchKeys (): Promise<void> {
    this.lastAttemptAt = this.now()
    this.stats.fetches++
    try {
      const uri = this.jwksUri ?? await this.discover()
      const document = await fetchJson(uri, { timeoutMs: this.timeoutMs, maxBytes: this.maxBytes })
      let lookup: LoadedKeys['lookup']
      try {
        lookup = createLocalJWKSet(document as Parameters<typeof createLocalJWKSet>[0])
      } catch (error) {
        throw new RemoteSourceError(`${uri} is not a JWK Set`, { cause: error })
      }
      this.keys = { lookup, fetchedAt: this.now() }
      this.lastAttemptFailed = false
      this.lastError = undefined
    } catch (error) {
      this.stats.failures++
      this.lastAttemptFailed = true
      this.lastError = error instanceof Error ? error : new Error(String(error))
      this.log.warn({ provider: this.name, err: this.lastError.message }, 'jwt: could not load signing keys')
    }
  }

  private async discover (): Promise<string> {
    const issuer = this.issuer
    if (issuer === undefined) throw new RemoteSourceError('no jwksUri and no issuer to discover it from')
    const url = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`
    const metadata = await fetchJson(url, { timeoutMs: this.timeoutMs, maxBytes: this.maxBytes }) as Record<string, unknown> | null
    if (typeof metadata !== 'object' || metadata === null) throw new RemoteSourceError(`${url} is not a JSON object`)
    // OIDC Discovery §4.3: the issuer in the metadata must be identical to the one we asked.
    if (metadata.issuer !== issuer) throw new RemoteSourceError(`${url} names another issuer`)
    const jwksUri = metadata.jwks_uri
    if (typeof jwksUri !== 'string') throw new RemoteSourceError(`${url} has no jwks_uri`)
    const problem = remoteUrlProblem(jwksUri)
    if (problem !== undefined) throw new RemoteSourceError(`discovered jwks_uri ${problem}`)
    this.jwksUri = jwksUri
    return jwksUri
  }
}
