/**
 * The signed identity for upstreams (DESIGN.md "Identity values", "Signed identity claims"): a short-lived JWT
 * (ES256 or EdDSA) in `X-Auth-Identity`, public keys at the admin listener's `/.well-known/jwks.json`.
 *
 * The signing key comes from `identity.signed.keyFile` (PKCS#8 PEM), or is generated once and kept in the store
 * so every instance signs with the same key and serves the same JWKS. The store then holds a private key: access
 * to Redis is trusted, as the threat model already assumes (it also holds API-key records and counters).
 */
import { createHash, randomUUID } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, importPKCS8, type CryptoKey, type JWK } from 'jose'
import type { Identity } from '../policies/types.js'
import type { AdminRoute } from './admin.js'
import type { IdentityConfig } from './config/types.js'
import { parseDuration } from './config/units.js'
import { ConfigError, StoreUnavailableError } from './errors.js'
import type { Logger } from './log.js'
import type { DecideEnv } from './pipeline/decide.js'
import type { Store } from './store/types.js'

export type SignedIdentityConfig = NonNullable<IdentityConfig['signed']>
export type SigningAlgorithm = SignedIdentityConfig['algorithm']

/** Store key of the shared key record, and the channel that tells every instance to reload it after a rotation. */
export const SIGNING_KEY = 'identity:signing-key'
/**
 * `setIfAbsent` needs a TTL: the generated key is first written with 400 days (SET NX PX), and the instance that
 * won the race then rewrites it without expiry, so a signing key never vanishes by itself (rotation replaces it).
 */
const CREATE_TTL_MS = 400 * 86_400_000
/** How often an instance re-reads the key record even without a rotation message (pub/sub may be lost). */
const REFRESH_MS = 60_000
/** After a failed background reload, wait this long before the next attempt. */
const RETRY_MS = 5_000
/** The JWKS endpoint re-reads the record when it is older than this, so it never lags a rotation by much. */
const JWKS_FRESH_MS = 5_000
/** Signed tokens kept for reuse; beyond this the oldest entries go. */
const CACHE_ENTRIES = 10_000

export interface SignerDeps {
  readonly store: Store
  /** Folder of the config file: a relative keyFile is resolved against it. */
  readonly baseDir: string
  readonly log?: Logger
  /** Clock in ms (tests fake it). */
  readonly now?: () => number
}

interface ActiveKey {
  readonly kid: string
  readonly key: CryptoKey
  readonly publicJwk: JWK
}

interface RetiredKey {
  readonly kid: string
  readonly publicJwk: JWK
  /** When it stopped signing (ms); listed in the JWKS until retiredAt + 2 × ttl. */
  readonly retiredAt: number
}

/** What the store holds under SIGNING_KEY (JSON). */
interface KeyRecord {
  readonly v: 1
  readonly alg: SigningAlgorithm
  readonly current: { readonly kid: string, readonly jwk: JWK, readonly createdAt: number }
  readonly previous: readonly RetiredKey[]
}

/**
 * Signs identities for upstreams. `sign` reuses a token for the same identity and audience until half its
 * lifetime has passed, so signing is not a per-request cost. Rotation keeps the previous public key in the JWKS
 * for at least twice the token lifetime, so tokens signed just before it still verify.
 */
export class IdentitySigner {
  readonly header: string
  readonly issuer: string
  readonly algorithm: SigningAlgorithm
  readonly ttlMs: number
  readonly #store: Store
  readonly #log: Logger | undefined
  readonly #now: () => number
  /** Set when the key comes from keyFile: the store is not used. */
  readonly #fixed: boolean
  #current: ActiveKey | undefined
  #previous: RetiredKey[] = []
  #loadedAt = -Infinity
  #refreshAfter = -Infinity
  #loading: Promise<void> | undefined
  readonly #cache = new Map<string, { token: string, kid: string, refreshAt: number }>()
  #unsubscribe: (() => void) | undefined

  private constructor (config: SignedIdentityConfig, deps: SignerDeps, fixed: ActiveKey | undefined) {
    this.header = config.header
    this.issuer = config.issuer
    this.algorithm = config.algorithm
    this.ttlMs = parseDuration(config.ttl)
    if (!(this.ttlMs >= 1000)) throw new ConfigError([{ severity: 'error', path: ['identity', 'signed', 'ttl'], message: 'the signed identity needs a ttl of at least 1s' }])
    this.#store = deps.store
    this.#log = deps.log
    this.#now = deps.now ?? Date.now
    this.#fixed = fixed !== undefined
    this.#current = fixed
  }

  /**
   * Loads the key: from keyFile (a ConfigError names a missing, unreadable or mismatched file), or from the store,
   * generating it when no instance has yet. When the store is down the signer starts anyway and loads the key on
   * first use (until then `sign` rejects with StoreUnavailableError).
   */
  static async create (config: SignedIdentityConfig, deps: SignerDeps): Promise<IdentitySigner> {
    if (config.keyFile !== undefined) {
      const key = await readKeyFile(resolve(deps.baseDir, config.keyFile), config.algorithm)
      return new IdentitySigner(config, deps, key)
    }
    const signer = new IdentitySigner(config, deps, undefined)
    try {
      signer.#unsubscribe = deps.store.subscribe(SIGNING_KEY, () => {
        signer.refresh().catch((err: unknown) => signer.#log?.warn({ err: { message: (err as Error).message } }, 'signing key reload failed'))
      })
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error
    }
    try {
      await signer.refresh()
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error
      signer.#log?.warn({ err: { message: error.message } }, 'store unavailable: the identity signing key will be loaded on first use')
    }
    return signer
  }

  /** The `X-Auth-Identity` token for this identity and upstream (the audience). */
  async sign (identity: Identity, audience: string): Promise<string> {
    const now = this.#now()
    if (this.#current === undefined) await this.refresh()
    else if (!this.#fixed && now >= this.#refreshAfter) {
      this.#refreshAfter = now + RETRY_MS // one background reload at a time, retried after a pause if it fails
      this.refresh().catch((err: unknown) => this.#log?.warn({ err: { message: (err as Error).message } }, 'signing key reload failed; still signing with the loaded key'))
    }
    const key = this.#current
    if (!key) throw new StoreUnavailableError('the identity signing key is not loaded')

    const fingerprint = createHash('sha256')
      .update(JSON.stringify([audience, identity.subject, identity.client, identity.methods, identity.scopes]))
      .digest('base64url')
    const cached = this.#cache.get(fingerprint)
    if (cached && cached.kid === key.kid && now < cached.refreshAt) return cached.token

    const iat = Math.floor(now / 1000)
    const token = await new SignJWT({
      client: identity.client,
      methods: [...identity.methods],
      scope: identity.scopes.join(' '), // RFC 9068 §2.2.3: space-separated
    })
      .setProtectedHeader({ alg: this.algorithm, kid: key.kid, typ: 'JWT' })
      .setIssuer(this.issuer)
      .setAudience(audience)
      .setSubject(identity.subject)
      .setIssuedAt(iat)
      .setExpirationTime(iat + Math.ceil(this.ttlMs / 1000))
      .setJti(randomUUID())
      .sign(key.key)
    if (this.#cache.size >= CACHE_ENTRIES) this.#cache.delete(this.#cache.keys().next().value!)
    // Reused for half its lifetime: an upstream always receives a token with at least ttl/2 left.
    this.#cache.set(fingerprint, { token, kid: key.kid, refreshAt: now + this.ttlMs / 2 })
    return token
  }

  /** The public keys: the signing key, and keys retired less than 2 × ttl ago. */
  jwks (): { keys: JWK[] } {
    const now = this.#now()
    const keys = this.#current ? [this.#current.publicJwk] : []
    for (const old of this.#previous) {
      if (now < old.retiredAt + 2 * this.ttlMs && !keys.some((k) => k.kid === old.kid)) keys.push(old.publicJwk)
    }
    return { keys }
  }

  /** The kid new tokens are signed with (undefined until the key is loaded). */
  get kid (): string | undefined {
    return this.#current?.kid
  }

  /**
   * Replaces the shared signing key with a new one and tells every instance. The old public key stays in the
   * JWKS for 2 × ttl. Run it from one place at a time (the last writer wins). Not available with keyFile:
   * replace the file and reload instead.
   */
  async rotate (): Promise<void> {
    if (this.#fixed) throw new TypeError('the signing key comes from identity.signed.keyFile: replace the file to rotate it')
    const now = this.#now()
    const stored = parseRecord(await this.#store.get(SIGNING_KEY))
    const retired: RetiredKey[] = stored ? [{ kid: stored.current.kid, publicJwk: publicOf(stored.current.jwk, stored.current.kid, stored.alg), retiredAt: now }] : []
    const keep = (stored?.previous ?? []).filter((old) => now < old.retiredAt + 2 * this.ttlMs)
    const record: KeyRecord = { ...await this.#newRecord(now), previous: [...retired, ...keep] }
    await this.#store.set(SIGNING_KEY, JSON.stringify(record))
    await this.#apply(record)
    this.#log?.info({ kid: record.current.kid }, 'identity signing key rotated')
    await this.#store.publish(SIGNING_KEY, record.current.kid)
  }

  /** Re-reads the shared key record (generating it when absent). Concurrent calls share one read. */
  refresh (): Promise<void> {
    if (this.#fixed) return Promise.resolve()
    this.#loading ??= this.#load().finally(() => { this.#loading = undefined })
    return this.#loading
  }

  /** Refreshes when the loaded record is older than maxAgeMs; keeps serving the loaded keys if the store fails. */
  async refreshIfOlderThan (maxAgeMs: number): Promise<void> {
    if (this.#fixed || this.#now() - this.#loadedAt <= maxAgeMs) return
    try {
      await this.refresh()
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error
    }
  }

  close (): void {
    this.#unsubscribe?.()
    this.#unsubscribe = undefined
    this.#cache.clear()
  }

  async #load (): Promise<void> {
    let record = parseRecord(await this.#store.get(SIGNING_KEY))
    if (!record) {
      const fresh = await this.#newRecord(this.#now())
      const text = JSON.stringify(fresh)
      if (await this.#store.setIfAbsent(SIGNING_KEY, text, CREATE_TTL_MS)) {
        await this.#store.set(SIGNING_KEY, text) // now without expiry
        this.#log?.info({ kid: fresh.current.kid }, 'identity signing key generated and stored')
        record = fresh
      } else {
        record = parseRecord(await this.#store.get(SIGNING_KEY))
        if (!record) throw new StoreUnavailableError('the identity signing key record cannot be read')
      }
    }
    await this.#apply(record)
  }

  async #apply (record: KeyRecord): Promise<void> {
    if (record.alg !== this.algorithm) {
      // Another configuration generated it: say so rather than sign with an algorithm nobody configured.
      throw new ConfigError([{ severity: 'error', path: ['identity', 'signed', 'algorithm'], message: `the shared signing key in the store is ${record.alg}, not ${this.algorithm}`, fix: `set algorithm: ${record.alg}, or delete the store key "${SIGNING_KEY}" to generate a new one` }])
    }
    if (this.#current?.kid !== record.current.kid) {
      const key = await importJWK(record.current.jwk, record.alg) as CryptoKey
      this.#current = { kid: record.current.kid, key, publicJwk: publicOf(record.current.jwk, record.current.kid, record.alg) }
      this.#cache.clear()
    }
    this.#previous = record.previous.map((old) => ({ ...old, publicJwk: publicOf(old.publicJwk, old.kid, record.alg) }))
    this.#loadedAt = this.#now()
    this.#refreshAfter = this.#loadedAt + REFRESH_MS
  }

  async #newRecord (now: number): Promise<Omit<KeyRecord, 'previous'> & { previous: RetiredKey[] }> {
    const { privateKey } = await generateKeyPair(this.algorithm, { extractable: true, ...(this.algorithm === 'EdDSA' ? { crv: 'Ed25519' } : {}) })
    const jwk = await exportJWK(privateKey)
    const kid = await calculateJwkThumbprint(publicOf(jwk, '', this.algorithm))
    return { v: 1, alg: this.algorithm, current: { kid, jwk, createdAt: now }, previous: [] }
  }
}

/**
 * The `RequestHandler.hooks.upstreamIdentity` hook: adds the signed identity for the route's upstream
 * (`aud` = the upstream name). It runs only for authenticated requests.
 */
export function signedIdentityHook (signer: IdentitySigner, headerName: string = signer.header): NonNullable<DecideEnv['upstreamIdentity']> {
  const name = headerName.toLowerCase()
  return async (result, route, headers) => {
    headers[name] = await signer.sign(result.identity, route.upstream.name)
  }
}

/**
 * `GET /.well-known/jwks.json` on the admin listener: public keys, no token needed (RFC 7517 JWK Set). Takes the
 * signer, or a function returning the current one (so a reload can swap it); without a signer the path is not served.
 */
export function jwksAdminRoute (source: IdentitySigner | (() => IdentitySigner | undefined)): AdminRoute {
  return async (req: IncomingMessage, res: ServerResponse, url: URL) => {
    if (url.pathname !== '/.well-known/jwks.json' || (req.method !== 'GET' && req.method !== 'HEAD')) return false
    const signer = typeof source === 'function' ? source() : source
    if (!signer) return false
    const maxAge = Math.max(1, Math.min(60, Math.floor(signer.ttlMs / 2000)))
    await signer.refreshIfOlderThan(JWKS_FRESH_MS)
    const body = JSON.stringify(signer.jwks())
    res.writeHead(200, {
      'Content-Type': 'application/jwk-set+json',
      'Content-Length': Buffer.byteLength(body),
      // Short: verifiers refetch on an unknown kid anyway, and a rotation must reach them quickly.
      'Cache-Control': `public, max-age=${maxAge}`,
    })
    res.end(req.method === 'HEAD' ? undefined : body)
    return true
  }
}

/** The public half of a JWK, with kid, alg and use (never `d`). */
function publicOf (jwk: JWK, kid: string, alg: SigningAlgorithm): JWK {
  const { kty, crv, x, y } = jwk
  return {
    kty,
    crv,
    x,
    ...(y !== undefined ? { y } : {}),
    ...(kid !== '' ? { kid, alg, use: 'sig' } : {}),
  }
}

function parseRecord (text: string | null): KeyRecord | undefined {
  if (text === null) return undefined
  try {
    const record = JSON.parse(text) as KeyRecord
    if (record.v !== 1 || typeof record.current?.kid !== 'string' || typeof record.current.jwk !== 'object' || !Array.isArray(record.previous)) return undefined
    return record
  } catch {
    return undefined
  }
}

async function readKeyFile (file: string, algorithm: SigningAlgorithm): Promise<ActiveKey> {
  const issue = (message: string, fix: string) => new ConfigError([{ severity: 'error', path: ['identity', 'signed', 'keyFile'], message, fix }])
  let pem: string
  try {
    pem = await readFile(file, 'utf8')
  } catch (error) {
    throw issue(`cannot read the signing key ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`, 'point keyFile at a PKCS#8 PEM private key')
  }
  let key: CryptoKey
  try {
    key = await importPKCS8(pem.trim(), algorithm, { extractable: true })
  } catch (error) {
    throw issue(`the signing key in ${file} is not a PKCS#8 ${algorithm === 'ES256' ? 'P-256 EC' : 'Ed25519'} private key (${(error as Error).message})`,
      algorithm === 'ES256'
        ? 'openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out identity.key'
        : 'openssl genpkey -algorithm ed25519 -out identity.key')
  }
  const jwk = await exportJWK(key)
  const kid = await calculateJwkThumbprint(publicOf(jwk, '', algorithm))
  // Sign with a non-extractable copy: the extractable one was needed only to derive the public key.
  const signing = await importPKCS8(pem.trim(), algorithm)
  return { kid, key: signing, publicJwk: publicOf(jwk, kid, algorithm) }
}
