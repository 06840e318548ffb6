import { createHmac, randomBytes } from 'node:crypto'
import { availableParallelism } from 'node:os'
import { Rejection, type ConfigIssue } from '../../gateway/errors.js'
import { parseDuration } from '../../gateway/config/units.js'
import { clientKey } from '../../gateway/net.js'
import type { LintFinding, PolicyDefinition, SectionDefinition } from '../types.js'
import { resolve } from 'node:path'
import { parseBasic } from './credentials.js'
import { FailureCounters, type FailureLimits } from './failures.js'
import { schema, usersSectionSchema, type BasicConfig, type UsersSection } from './schema.js'
import { PoolFullError, acquirePool, type Place } from './password-pool.js'
import { checkUsers, loadUsers, poolCheck } from './users.js'

export { passwordChecks } from './users.js'

/** Successful checks, keyed by HMAC-SHA256(generation key, user ":" password): never the password itself. */
class SuccessCache {
  private readonly key = randomBytes(32)
  private readonly entries = new Map<string, { username: string, at: number }>()
  /**
   * Checks in progress by digest: when an entry expires under load, the requests that carry the same credentials
   * share one bcrypt/scrypt run instead of each starting its own (dozens of them would hold the CPU for seconds).
   */
  readonly verifying = new Map<string, Promise<boolean>>()
  /**
   * Places in the password pool held by digest, from admission until the check has ended: requests that carry the
   * same credentials at once (a browser's parallel requests, a cold start) share one place, as they share one check.
   */
  readonly places = new Map<string, { readonly place: Place, holders: number }>()

  constructor (private readonly maxEntries = 10_000) {}

  digest (username: string, password: string): string {
    return createHmac('sha256', this.key).update(`${username}:${password}`).digest('base64')
  }

  fresh (digest: string, now: number, ttlMs: number): string | undefined {
    const entry = this.entries.get(digest)
    return entry && now - entry.at < ttlMs ? entry.username : undefined
  }

  remember (digest: string, username: string, now: number): void {
    this.entries.delete(digest)
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!)
    this.entries.set(digest, { username, at: now })
  }
}

/**
 * `basic`: HTTP Basic (RFC 7617) against `users:` (htpasswd bcrypt lines, inline scrypt hashes).
 * Per request: duplicate Authorization → 400; another scheme → missing (so `anyOf` tries the others); malformed
 * → 401; a cached success → no hashing (a locked-out user or IP still 429); else a place in the worker pool for the
 * client address (429 `Retry-After: 1` when the pool's queue is full or the address, IPv6 per /64, already has its
 * share in progress), the attempt reserved against the user and the IP (429 past either limit, no hashing), then one
 * bcrypt/scrypt check on the pool (a dummy hash of equal cost for unknown users), and a success takes the reservation
 * back.
 */
export const basic: PolicyDefinition<BasicConfig> = {
  key: 'basic',
  schema,
  authenticates: true,
  commands: [{
    name: 'passwd',
    usage: 'USER [--cost N | --scrypt]        print an htpasswd line (bcrypt) or an inline users: entry (scrypt)',
    async run (args, io) {
      const { passwdCommand } = await import('./cli.js')
      return await passwdCommand(args, io)
    },
  }],
  lint ({ occurrences }) {
    const findings: LintFinding[] = []
    for (const { config, path, route } of occurrences) {
      if (config.allowInsecure !== true) continue
      const plain = route.listeners.filter((l) => !l.tls && l.exposed)
      if (plain.length === 0) continue
      findings.push({
        rule: 'basic-insecure-exposed',
        severity: 'warning',
        path: [...path, 'allowInsecure'],
        message: `route "${route.name}" accepts Basic passwords in clear text on listener "${plain[0]!.name}" (${plain[0]!.address}), which other machines can reach: anyone on the path reads them`,
        fix: `give listener "${plain[0]!.name}" tls:, bind it to 127.0.0.1, or limit the route to a TLS listener with match.listener`,
      })
    }
    return findings
  },
  check (config, env) {
    const issues: ConfigIssue[] = []
    if (env.config.users === undefined) {
      issues.push({ severity: 'error', path: [], message: 'basic needs a top-level users: section', fix: 'users: { htpasswd: users.htpasswd } (lines from `authgate passwd USER`)' })
    }
    if (!config.allowInsecure) {
      // A decision listener's own transport says nothing of the client's: the original scheme is checked per request.
      for (const listener of env.route.listeners.filter((l) => !l.tls && l.mode !== 'decide')) {
        issues.push({
          severity: 'error',
          path: [],
          message: `route "${env.route.name}" uses basic and is reachable on the plain-HTTP listener "${listener.name}", where passwords cross the network in clear text`,
          fix: 'limit the route to TLS listeners with match.listener, or set basic: { allowInsecure: true } (local development only)',
        })
      }
    }
    return issues
  },
  create (config, deps) {
    const users = deps.shared('basic:users', () => loadUsers(deps.config.users as UsersSection | undefined, deps.baseDir))
    const cache = deps.shared('basic:cache', () => new SuccessCache())
    const onError = (deps.config.store as { onError?: 'deny' | 'allow' } | undefined)?.onError ?? 'deny'
    const failures = deps.shared('basic:failures', () => new FailureCounters(deps.store, onError, deps.log))
    const limits: FailureLimits = { perUser: config.maxFailuresPerUser, perIp: config.maxFailuresPerIp, windowMs: parseDuration(config.failureWindow) }
    const cacheTtlMs = parseDuration(config.cacheTtl)
    const challenge = { scheme: 'Basic', params: { realm: deps.realm, charset: 'UTF-8' } }
    const concurrency = config.maxConcurrentChecks ?? availableParallelism()
    // One holder per config generation; the generation's close (every basic instance calls it) lets go.
    const lease = deps.shared(`basic:pool:${concurrency}`, () => acquirePool(concurrency))
    const pool = lease.pool
    const check = poolCheck(pool)
    const lockedOut = (ms: number) => Rejection.tooManyRequests('too many failed attempts; try again later', { 'Retry-After': String(Math.max(1, Math.ceil(ms / 1000))) })
    const busy = (refusal: PoolFullError) => Rejection.tooManyRequests(refusal.scope === 'client'
      ? 'too many password checks in progress from this address; try again shortly'
      : 'too many password checks in progress; try again shortly', { 'Retry-After': '1' })

    return {
      challenge,
      close: async () => await lease.release(),
      credentialHeaders: ['authorization'],
      async evaluate (ctx) {
        // Proxy mode: the check above keeps such a route off plain listeners. Decision mode: the original request's
        // scheme is what the proxy says it was, and a password that crossed the network in clear is refused.
        if (ctx.scheme !== 'https' && config.allowInsecure !== true) return Rejection.forbidden('forbidden', 'credentials over plain HTTP are refused')
        const values = ctx.headerValues('authorization')
        if (values.length > 1) return Rejection.badRequest('more than one Authorization header')
        const credentials = values.length === 1 && values[0] !== '' ? parseBasic(values[0]!) : { kind: 'other' as const }
        if (credentials.kind === 'other') return Rejection.unauthenticated('missing_credentials', 'Basic credentials required', challenge)
        if (credentials.kind === 'malformed') return Rejection.unauthenticated('invalid_credentials', 'malformed Basic credentials', challenge)
        const { username, password } = credentials

        const identity = { subject: username, client: username }
        const digest = cache.digest(username, password)
        if (cache.fresh(digest, ctx.now(), cacheTtlMs) === username) {
          // A cached success costs no hash, and the lockout still applies (DESIGN.md: Basic lockout).
          const lockedMs = await failures.lockedFor(username, ctx.remoteAddress, limits)
          return lockedMs === undefined ? { identity } : lockedOut(lockedMs)
        }

        // A place in the pool for this client (IPv6: its /64), held from here until the check has ended: every
        // worker busy and the queue full, or this client already holding its share, is 429 before the store is
        // touched, and other clients keep their places (DESIGN.md "Password checks"). Credentials already being
        // checked need no place of their own.
        let held = cache.verifying.has(digest) ? undefined : cache.places.get(digest)
        if (held) {
          held.holders++
        } else if (!cache.verifying.has(digest)) {
          const admitted = pool.admit(clientKey(ctx.remoteAddress))
          if (admitted instanceof PoolFullError) return busy(admitted)
          cache.places.set(digest, held = { place: admitted, holders: 1 })
        }
        try {
          // Counted before the hash is checked, so concurrent guesses cannot pass the lockout (DESIGN.md "Password
          // checks"); a locked-out user or address costs no hash.
          const reservation = await failures.reserve(username, ctx.remoteAddress, limits)
          if (!reservation.granted) return lockedOut(reservation.retryAfterMs)

          let ok: boolean
          try {
            let verifying = cache.verifying.get(digest)
            if (verifying === undefined) {
              verifying = users.verify(username, password, check).finally(() => cache.verifying.delete(digest))
              cache.verifying.set(digest, verifying)
            }
            ok = await verifying
          } catch (error) {
            // No check ran (queue full) or it failed: this was no failed attempt.
            await reservation.release()
            if (error instanceof PoolFullError) return busy(error)
            throw error
          }
          if (!ok) return Rejection.unauthenticated('invalid_credentials', 'wrong username or password', challenge)
          // A success is no failure: its reservation goes back. Earlier failures stay counted (no reset on success).
          await reservation.release()
        } finally {
          if (held !== undefined && --held.holders === 0) {
            held.place.release()
            if (cache.places.get(digest) === held) cache.places.delete(digest)
          }
        }
        if (cacheTtlMs > 0) cache.remember(digest, username, ctx.now())
        return { identity }
      },
    }
  },
}

/**
 * `users:` at the top level. Inline hashes are checked here; the htpasswd file is read when the policy is built
 * (`create`, at load and reload) and, when the loader passes the config folder, here too (`authgate check`).
 */
export const usersSection: SectionDefinition = {
  key: 'users',
  schema: usersSectionSchema,
  check (value: unknown, _config: Readonly<Record<string, unknown>>, env?: { readonly baseDir?: string }): ConfigIssue[] {
    return checkUsers(value as UsersSection, env?.baseDir).issues
  },
  files (value, baseDir) {
    const htpasswd = (value as UsersSection | undefined)?.htpasswd
    return typeof htpasswd === 'string' && htpasswd !== '' ? [resolve(baseDir, htpasswd)] : []
  },
}
