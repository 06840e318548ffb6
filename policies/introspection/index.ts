import { createHash } from 'node:crypto'
import { isRejection, type ConfigIssue } from '../../gateway/errors.js'
import { parseDuration, parseSize } from '../../gateway/config/units.js'
import type { Logger } from '../../gateway/log.js'
import type { IdentityUpdate, PolicyDefinition } from '../types.js'
import { bearerChallenge, invalidToken, readBearer } from '../jwt/bearer.js'
import { fetchJson, RemoteSourceError, remoteUrlProblem } from '../jwt/http.js'
import { hasAudience, readScopes, toList } from '../jwt/provider.js'
import { schema, type IntrospectionConfig } from './schema.js'

/** Answers kept at most this many (oldest first out). */
export const INTROSPECTION_CACHE_MAX_ENTRIES = 10_000

/** An introspection answer as the policy uses it. */
export type Answer =
  | {
    readonly active: true
    readonly response: Readonly<Record<string, unknown>>
    /** `client` is `client_id`, else the subject (when no earlier step of the chain provided a client). */
    readonly identity: IdentityUpdate
    /** After a step that provided a client: `client` only from `client_id` (else `identity` itself). */
    readonly identityKeepingClient: IdentityUpdate
    readonly expMs: number | undefined
  }
  | { readonly active: false }

interface Entry {
  readonly answer: Answer
  readonly untilMs: number
}

const INACTIVE: Answer = Object.freeze({ active: false })

/**
 * RFC 7662 client for one endpoint and client: answers cached by endpoint + client id + SHA-256 of
 * the token (active ones until min(exp, cacheTtl), inactive ones for negativeTtl), concurrent questions
 * about one token share one request, and failures are thrown (RemoteSourceError), never cached.
 */
export class Introspector {
  readonly stats = { requests: 0, hits: 0 }
  private readonly cache = new Map<string, Entry>()
  private readonly inflight = new Map<string, Promise<Answer>>()
  private readonly config: IntrospectionConfig
  private readonly cacheTtlMs: number
  private readonly negativeTtlMs: number
  private readonly timeoutMs: number
  private readonly maxBytes: number
  private readonly headers: Record<string, string>

  constructor (config: IntrospectionConfig) {
    this.config = config
    this.cacheTtlMs = parseDuration(config.cacheTtl)
    this.negativeTtlMs = parseDuration(config.negativeTtl)
    this.timeoutMs = parseDuration(config.timeout)
    this.maxBytes = parseSize(config.maxResponseBytes)
    this.headers = { 'content-type': 'application/x-www-form-urlencoded' }
    if (config.auth === 'client_secret_basic') {
      // RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined and base64-encoded.
      const credentials = `${formEncode(config.clientId)}:${formEncode(config.clientSecret)}`
      this.headers.authorization = `Basic ${Buffer.from(credentials).toString('base64')}`
    }
  }

  async introspect (token: string, nowMs: number): Promise<Answer> {
    const key = `${this.config.endpoint} ${this.config.clientId} ${createHash('sha256').update(token).digest('base64url')}`
    const entry = this.cache.get(key)
    if (entry !== undefined) {
      if (nowMs < entry.untilMs) {
        this.stats.hits++
        return entry.answer
      }
      this.cache.delete(key)
    }
    let pending = this.inflight.get(key)
    if (pending === undefined) {
      pending = this.ask(token, key, nowMs).finally(() => this.inflight.delete(key))
      this.inflight.set(key, pending)
    }
    return await pending
  }

  private async ask (token: string, key: string, nowMs: number): Promise<Answer> {
    this.stats.requests++
    const form = new URLSearchParams({ token, token_type_hint: 'access_token' })
    if (this.config.auth === 'client_secret_post') {
      form.set('client_id', this.config.clientId)
      form.set('client_secret', this.config.clientSecret)
    }
    const response = await fetchJson(this.config.endpoint, {
      method: 'POST', headers: this.headers, body: form.toString(), timeoutMs: this.timeoutMs, maxBytes: this.maxBytes,
    })
    if (typeof response !== 'object' || response === null || Array.isArray(response)) {
      throw new RemoteSourceError(`${this.config.endpoint} did not answer a JSON object`)
    }
    const answer = toAnswer(response as Record<string, unknown>)
    const untilMs = answer.active
      ? Math.min(nowMs + this.cacheTtlMs, answer.expMs ?? Infinity)
      : nowMs + this.negativeTtlMs
    if (untilMs > nowMs) this.remember(key, { answer, untilMs })
    return answer
  }

  private remember (key: string, entry: Entry) {
    if (this.cache.size >= INTROSPECTION_CACHE_MAX_ENTRIES) {
      const oldest = this.cache.keys().next().value
      if (oldest !== undefined) this.cache.delete(oldest)
    }
    this.cache.set(key, entry)
  }
}

/**
 * `active` must be the JSON `true`. Refresh tokens (token_type other than bearer/access_token) and
 * sender-constrained tokens (`cnf`: mTLS/DPoP bound, whose proof we do not check) are not bearer access tokens.
 */
function toAnswer (response: Record<string, unknown>): Answer {
  if (response.active !== true) return INACTIVE
  const tokenType = response.token_type
  if (tokenType !== undefined && (typeof tokenType !== 'string' || !['bearer', 'access_token'].includes(tokenType.toLowerCase()))) return INACTIVE
  if (response.cnf !== undefined) return INACTIVE
  const sub = typeof response.sub === 'string' && response.sub !== '' ? response.sub : undefined
  const clientId = typeof response.client_id === 'string' && response.client_id !== '' ? response.client_id : undefined
  const username = typeof response.username === 'string' && response.username !== '' ? response.username : undefined
  const subject = sub ?? clientId ?? username
  if (subject === undefined) return INACTIVE
  const claims = Object.freeze({ ...response })
  const tier = typeof response.tier === 'string' ? response.tier : undefined
  const keepingClient: IdentityUpdate = Object.freeze({
    subject,
    ...(clientId !== undefined ? { client: clientId } : {}),
    scopes: readScopes(claims, 'scope'),
    claims,
    ...(tier !== undefined ? { tier } : {}),
  })
  return Object.freeze({
    active: true as const,
    response: claims,
    identity: clientId !== undefined ? keepingClient : Object.freeze({ ...keepingClient, client: subject }),
    identityKeepingClient: keepingClient,
    expMs: typeof response.exp === 'number' ? response.exp * 1000 : undefined,
  })
}

function formEncode (value: string): string {
  return encodeURIComponent(value).replace(/%20/g, '+')
}

/**
 * `introspection: { endpoint, clientId, clientSecret, ... }`: an opaque bearer token checked with the
 * IdP (RFC 7662). A failed introspection (timeout, non-2xx, bad answer) is 401 `invalid_token`
 * "token introspection unavailable": never allowed, never cached.
 */
export const introspection: PolicyDefinition<IntrospectionConfig> = {
  key: 'introspection',
  schema,
  authenticates: true,
  credential: 'bearer',

  check (config) {
    const issues: ConfigIssue[] = []
    const problem = remoteUrlProblem(config.endpoint)
    if (problem !== undefined) issues.push({ severity: 'error', path: ['endpoint'], message: `endpoint ${problem}`, fix: 'use the IdP\'s https introspection URL' })
    return issues
  },

  create (config, deps) {
    const secretHash = createHash('sha256').update(config.clientSecret).digest('hex')
    const introspector = deps.shared(`introspection:${JSON.stringify([config.endpoint, config.clientId, secretHash, config.auth,
      config.cacheTtl, config.negativeTtl, config.timeout, config.maxResponseBytes])}`, () => new Introspector(config))
    const { realm } = deps
    const audience = toList(config.audience)
    const warn = throttledWarning(deps.log, deps.now)

    return {
      challenge: bearerChallenge(realm),
      credentialHeaders: config.passthrough ? [] : ['authorization'],
      credential: 'bearer',
      async evaluate (ctx) {
        const token = readBearer(ctx, realm)
        if (isRejection(token)) return token
        const nowMs = ctx.now()
        let answer: Answer
        try {
          answer = await introspector.introspect(token, nowMs)
        } catch (error) {
          if (!(error instanceof RemoteSourceError)) throw error
          warn(error)
          return invalidToken(realm, 'token introspection unavailable')
        }
        if (!answer.active) return invalidToken(realm, 'token not active')
        if (answer.expMs !== undefined && answer.expMs <= nowMs) return invalidToken(realm, 'token expired')
        if (audience !== undefined && !hasAudience(answer.response.aud, audience)) return invalidToken(realm, 'wrong audience')
        // As for a JWT: without client_id, the subject becomes the client only if no earlier step named one.
        return { identity: ctx.identity.client ? answer.identityKeepingClient : answer.identity }
      },
    }
  },
}

/** One warning per 10 s at most while the endpoint fails, so an outage does not flood the log. */
function throttledWarning (log: Logger, now: () => number) {
  let lastMs = -Infinity
  return (error: Error) => {
    if (now() - lastMs < 10_000) return
    lastMs = now()
    log.warn({ err: error.message }, 'introspection: the endpoint could not answer; tokens are refused meanwhile')
  }
}
