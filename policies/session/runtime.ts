import { parseDuration } from '../../gateway/config/units.js'
import { clientKey } from '../../gateway/net.js'
import { Rejection, type Challenge } from '../../gateway/errors.js'
import type { Logger } from '../../gateway/log.js'
import { problemBody } from '../../gateway/problem.js'
import type { Store } from '../../gateway/store/types.js'
import type { CookieOwner, MetricsReporter, ReportedMetric, RequestContext, ReservedAnswer, ReservedEndpoints, ReservedRequest } from '../types.js'
import { pkceChallenge, randomToken, sha256, SessionKeys } from './crypto.js'
import { IdpUnavailableError, type OidcClient, type TokenResponse } from './oidc.js'
import { safeRedirect } from './redirect.js'
import type { SessionsConfig } from './schema.js'

/** Store keys (the store adds its prefix). Session ids and states are never stored: only their SHA-256. */
const RECORD = 'session:s:'
const SEEN = 'session:seen:'
const LOCK = 'session:lock:'
const TX = 'session:tx:'
const TX_USED = 'session:txused:'
const BY_SID = 'session:sid:'
const BY_SUB = 'session:sub:'
const JTI = 'session:jti:'

const TX_TTL_MS = 10 * 60_000
const LOGIN_LIMIT = 'session:logins:'
const JTI_TTL_MS = 10 * 60_000
/** An access token this close to its expiry is refreshed before forwarding. */
export const REFRESH_MARGIN_MS = 30_000
/** The idle timeout is written back at most this often. */
const TOUCH_EVERY_MS = 60_000
/** The refresh lock's lease, renewed every LEASE_MS / 3 while the provider answers. */
const LEASE_MS = 6_000
const WAIT_POLL_MS = 40
const MAX_FORM_BYTES = 64 * 1024
const UNSAFE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])
/** Claims of the ID token that say nothing about the user. */
const TECHNICAL_CLAIMS = ['nonce', 'at_hash', 'c_hash', 's_hash', 'auth_time', 'iat', 'exp', 'nbf', 'jti']

/** What the store holds for one session, sealed. */
export interface SessionRecord {
  readonly v: 1
  /** The `oidcClients` entry. */
  readonly client: string
  readonly sub: string
  readonly sid?: string
  readonly claims: Record<string, unknown>
  readonly scopes: string[]
  readonly idToken?: string
  readonly accessToken: string
  readonly refreshToken?: string
  /** ms since epoch; undefined when the provider did not say. */
  readonly accessExpiresAt?: number
  readonly createdAt: number
  /** Absolute end, ms since epoch. */
  readonly expiresAt: number
  /** Bumped by every refresh: requests that waited for one see that it happened. */
  readonly gen: number
}

interface LoginTransaction {
  readonly client: string
  readonly verifier: string
  readonly nonce: string
  readonly rd: string
  /** MAC of the browser's transaction cookie and the state. */
  readonly bind: string
}

interface CookieNames { readonly session: string, readonly tx: string, readonly secure: boolean }

export interface SessionRoute {
  readonly listeners: readonly string[]
  readonly client: string
}

export type SessionCheck =
  | { readonly ok: true, readonly record: SessionRecord, readonly hash: string }
  | { readonly ok: false, readonly rejection: Rejection }

/**
 * The sessions of one configuration generation (shared by every `session` route): the `/.authgate/*` endpoints,
 * session records in the store, single-flight refresh, and the counters /metrics reads.
 */
export class SessionRuntime implements ReservedEndpoints, MetricsReporter, CookieOwner {
  readonly keys: SessionKeys
  readonly idleMs: number
  readonly absoluteMs: number
  readonly #config: SessionsConfig
  readonly #clients: ReadonlyMap<string, OidcClient>
  readonly #store: Store
  readonly #log: Logger
  readonly #realm: string
  readonly #routes: SessionRoute[] = []
  /** In-process single flight: the requests of this instance share one refresh (or one wait for another's). */
  readonly #refreshing = new Map<string, Promise<SessionRecord | undefined>>()
  readonly #counters = new Map<string, { name: string, help: string, labels: Record<string, string>, value: number }>()
  /** Sessions this instance served lately (hash -> last use): the approximate active-session gauge. */
  readonly #active = new Map<string, number>()
  #lastNow = 0

  constructor (config: SessionsConfig, clients: ReadonlyMap<string, OidcClient>, deps: { store: Store, log: Logger, realm: string }) {
    this.#config = config
    this.#clients = clients
    this.#store = deps.store
    this.#log = deps.log
    this.#realm = deps.realm
    this.keys = new SessionKeys(config.secret ?? '')
    this.idleMs = parseDuration(config.idleTimeout)
    this.absoluteMs = parseDuration(config.absoluteTimeout)
  }

  /** A session route built on these listeners with this client: the endpoints are served there. */
  addRoute (route: SessionRoute): void {
    this.#routes.push(route)
  }

  /** The session and login-transaction cookies, on TLS and on a loopback plain-HTTP listener. */
  ownedCookies (): string[] {
    const tls = this.cookieNames('https')
    const plain = this.cookieNames('http')
    return [tls.session, tls.tx, plain.session, plain.tx]
  }

  client (name: string): OidcClient | undefined {
    return this.#clients.get(name)
  }

  challenge (): Challenge {
    return { scheme: 'Session', params: { realm: this.#realm, login: '/.authgate/login' } }
  }

  cookieNames (scheme: 'http' | 'https'): CookieNames {
    if (scheme === 'https') return { session: this.#config.cookie, tx: `${this.#config.cookie}-tx`, secure: true }
    const bare = this.#config.cookie.replace(/^__(Host|Secure)-/, '')
    return { session: bare, tx: `${bare}-tx`, secure: false }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // The policy's side

  /** The session of this request, refreshed when its access token is about to expire; or why there is none. */
  async check (ctx: RequestContext, client: string, options: { forwardAccessToken: boolean, csrfHeader: string | undefined }): Promise<SessionCheck> {
    const now = ctx.now()
    this.#lastNow = now
    const names = this.cookieNames(ctx.scheme)
    // Over plain HTTP only with allowInsecure (a decision listener's original request may be http).
    if (ctx.scheme === 'http' && !this.#config.allowInsecure) return { ok: false, rejection: Rejection.unauthenticated('missing_credentials', 'sessions are served over https only', this.challenge()) }
    const id = readCookie(ctx.headers.cookie, names.session)
    if (id === undefined) return { ok: false, rejection: this.absent(ctx, names, false) }
    const hash = sha256(id)
    let record = await this.#load(hash, now)
    if (record === undefined || record.client !== client) return { ok: false, rejection: this.absent(ctx, names, record === undefined) }

    // A WebSocket handshake is a GET that a page of any site may open with the user's cookies (cross-site WebSocket
    // hijacking): it is held to the same rule as unsafe methods.
    if (UNSAFE_METHODS.has(ctx.method) || ctx.headers.upgrade !== undefined) {
      if (!sameOrigin(ctx.headers, ctx.scheme, ctx.authority)) return { ok: false, rejection: Rejection.forbidden('forbidden', 'cross-site request') }
      if (options.csrfHeader !== undefined && ctx.headers[options.csrfHeader] === undefined) {
        return { ok: false, rejection: Rejection.forbidden('forbidden', `cross-site request: ${options.csrfHeader} required`) }
      }
    }

    if (record.accessExpiresAt !== undefined && record.accessExpiresAt - now <= REFRESH_MARGIN_MS) {
      if (record.refreshToken !== undefined) {
        const refreshed = await this.#refreshOnce(hash, record, now)
        if (refreshed === undefined) return { ok: false, rejection: this.absent(ctx, names, true) }
        record = refreshed
      } else if (options.forwardAccessToken && record.accessExpiresAt <= now) {
        // Nothing to forward and no way to get it: the user logs in again.
        await this.#end(hash, record)
        return { ok: false, rejection: this.absent(ctx, names, true) }
      }
    }
    this.#active.set(hash, now)
    return { ok: true, record, hash }
  }

  /** The rejection for a request without a (usable) session: to the login for a navigation, else 401. */
  absent (ctx: RequestContext, names: CookieNames, clearCookie: boolean): Rejection {
    const headers: Record<string, string> = {}
    if (clearCookie) headers['Set-Cookie'] = clearCookieHeader(names.session, names.secure)
    if (isNavigation(ctx.method, ctx.headers)) {
      headers.Location = `/.authgate/login?rd=${encodeURIComponent(ctx.rawTarget)}`
      return Rejection.unauthenticated('missing_credentials', 'login required', this.challenge(), headers)
    }
    return Rejection.unauthenticated('missing_credentials', 'session required', this.challenge(), headers)
  }

  async #load (hash: string, now: number): Promise<SessionRecord | undefined> {
    const [sealed, seen] = await Promise.all([this.#store.get(RECORD + hash), this.#store.get(SEEN + hash)])
    if (sealed === null || seen === null) return undefined
    const text = this.keys.open(sealed, RECORD + hash)
    if (text === undefined) return undefined
    const record = JSON.parse(text) as SessionRecord
    // Both ends are checked on the gateway's clock too (the store's expiry is the backstop, on its own clock).
    if (record.expiresAt <= now || now - Number(seen) >= this.idleMs) return undefined
    if (now - Number(seen) >= TOUCH_EVERY_MS) await this.#store.set(SEEN + hash, String(now), this.#idleTtl(record, now))
    return record
  }

  #idleTtl (record: SessionRecord, now: number): number {
    return Math.max(1, Math.min(this.idleMs, record.expiresAt - now))
  }

  async #save (hash: string, record: SessionRecord, now: number): Promise<void> {
    await this.#store.set(RECORD + hash, this.keys.seal(JSON.stringify(record), RECORD + hash), Math.max(1, record.expiresAt - now))
  }

  async #end (hash: string, record: SessionRecord | undefined): Promise<void> {
    await Promise.all([this.#store.delete(RECORD + hash), this.#store.delete(SEEN + hash)])
    this.#active.delete(hash)
    if (record?.sid !== undefined) await this.#store.removeFromSet(BY_SID + record.client + ':' + sha256(record.sid), hash)
    if (record !== undefined) await this.#store.removeFromSet(BY_SUB + record.client + ':' + sha256(record.sub), hash)
  }

  /** One refresh per session in this process; across instances, #refreshLocked. */
  #refreshOnce (hash: string, record: SessionRecord, now: number): Promise<SessionRecord | undefined> {
    let flight = this.#refreshing.get(hash)
    if (flight === undefined) {
      flight = this.#refreshLocked(hash, record, now).finally(() => this.#refreshing.delete(hash))
      this.#refreshing.set(hash, flight)
    }
    return flight
  }

  /**
   * Single flight across instances: a store lock whose lease is renewed while the provider answers (a fixed short
   * lock lets a second instance refresh the same rotating token, and the provider then ends the grant). Who waits
   * reuses the result: a record whose `gen` moved on. undefined: the session ended.
   */
  async #refreshLocked (hash: string, seen: SessionRecord, now: number): Promise<SessionRecord | undefined> {
    const client = this.#clients.get(seen.client)
    if (client === undefined) return undefined
    const owner = randomToken()
    const deadline = performance.now() + 2 * parseDuration(client.config.timeout) + LEASE_MS
    for (;;) {
      if (await this.#store.setIfAbsent(LOCK + hash, owner, LEASE_MS)) {
        const renew = setInterval(() => { void this.#renew(hash, owner) }, LEASE_MS / 3)
        try {
          const current = await this.#load(hash, now)
          if (current === undefined) return undefined
          if (current.gen !== seen.gen) return current
          return await this.#refreshNow(client, hash, current, now)
        } finally {
          clearInterval(renew)
          // Only our own lease: one that lapsed meanwhile may be another instance's now.
          await this.#store.renewOrReleaseIfHeld(LOCK + hash, owner, 0).catch(() => {}) // its lease lapses anyway
        }
      }
      // Another instance refreshes: wait for its result (or for its lease to lapse, then try ourselves).
      while (performance.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, WAIT_POLL_MS))
        const current = await this.#load(hash, now)
        if (current === undefined) return undefined
        if (current.gen !== seen.gen) return current
        if (await this.#store.get(LOCK + hash) === null) break
      }
      if (performance.now() >= deadline) throw new IdpUnavailableError('a refresh of this session did not finish in time')
    }
  }

  async #renew (hash: string, owner: string): Promise<void> {
    try {
      await this.#store.renewOrReleaseIfHeld(LOCK + hash, owner, LEASE_MS)
    } catch {}
  }

  async #refreshNow (client: OidcClient, hash: string, record: SessionRecord, now: number): Promise<SessionRecord | undefined> {
    let answer: TokenResponse
    try {
      answer = await client.refresh(record.refreshToken!)
    } catch (error) {
      this.#count('refresh_failures', client.name, 'unreachable')
      throw error
    }
    if (!answer.ok) {
      // invalid_grant: the provider saw a rotated token again (reuse) or revoked the grant. The session is over.
      this.#count('refresh_failures', client.name, answer.error === 'invalid_grant' ? 'invalid_grant' : 'refused')
      this.#log.info({ client: client.name, error: answer.error }, 'session: refresh refused; the session ends')
      await this.#end(hash, record)
      return undefined
    }
    const next: SessionRecord = {
      ...record,
      accessToken: answer.accessToken,
      // A rotated refresh token replaces the old one in the same write.
      refreshToken: answer.refreshToken ?? record.refreshToken,
      idToken: answer.idToken ?? record.idToken,
      accessExpiresAt: answer.expiresInS === undefined ? undefined : now + answer.expiresInS * 1000,
      scopes: answer.scope !== undefined ? splitScopes(answer.scope) : record.scopes,
      gen: record.gen + 1,
    }
    await this.#save(hash, next, now)
    this.#count('refreshes', client.name)
    return next
  }

  // ---------------------------------------------------------------------------------------------------------------
  // The endpoints

  async serveReserved (req: ReservedRequest, now: number): Promise<ReservedAnswer | undefined> {
    this.#lastNow = now
    const clients = this.#routes.filter((r) => r.listeners.includes(req.listener)).map((r) => r.client)
    if (clients.length === 0) return undefined
    const url = new URL(req.target, 'http://reserved.invalid')
    const host = hostnameOf(header(req.headers, 'host'))
    const here = [...new Set(clients)].filter((name) => {
      const client = this.#clients.get(name)
      return client !== undefined && new URL(client.config.redirectUri).hostname.toLowerCase() === host
    })
    if (here.length === 0) return problem(req, 404, 'no_route', 'no route matches this request')
    if (req.scheme === 'http' && !this.#config.allowInsecure) return problem(req, 400, 'bad_request', 'sessions are served over https only')
    const path = url.pathname
    if (path === '/.authgate/login') return onlyGet(req) ?? await this.#loginLimited(req) ?? await this.#login(req, url, here)
    if (path === '/.authgate/callback') return onlyGet(req) ?? await this.#callback(req, url, now)
    if (path === '/.authgate/session') return onlyGet(req) ?? await this.#sessionInfo(req, now)
    if (path === '/.authgate/logout') return onlyPost(req) ?? await this.#logout(req, now)
    const backchannel = /^\/\.authgate\/backchannel-logout\/([^/]+)$/.exec(path)
    if (backchannel !== null && here.includes(backchannel[1]!)) return onlyPost(req) ?? await this.#backchannel(req, backchannel[1]!)
    return problem(req, 404, 'no_route', 'no route matches this request')
  }

  /**
   * Each login writes a transaction record that lives TX_TTL_MS: one client address (IPv6: its /64) may start at most
   * `sessions.loginsPerMinute` (60), so nobody fills the store with them (at most ten minutes' worth per address).
   */
  async #loginLimited (req: ReservedRequest): Promise<ReservedAnswer | undefined> {
    const perMinute = this.#config.loginsPerMinute
    const [limit] = await this.#store.rateLimit([{ key: `${LOGIN_LIMIT}{${clientKey(req.remoteAddress)}}`, emissionIntervalMs: 60_000 / perMinute, burst: perMinute }])
    if (limit!.allowed) return undefined
    return problem(req, 429, 'rate_limited', 'too many logins from this address; try again shortly', { 'Retry-After': String(Math.max(1, Math.ceil(limit!.retryAfterMs / 1000))) })
  }

  async #login (req: ReservedRequest, url: URL, here: readonly string[]): Promise<ReservedAnswer> {
    const asked = url.searchParams.get('client')
    const name = asked !== null && here.includes(asked) ? asked : here[0]!
    const client = this.#clients.get(name)!
    const metadata = await client.metadata()
    const names = this.cookieNames(req.scheme)
    const existing = readCookie(header(req.headers, 'cookie'), names.tx)
    // One binding per browser, kept across logins: logins in parallel tabs each keep their own state.
    const browser = existing !== undefined && /^[A-Za-z0-9_-]{43}$/.test(existing) ? existing : randomToken()
    const state = randomToken()
    const tx: LoginTransaction = {
      client: name,
      verifier: randomToken(),
      nonce: randomToken(),
      rd: safeRedirect(url.searchParams.get('rd'), client.config.allowedRedirectHosts),
      bind: this.keys.bind(browser, state),
    }
    const key = TX + sha256(state)
    await this.#store.set(key, this.keys.seal(JSON.stringify(tx), key), TX_TTL_MS)
    const target = new URL(metadata.authorization_endpoint)
    const params: Record<string, string> = {
      response_type: 'code',
      client_id: client.config.clientId,
      redirect_uri: client.config.redirectUri,
      scope: client.config.scopes.join(' '),
      state,
      nonce: tx.nonce,
      code_challenge: pkceChallenge(tx.verifier),
      code_challenge_method: 'S256',
    }
    if (client.config.prompt !== undefined) params.prompt = client.config.prompt
    for (const [k, v] of Object.entries(params)) target.searchParams.set(k, v)
    return redirect(302, target.href, [cookieHeader(names.tx, browser, names.secure, 'Lax', TX_TTL_MS / 1000)])
  }

  async #callback (req: ReservedRequest, url: URL, now: number): Promise<ReservedAnswer> {
    const q = url.searchParams
    const state = q.get('state')
    const names = this.cookieNames(req.scheme)
    const browser = readCookie(header(req.headers, 'cookie'), names.tx)
    const fail = (reason: string, detail: string, client = 'unknown') => {
      this.#count('login_failures', client, reason)
      return problem(req, 400, 'bad_request', detail)
    }
    if (state === null || state.length > 512) return fail('state', 'login refused: no state')
    if (browser === undefined) return fail('state', 'login refused: this browser did not start it')
    const key = TX + sha256(state)
    const sealed = await this.#store.get(key)
    const opened = sealed === null ? undefined : this.keys.open(sealed, key)
    if (opened === undefined) return fail('state', 'login refused: unknown or expired state')
    const tx = JSON.parse(opened) as LoginTransaction
    // Bound to this browser before it is used: another browser cannot burn the victim's state.
    if (!this.keys.matches(tx.bind, browser, state)) return fail('state', 'login refused: this browser did not start it', tx.client)
    if (!await this.#store.setIfAbsent(TX_USED + sha256(state), '1', TX_TTL_MS)) return fail('state', 'login refused: state already used', tx.client)
    await this.#store.delete(key)

    const client = this.#clients.get(tx.client)
    if (client === undefined) return fail('state', 'login refused: unknown client')
    const metadata = await client.metadata()
    // RFC 9207: the response names its issuer; a provider that says it does so must.
    const iss = q.get('iss')
    if (iss !== null ? iss !== client.config.issuer : metadata.authorization_response_iss_parameter_supported === true) {
      return fail('iss', 'login refused: the response comes from another issuer', client.name)
    }
    if (q.get('error') !== null) return fail('provider_error', 'login refused by the identity provider', client.name)
    const code = q.get('code')
    if (code === null) return fail('code', 'login refused: no code', client.name)
    const tokens = await client.exchangeCode(code, tx.verifier)
    if (!tokens.ok) return fail('token', 'login refused: the code was not accepted', client.name)
    if (tokens.idToken === undefined) return fail('id_token', 'login refused: no ID token', client.name)
    let payload: Record<string, unknown>
    try {
      payload = await client.verifyIdToken(tokens.idToken, tx.nonce) as Record<string, unknown>
    } catch (error) {
      if (error instanceof IdpUnavailableError) throw error
      this.#log.info({ client: client.name, err: (error as Error).message }, 'session: ID token refused')
      return fail('id_token', 'login refused: the ID token did not verify', client.name)
    }
    const claims: Record<string, unknown> = { ...payload }
    for (const name of TECHNICAL_CLAIMS) delete claims[name]
    const info = await client.userinfo(tokens.accessToken)
    if (info !== undefined) {
      if (info.sub !== payload.sub) return fail('userinfo', 'login refused: userinfo names another user', client.name)
      Object.assign(claims, info)
    }

    const id = randomToken()
    const hash = sha256(id)
    const record: SessionRecord = {
      v: 1,
      client: client.name,
      sub: String(payload.sub),
      ...(typeof payload.sid === 'string' ? { sid: payload.sid } : {}),
      claims,
      scopes: tokens.scope !== undefined ? splitScopes(tokens.scope) : [...client.config.scopes],
      idToken: tokens.idToken,
      accessToken: tokens.accessToken,
      ...(tokens.refreshToken !== undefined ? { refreshToken: tokens.refreshToken } : {}),
      ...(tokens.expiresInS !== undefined ? { accessExpiresAt: now + tokens.expiresInS * 1000 } : {}),
      createdAt: now,
      expiresAt: now + this.absoluteMs,
      gen: 0,
    }
    // No fixation: whatever session this browser had is over.
    const previous = readCookie(header(req.headers, 'cookie'), names.session)
    if (previous !== undefined) await this.#end(sha256(previous), undefined)
    await this.#save(hash, record, now)
    await this.#store.set(SEEN + hash, String(now), this.#idleTtl(record, now))
    if (record.sid !== undefined) await this.#store.addToSet(BY_SID + client.name + ':' + sha256(record.sid), hash)
    await this.#store.addToSet(BY_SUB + client.name + ':' + sha256(record.sub), hash)
    this.#count('logins', client.name)
    this.#active.set(hash, now)
    const sameSite = this.#config.sameSite === 'strict' ? 'Strict' : 'Lax'
    return redirect(303, tx.rd, [cookieHeader(names.session, id, names.secure, sameSite, this.absoluteMs / 1000)])
  }

  async #sessionInfo (req: ReservedRequest, now: number): Promise<ReservedAnswer> {
    const names = this.cookieNames(req.scheme)
    const id = readCookie(header(req.headers, 'cookie'), names.session)
    const record = id === undefined ? undefined : await this.#load(sha256(id), now)
    const body = record === undefined
      ? { authenticated: false }
      : { authenticated: true, subject: record.sub, expiresAt: new Date(record.expiresAt).toISOString(), claims: record.claims }
    return { status: 200, code: 'ok', headers: { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' }, body: JSON.stringify(body) }
  }

  async #logout (req: ReservedRequest, now: number): Promise<ReservedAnswer> {
    if (!sameOrigin(req.headers, req.scheme, header(req.headers, 'host') ?? '')) return problem(req, 403, 'forbidden', 'cross-site request')
    const names = this.cookieNames(req.scheme)
    const id = readCookie(header(req.headers, 'cookie'), names.session)
    const hash = id === undefined ? undefined : sha256(id)
    const record = hash === undefined ? undefined : await this.#load(hash, now)
    if (hash !== undefined) await this.#end(hash, record)
    const cleared = [clearCookieHeader(names.session, names.secure)]
    const client = record === undefined ? undefined : this.#clients.get(record.client)
    const metadata = client === undefined ? undefined : await client.metadata().catch(() => undefined)
    if (client === undefined || metadata?.end_session_endpoint === undefined) return redirect(303, '/', cleared)
    const target = new URL(metadata.end_session_endpoint)
    if (record?.idToken !== undefined) target.searchParams.set('id_token_hint', record.idToken)
    target.searchParams.set('client_id', client.config.clientId)
    if (client.config.postLogoutRedirectUri !== undefined) target.searchParams.set('post_logout_redirect_uri', client.config.postLogoutRedirectUri)
    return redirect(303, target.href, cleared)
  }

  async #backchannel (req: ReservedRequest, name: string): Promise<ReservedAnswer> {
    const client = this.#clients.get(name)!
    const type = header(req.headers, 'content-type') ?? ''
    if (!/^application\/x-www-form-urlencoded\b/i.test(type)) return problem(req, 400, 'bad_request', 'a logout_token form is expected')
    const form = new URLSearchParams((await req.body(MAX_FORM_BYTES)).toString('utf8'))
    const token = form.get('logout_token')
    if (token === null) return problem(req, 400, 'bad_request', 'logout_token missing')
    let claims: { sid?: string, sub?: string, jti: string }
    try {
      claims = await client.verifyLogoutToken(token)
    } catch (error) {
      this.#log.info({ client: name, err: (error as Error).message }, 'session: logout token refused')
      return problem(req, 400, 'bad_request', 'logout_token refused')
    }
    if (!await this.#store.setIfAbsent(JTI + name + ':' + sha256(claims.jti), '1', JTI_TTL_MS)) {
      return problem(req, 400, 'bad_request', 'logout_token already used')
    }
    const index = claims.sid !== undefined ? BY_SID + name + ':' + sha256(claims.sid) : BY_SUB + name + ':' + sha256(claims.sub!)
    const hashes = await this.#store.members(index)
    // The records are in the shared store: deleting them ends the sessions on every instance.
    for (const hash of hashes) {
      await Promise.all([this.#store.delete(RECORD + hash), this.#store.delete(SEEN + hash)])
      this.#active.delete(hash)
    }
    await this.#store.delete(index)
    this.#count('backchannel_logouts', name)
    return { status: 200, code: 'ok', headers: { 'Cache-Control': 'no-store' }, body: '' }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Metrics

  #count (what: 'logins' | 'login_failures' | 'refreshes' | 'refresh_failures' | 'backchannel_logouts', client: string, reason?: string): void {
    const key = `${what}\n${client}\n${reason ?? ''}`
    let counter = this.#counters.get(key)
    if (counter === undefined) {
      counter = {
        name: `authgate_session_${what}_total`,
        help: HELP[what],
        labels: reason === undefined ? { client } : { client, reason },
        value: 0,
      }
      this.#counters.set(key, counter)
    }
    counter.value++
  }

  reportMetrics (): ReportedMetric[] {
    const out: ReportedMetric[] = [...this.#counters.values()].map((c) => ({ ...c, type: 'counter' as const }))
    const since = this.#lastNow - this.idleMs
    for (const [hash, at] of this.#active) if (at < since) this.#active.delete(hash)
    out.push({ name: 'authgate_sessions_active', help: 'Sessions this instance served within the idle timeout (approximate).', type: 'gauge', labels: {}, value: this.#active.size })
    return out
  }
}

const HELP = {
  logins: 'Browser logins completed, by OIDC client.',
  login_failures: 'Refused login callbacks, by OIDC client and reason.',
  refreshes: 'Access tokens refreshed for sessions, by OIDC client.',
  refresh_failures: 'Refreshes that failed, by OIDC client and reason (invalid_grant ends the session).',
  backchannel_logouts: 'Back-channel logout tokens accepted, by OIDC client.',
}

// -----------------------------------------------------------------------------------------------------------------
// Small helpers, exported for tests

/** Navigations (a page load) are sent to the login; other requests get 401. */
export function isNavigation (method: string, headers: Readonly<Record<string, string | string[] | undefined>>): boolean {
  if (method !== 'GET' && method !== 'HEAD') return false
  const mode = header(headers, 'sec-fetch-mode')
  if (mode !== undefined) return mode === 'navigate'
  return (header(headers, 'accept') ?? '').includes('text/html')
}

/**
 * The request comes from a page of this origin: `Sec-Fetch-Site` says so, or without it `Origin` is this scheme and
 * host. Neither header: refused (browsers send one; other clients use tokens).
 */
export function sameOrigin (headers: Readonly<Record<string, string | string[] | undefined>>, scheme: string, authority: string): boolean {
  const site = header(headers, 'sec-fetch-site')
  if (site !== undefined) return site === 'same-origin' || site === 'none'
  const origin = header(headers, 'origin')
  if (origin === undefined || origin === 'null') return false
  try {
    const a = new URL(origin)
    const b = new URL(`${scheme}://${authority}`)
    return a.protocol === b.protocol && a.host === b.host && a.origin === origin.toLowerCase()
  } catch {
    return false
  }
}

/** The first cookie of that name in a Cookie header. */
export function readCookie (cookie: string | string[] | undefined, name: string): string | undefined {
  if (cookie === undefined) return undefined
  const text = Array.isArray(cookie) ? cookie.join('; ') : cookie
  for (const part of text.split(';')) {
    const eq = part.indexOf('=')
    if (eq < 0) continue
    if (part.slice(0, eq).trim() === name) {
      const value = part.slice(eq + 1).trim()
      return value.length > 0 && value.length <= 256 ? value : undefined
    }
  }
  return undefined
}

function header (headers: Readonly<Record<string, string | string[] | undefined>>, name: string): string | undefined {
  const value = headers[name]
  return Array.isArray(value) ? value[0] : value
}

function hostnameOf (host: string | undefined): string {
  if (host === undefined) return ''
  try {
    return new URL(`http://${host}`).hostname.toLowerCase()
  } catch {
    return ''
  }
}

function splitScopes (scope: string): string[] {
  return scope.split(' ').filter((s) => s.length > 0)
}

function cookieHeader (name: string, value: string, secure: boolean, sameSite: 'Lax' | 'Strict', maxAgeS: number): string {
  return `${name}=${value}; Path=/; Max-Age=${Math.floor(maxAgeS)}; HttpOnly; SameSite=${sameSite}${secure ? '; Secure' : ''}`
}

function clearCookieHeader (name: string, secure: boolean): string {
  return `${name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`
}

function redirect (status: 302 | 303, location: string, cookies: string[]): ReservedAnswer {
  return { status, code: 'ok', headers: { Location: location, 'Set-Cookie': cookies, 'Cache-Control': 'no-store' }, body: '' }
}

function problem (req: ReservedRequest, status: number, code: string, detail: string, headers: Record<string, string> = {}): ReservedAnswer {
  return {
    status, code,
    headers: { ...headers, 'Content-Type': 'application/problem+json', 'Cache-Control': 'no-store' },
    body: problemBody({ status, code, detail }, req.requestId),
  }
}

function onlyGet (req: ReservedRequest): ReservedAnswer | undefined {
  return req.method === 'GET' || req.method === 'HEAD' ? undefined : problem(req, 405, 'bad_request', 'use GET', { Allow: 'GET, HEAD' })
}

function onlyPost (req: ReservedRequest): ReservedAnswer | undefined {
  return req.method === 'POST' ? undefined : problem(req, 405, 'bad_request', 'use POST', { Allow: 'POST' })
}
