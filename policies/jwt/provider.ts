import { hash as digest } from 'node:crypto'
import { errors, jwtVerify, type CryptoKey, type JWTPayload, type JWTVerifyOptions } from 'jose'
import { StoreUnavailableError } from '../../gateway/errors.js'
import { parseDuration } from '../../gateway/config/units.js'
import type { Logger } from '../../gateway/log.js'
import type { Store } from '../../gateway/store/types.js'
import type { CacheReporter, CacheStats, IdentityUpdate } from '../types.js'
import { importStaticKey, KeysUnavailableError, RemoteKeySet, type VerificationKey } from './keys.js'
import type { ProviderConfig } from './section.js'

/** Store key of a revoked `jti` (the store adds its prefix). The value is the end of the revocation, ms since epoch. */
export const REVOKED_PREFIX = 'jwt:revoked:'

/** Verified tokens kept at most this many (oldest first out) and at most this long (then verified again). */
export const TOKEN_CACHE_MAX_ENTRIES = 10_000
export const TOKEN_CACHE_MAX_MS = 5 * 60_000

export interface VerifiedToken {
  readonly payload: Readonly<JWTPayload>
  /** The identity when no earlier step provided a client: `client` falls back to `sub` (DESIGN "JWT client"). */
  readonly identity: IdentityUpdate
  /** The identity after a step that provided a client: `client` only from `client_id`/`azp` (else `identity` itself). */
  readonly identityKeepingClient: IdentityUpdate
}

export type Verification =
  | { readonly ok: true, readonly token: VerifiedToken }
  | { readonly ok: false, readonly detail: string }

export interface ProviderRuntimeOptions {
  readonly now: () => number
  readonly log: Logger
  readonly store: Store
  /** `store.onError`: with `allow`, a revocation check the store cannot answer is skipped (logged). */
  readonly storeOnError: 'deny' | 'allow'
}

interface CacheEntry {
  readonly token: VerifiedToken
  readonly untilMs: number
}

/**
 * One `jwtProviders` entry at run time, built once per configuration generation and shared by every
 * route that names it: imported keys or the JWKS cache, jose's verify options, and the verified-token cache.
 */
export class ProviderRuntime implements CacheReporter {
  readonly name: string
  readonly config: ProviderConfig
  /** Resolves when static keys are imported (rejects with the reason when they cannot be). */
  readonly ready: Promise<void>
  readonly remoteKeys: RemoteKeySet | undefined
  /** Verified-token cache: SHA-256 of the token → verified payload; hits and misses for benchmarks and tests. */
  readonly cacheStats = { hits: 0, misses: 0 }
  private key: VerificationKey | undefined
  private readonly cache = new Map<string, CacheEntry>()
  private readonly toleranceMs: number
  private readonly maxAgeMs: number | undefined
  private readonly verifyOptions: Omit<JWTVerifyOptions, 'currentDate'>
  private readonly audience: readonly string[] | undefined
  private readonly options: ProviderRuntimeOptions

  /** /metrics: the verified-token cache `jwt_token`, and `jwks` for a provider whose keys come from a JWKS. */
  reportCaches (): CacheStats[] {
    return [
      { cache: 'jwt_token', ...this.cacheStats },
      ...(this.remoteKeys ? [{ cache: 'jwks', ...this.remoteKeys.cacheStats }] : []),
    ]
  }

  constructor (name: string, config: ProviderConfig, options: ProviderRuntimeOptions) {
    this.name = name
    this.config = config
    this.options = options
    this.toleranceMs = parseDuration(config.clockTolerance)
    this.maxAgeMs = config.maxAge === undefined ? undefined : parseDuration(config.maxAge)
    this.audience = toList(config.audience)
    const required = new Set(config.requiredClaims)
    if (config.requireExp) required.add('exp')
    if (config.revocation) required.add('jti')
    this.verifyOptions = {
      algorithms: [...config.algorithms],
      ...(config.issuer !== undefined ? { issuer: config.issuer } : {}),
      clockTolerance: this.toleranceMs / 1000,
      ...(this.maxAgeMs !== undefined ? { maxTokenAge: this.maxAgeMs / 1000 } : {}),
      requiredClaims: [...required],
      ...(config.typ !== undefined ? { typ: config.typ } : {}),
    }
    if (config.secret !== undefined || config.publicKey !== undefined) {
      this.remoteKeys = undefined
      this.ready = importStaticKey(config).then((key) => { this.key = key })
    } else {
      this.remoteKeys = new RemoteKeySet(name, config, { now: options.now, log: options.log })
      this.key = this.remoteKeys.getKey
      this.ready = Promise.resolve()
    }
  }

  /**
   * Verifies `token` (or finds it verified in the cache) and checks what may differ per route or per
   * moment on every call: expiry and max age against `nowMs`, the audience, the revocation list.
   * A "no" is a value with a client-safe detail; faults (store down with onError deny, broken IdP keys) throw.
   */
  async authenticate (token: string, nowMs: number, audienceOverride?: readonly string[]): Promise<Verification> {
    const hash = digest('sha256', token, 'base64url')
    let entry = this.cache.get(hash)
    if (entry !== undefined && nowMs >= entry.untilMs) {
      this.cache.delete(hash)
      entry = undefined
    }
    let verified: VerifiedToken
    if (entry !== undefined) {
      this.cacheStats.hits++
      verified = entry.token
      const problem = this.timeProblem(verified.payload, nowMs)
      if (problem !== undefined) return { ok: false, detail: problem }
    } else {
      this.cacheStats.misses++
      const result = await this.verify(token, nowMs)
      if (!result.ok) return result
      verified = result.token
      this.remember(hash, verified, nowMs)
    }

    const audience = audienceOverride ?? this.audience
    if (audience !== undefined && !hasAudience(verified.payload.aud, audience)) return { ok: false, detail: 'wrong audience' }
    if (this.config.revocation && await this.isRevoked(verified.payload.jti, nowMs)) return { ok: false, detail: 'token revoked' }
    return { ok: true, token: verified }
  }

  private async verify (token: string, nowMs: number): Promise<Verification> {
    let payload: JWTPayload
    try {
      if (this.key === undefined) await this.ready
      payload = await this.verifyWithAnyKey(token, { ...this.verifyOptions, currentDate: new Date(nowMs) })
    } catch (error) {
      const detail = describeFailure(error)
      if (detail === undefined) throw error
      return { ok: false, detail }
    }
    // jose checks iat only with maxTokenAge; a token "issued" in the future is not valid yet either way.
    if (typeof payload.iat === 'number' && payload.iat * 1000 > nowMs + this.toleranceMs) return { ok: false, detail: 'token not yet valid' }
    if (payload.sub !== undefined && typeof payload.sub !== 'string') return { ok: false, detail: 'malformed token' }
    if (this.config.revocation && typeof payload.jti !== 'string') return { ok: false, detail: 'malformed token' }
    const client = stringClaim(payload.client_id) ?? stringClaim(payload.azp)
    const subject = payload.sub ?? client
    if (subject === undefined || subject === '') return { ok: false, detail: 'missing sub' }
    const tier = stringClaim(payload.tier)
    deepFreeze(payload)
    const keepingClient: IdentityUpdate = {
      subject,
      ...(client !== undefined ? { client } : {}),
      // Frozen like the payload: the X-Auth-Scopes value is then joined once per cached token (gateway/identity.ts).
      scopes: Object.freeze(readScopes(payload, this.config.scopeClaim)) as string[],
      claims: payload,
      ...(tier !== undefined ? { tier } : {}),
    }
    const identity = client !== undefined ? keepingClient : { ...keepingClient, client: subject }
    return { ok: true, token: { payload, identity, identityKeepingClient: keepingClient } }
  }

  /**
   * jose leaves it to the caller when several JWKS keys fit a token (no `kid`, or a reused one):
   * each candidate is tried; the first whose signature verifies decides.
   */
  private async verifyWithAnyKey (token: string, options: JWTVerifyOptions): Promise<JWTPayload> {
    try {
      return (await jwtVerify(token, this.key as Parameters<typeof jwtVerify>[1], options)).payload
    } catch (error) {
      if (!(error instanceof errors.JWKSMultipleMatchingKeys)) throw error
      for await (const candidate of error as unknown as AsyncIterable<CryptoKey>) {
        try {
          return (await jwtVerify(token, candidate, options)).payload
        } catch (inner) {
          if (!(inner instanceof errors.JWSSignatureVerificationFailed)) throw inner
        }
      }
      throw new errors.JWSSignatureVerificationFailed()
    }
  }

  /** Expiry and max age for a cached token (jose checked them on the first verification). */
  private timeProblem (payload: JWTPayload, nowMs: number): string | undefined {
    if (typeof payload.exp === 'number' && payload.exp * 1000 <= nowMs - this.toleranceMs) return 'token expired'
    if (this.maxAgeMs !== undefined && typeof payload.iat === 'number' &&
      nowMs - payload.iat * 1000 - this.toleranceMs > this.maxAgeMs) return 'token expired'
    return undefined
  }

  private remember (hash: string, token: VerifiedToken, nowMs: number) {
    let untilMs = nowMs + TOKEN_CACHE_MAX_MS
    const { exp, iat } = token.payload
    if (typeof exp === 'number') untilMs = Math.min(untilMs, exp * 1000 + this.toleranceMs)
    if (this.maxAgeMs !== undefined && typeof iat === 'number') untilMs = Math.min(untilMs, iat * 1000 + this.maxAgeMs + this.toleranceMs)
    if (untilMs <= nowMs) return
    if (this.cache.size >= TOKEN_CACHE_MAX_ENTRIES) {
      // Oldest first out; expired entries go on their next lookup.
      const oldest = this.cache.keys().next().value
      if (oldest !== undefined) this.cache.delete(oldest)
    }
    this.cache.set(hash, { token, untilMs })
  }

  private async isRevoked (jti: unknown, nowMs: number): Promise<boolean> {
    if (typeof jti !== 'string') return true
    let until: string | null
    try {
      until = await this.options.store.get(REVOKED_PREFIX + jti)
    } catch (error) {
      if (error instanceof StoreUnavailableError && this.options.storeOnError === 'allow') {
        this.options.log.warn({ provider: this.name }, 'jwt: revocation list unavailable; store.onError is allow, so it is skipped')
        return false
      }
      throw error
    }
    if (until === null) return false
    const untilMs = Number(until)
    return !Number.isFinite(untilMs) || untilMs > nowMs
  }

  /** Number of cached verified tokens (tests, metrics). */
  get cachedTokens (): number {
    return this.cache.size
  }
}

/** The client-safe reason for a jose failure, or undefined for a fault that is not the token's (rethrown). */
export function describeFailure (error: unknown): string | undefined {
  if (error instanceof KeysUnavailableError) return 'signing keys unavailable'
  if (error instanceof errors.JWTExpired) return 'token expired'
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.reason === 'missing') {
      if (error.claim === 'exp') return 'missing exp'
      if (error.claim === 'iss') return 'wrong issuer'
      return `missing ${error.claim}`
    }
    if (error.reason !== 'check_failed') return 'malformed token'
    switch (error.claim) {
      case 'nbf':
      case 'iat': return 'token not yet valid'
      case 'iss': return 'wrong issuer'
      case 'aud': return 'wrong audience'
      case 'typ': return 'wrong token type'
      default: return 'malformed token'
    }
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return 'algorithm not allowed'
  if (error instanceof errors.JWSSignatureVerificationFailed) return 'bad signature'
  if (error instanceof errors.JWKSNoMatchingKey) return 'unknown signing key'
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid || error instanceof errors.JOSENotSupported) return 'malformed token'
  return undefined
}

const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/

/** Scopes from the configured claim, else `scope` then `scp`: a space-separated string or an array of strings. */
export function readScopes (claims: Readonly<Record<string, unknown>>, claim?: string): string[] {
  const value = claim !== undefined ? claims[claim] : claims.scope ?? claims.scp
  if (typeof value === 'string') return value.split(' ').filter((scope) => scope !== '')
  // Only RFC 6749 §3.3 scope-tokens: `"read admin"` would reach the upstream as two scopes in X-Auth-Scopes.
  if (Array.isArray(value)) return value.filter((scope): scope is string => typeof scope === 'string' && SCOPE_TOKEN.test(scope))
  return []
}

export function hasAudience (aud: unknown, expected: readonly string[]): boolean {
  if (typeof aud === 'string') return expected.includes(aud)
  if (Array.isArray(aud)) return aud.some((value) => typeof value === 'string' && expected.includes(value))
  return false
}

export function toList (value: string | readonly string[] | undefined): readonly string[] | undefined {
  if (value === undefined) return undefined
  return typeof value === 'string' ? [value] : value
}

function stringClaim (value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined
}

function deepFreeze (value: unknown) {
  if (typeof value !== 'object' || value === null || Object.isFrozen(value)) return
  Object.freeze(value)
  for (const child of Object.values(value)) deepFreeze(child)
}
