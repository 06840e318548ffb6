import { createPrivateKey, randomBytes, type KeyObject } from 'node:crypto'
import { jwtVerify, SignJWT, type JWTPayload } from 'jose'
import { request } from 'undici'
import { GatewayError } from '../../gateway/errors.js'
import { parseDuration, parseSize } from '../../gateway/config/units.js'
import type { Logger } from '../../gateway/log.js'
import { fetchJson, RemoteSourceError, remoteUrlProblem } from '../jwt/http.js'
import { RemoteKeySet } from '../jwt/keys.js'
import type { ProviderConfig } from '../jwt/section.js'
import type { OidcClientConfig } from './schema.js'

/** The provider could not be reached or answered nonsense: the session goes on, the request is 503. */
export class IdpUnavailableError extends GatewayError {
  constructor (message: string, options?: ErrorOptions) {
    super(503, 'upstream_unavailable', message, options)
  }
}

export interface ProviderMetadata {
  readonly issuer: string
  readonly authorization_endpoint: string
  readonly token_endpoint: string
  readonly jwks_uri: string
  readonly userinfo_endpoint?: string
  readonly end_session_endpoint?: string
  readonly authorization_response_iss_parameter_supported?: boolean
}

/** A token endpoint's answer: tokens, or the OAuth error it gave (`invalid_grant`). */
export type TokenResponse =
  | { readonly ok: true, readonly accessToken: string, readonly expiresInS: number | undefined, readonly refreshToken: string | undefined, readonly idToken: string | undefined, readonly scope: string | undefined }
  | { readonly ok: false, readonly error: string }

const ID_TOKEN_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']
const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout'

/**
 * One `oidcClients` entry at run time: discovery (lazy, retried until it succeeds), the provider's keys, and the
 * calls the gateway makes as that client (token, userinfo). Built once per configuration generation.
 */
export class OidcClient {
  readonly name: string
  readonly config: OidcClientConfig
  readonly keys: RemoteKeySet
  readonly #timeoutMs: number
  readonly #maxBytes: number
  readonly #signingKey: KeyObject | undefined
  #metadata: ProviderMetadata | undefined
  #discovering: Promise<ProviderMetadata> | undefined
  readonly #now: () => number

  constructor (name: string, config: OidcClientConfig, options: { now: () => number, log: Logger, privateKeyPem?: string }) {
    this.name = name
    this.config = config
    this.#now = options.now
    this.#timeoutMs = parseDuration(config.timeout)
    this.#maxBytes = parseSize(config.maxResponseBytes)
    this.#signingKey = options.privateKeyPem === undefined ? undefined : createPrivateKey(options.privateKeyPem)
    const provider = {
      issuer: config.issuer, discovery: true, algorithms: ID_TOKEN_ALGS, jwksCacheTtl: '10m', jwksCooldown: '30s',
      jwksStaleGrace: '1h', timeout: config.timeout, maxResponseBytes: config.maxResponseBytes,
    } as unknown as ProviderConfig
    this.keys = new RemoteKeySet(`oidc:${name}`, provider, { now: options.now, log: options.log })
  }

  /** OIDC Discovery, once; a failure is not remembered (the next login tries again). */
  async metadata (): Promise<ProviderMetadata> {
    if (this.#metadata) return this.#metadata
    this.#discovering ??= this.#discover().finally(() => { this.#discovering = undefined })
    return await this.#discovering
  }

  async #discover (): Promise<ProviderMetadata> {
    const url = `${this.config.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`
    let document: Record<string, unknown>
    try {
      document = await fetchJson(url, { timeoutMs: this.#timeoutMs, maxBytes: this.#maxBytes }) as Record<string, unknown>
    } catch (error) {
      throw new IdpUnavailableError(`discovery of "${this.name}" failed`, { cause: error })
    }
    if (typeof document !== 'object' || document === null || document.issuer !== this.config.issuer) {
      throw new IdpUnavailableError(`discovery of "${this.name}": ${url} names another issuer`)
    }
    for (const field of ['authorization_endpoint', 'token_endpoint', 'jwks_uri', 'userinfo_endpoint', 'end_session_endpoint']) {
      const value = document[field]
      if (value === undefined && (field === 'userinfo_endpoint' || field === 'end_session_endpoint')) continue
      if (typeof value !== 'string' || remoteUrlProblem(value) !== undefined) {
        throw new IdpUnavailableError(`discovery of "${this.name}": ${field} is missing or not an https URL`)
      }
    }
    this.#metadata = document as unknown as ProviderMetadata
    return this.#metadata
  }

  /** `authorization_code` grant with the PKCE verifier. */
  async exchangeCode (code: string, verifier: string): Promise<TokenResponse> {
    return await this.#token({ grant_type: 'authorization_code', code, redirect_uri: this.config.redirectUri, code_verifier: verifier })
  }

  async refresh (refreshToken: string): Promise<TokenResponse> {
    return await this.#token({ grant_type: 'refresh_token', refresh_token: refreshToken })
  }

  /** The ID token verified (OIDC Core §3.1.3.7): signature by the JWKS, iss, aud, azp, exp, and nonce when given. */
  async verifyIdToken (idToken: string, nonce: string | undefined): Promise<JWTPayload> {
    const { payload } = await jwtVerify(idToken, this.keys.getKey, {
      issuer: this.config.issuer, audience: this.config.clientId, algorithms: ID_TOKEN_ALGS,
      requiredClaims: ['sub', 'exp', 'iat'], clockTolerance: 30, currentDate: new Date(this.#now()),
    })
    const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud]
    if ((audiences.length > 1 || payload.azp !== undefined) && payload.azp !== this.config.clientId) throw new Error('azp does not name this client')
    if (nonce !== undefined && payload.nonce !== nonce) throw new Error('nonce does not match')
    return payload
  }

  /** OpenID Back-Channel Logout 1.0 §2.6: the logout token's checks. Throws when any fails. */
  async verifyLogoutToken (token: string): Promise<{ sid?: string, sub?: string, jti: string }> {
    const { payload } = await jwtVerify(token, this.keys.getKey, {
      issuer: this.config.issuer, audience: this.config.clientId, algorithms: ID_TOKEN_ALGS,
      requiredClaims: ['iat', 'jti'], maxTokenAge: '5m', clockTolerance: 30, currentDate: new Date(this.#now()),
    })
    const events = payload.events as Record<string, unknown> | undefined
    if (typeof events !== 'object' || events === null || typeof events[BACKCHANNEL_EVENT] !== 'object') throw new Error('not a logout token')
    if (payload.nonce !== undefined) throw new Error('a logout token has no nonce')
    const sid = typeof payload.sid === 'string' ? payload.sid : undefined
    const sub = typeof payload.sub === 'string' ? payload.sub : undefined
    if (sid === undefined && sub === undefined) throw new Error('a logout token names sid or sub')
    return { sid, sub, jti: payload.jti! }
  }

  /** The userinfo claims, one call with the access token. */
  async userinfo (accessToken: string): Promise<Record<string, unknown> | undefined> {
    const metadata = await this.metadata()
    if (metadata.userinfo_endpoint === undefined) return undefined
    try {
      const body = await fetchJson(metadata.userinfo_endpoint, { timeoutMs: this.#timeoutMs, maxBytes: this.#maxBytes, headers: { authorization: `Bearer ${accessToken}` } })
      return typeof body === 'object' && body !== null && !Array.isArray(body) ? body as Record<string, unknown> : undefined
    } catch (error) {
      throw new IdpUnavailableError(`userinfo of "${this.name}" failed`, { cause: error })
    }
  }

  async #token (params: Record<string, string>): Promise<TokenResponse> {
    const metadata = await this.metadata()
    const form = new URLSearchParams(params)
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' }
    if (this.#signingKey !== undefined) {
      form.set('client_id', this.config.clientId)
      form.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer')
      form.set('client_assertion', await this.#assertion(metadata))
    } else if (this.config.clientSecret !== undefined) {
      // RFC 6749 §2.3.1: id and secret are form-encoded before Basic.
      const user = encodeURIComponent(this.config.clientId)
      const password = encodeURIComponent(this.config.clientSecret)
      headers.authorization = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
    } else {
      form.set('client_id', this.config.clientId)
    }
    let response: Awaited<ReturnType<typeof request>>
    try {
      response = await request(metadata.token_endpoint, {
        method: 'POST', headers, body: form.toString(),
        headersTimeout: this.#timeoutMs, bodyTimeout: this.#timeoutMs, signal: AbortSignal.timeout(this.#timeoutMs),
      })
    } catch (error) {
      throw new IdpUnavailableError(`token endpoint of "${this.name}" unreachable`, { cause: error })
    }
    const { statusCode, body } = response
    body.on('error', () => {})
    let text: string
    try {
      text = await readLimited(body, this.#maxBytes)
    } catch (error) {
      throw new IdpUnavailableError(`token endpoint of "${this.name}" answered too much`, { cause: error })
    }
    let json: Record<string, unknown> | undefined
    try { json = JSON.parse(text) as Record<string, unknown> } catch {}
    if (statusCode >= 400 && statusCode < 500 && typeof json?.error === 'string') return { ok: false, error: json.error }
    if (statusCode !== 200 || json === undefined || typeof json.access_token !== 'string') {
      throw new IdpUnavailableError(`token endpoint of "${this.name}" answered ${statusCode}`)
    }
    const expires = Number(json.expires_in)
    return {
      ok: true,
      accessToken: json.access_token,
      expiresInS: Number.isFinite(expires) && expires > 0 ? expires : undefined,
      refreshToken: typeof json.refresh_token === 'string' ? json.refresh_token : undefined,
      idToken: typeof json.id_token === 'string' ? json.id_token : undefined,
      scope: typeof json.scope === 'string' ? json.scope : undefined,
    }
  }

  /** RFC 7523 §3 client assertion, one minute long, a fresh jti. */
  async #assertion (metadata: ProviderMetadata): Promise<string> {
    const { alg, kid } = this.config.privateKeyJwt!
    const nowS = Math.floor(this.#now() / 1000)
    return await new SignJWT({})
      .setProtectedHeader({ alg, ...(kid ? { kid } : {}) })
      .setIssuer(this.config.clientId).setSubject(this.config.clientId).setAudience(metadata.issuer)
      .setIssuedAt(nowS).setExpirationTime(nowS + 60).setJti(randomBytes(16).toString('base64url'))
      .sign(this.#signingKey!)
  }
}

async function readLimited (body: AsyncIterable<Buffer>, maxBytes: number): Promise<string> {
  const chunks: Buffer[] = []
  let total = 0
  for await (const chunk of body) {
    total += chunk.length
    if (total > maxBytes) throw new RemoteSourceError(`more than ${maxBytes} bytes`)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks, total).toString('utf8')
}
