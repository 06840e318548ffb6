/**
 * Console sessions: the admin token is shown once (POST /console/session) and exchanged for a cookie that names a
 * session, never the token. The cookie is `id.expiry.mac`, the MAC keyed by a key derived from the admin token: every
 * worker (`workers: N`) checks it without shared state, and changing the token ends every session. Sign-out revokes
 * the id in every worker (a cluster broadcast) until it would have expired.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import type http from 'node:http'

export const SESSION_TTL_MS = 8 * 60 * 60 * 1000

export interface Session { readonly id: string, readonly expiresAt: number }

export class ConsoleSessions {
  private readonly revoked = new Map<string, number>()

  constructor (private readonly token: () => string | undefined, private readonly now: () => number = Date.now) {}

  /** True when `given` is the admin token (constant time, no length oracle). */
  tokenMatches (given: string): boolean {
    const token = this.token()
    if (!token) return false
    const a = createHash('sha256').update(given).digest()
    const b = createHash('sha256').update(token).digest()
    return timingSafeEqual(a, b)
  }

  /** A new session's cookie value; undefined without an admin token. */
  issue (): { value: string, session: Session } | undefined {
    const key = this.key()
    if (!key) return undefined
    const id = randomBytes(18).toString('base64url')
    const expiresAt = this.now() + SESSION_TTL_MS
    const body = `${id}.${Math.floor(expiresAt / 1000)}`
    return { value: `${body}.${mac(key, body)}`, session: { id, expiresAt: Math.floor(expiresAt / 1000) * 1000 } }
  }

  /** The session a cookie value names, if it is genuine, current and not signed out. */
  verify (value: string | undefined): Session | undefined {
    const key = this.key()
    if (!key || !value) return undefined
    const match = /^([A-Za-z0-9_-]{24})\.(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(value)
    if (!match) return undefined
    const [, id, exp, given] = match as unknown as [string, string, string, string]
    const expected = Buffer.from(mac(key, `${id}.${exp}`), 'base64url')
    const actual = Buffer.from(given, 'base64url')
    if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) return undefined
    const expiresAt = Number(exp) * 1000
    if (expiresAt <= this.now() || this.revoked.has(id)) return undefined
    return { id, expiresAt }
  }

  /** Ends a session here (the caller broadcasts it to the other workers). */
  revoke (session: Session): void {
    this.revoked.set(session.id, session.expiresAt)
    const now = this.now()
    for (const [id, expiresAt] of this.revoked) if (expiresAt <= now) this.revoked.delete(id)
  }

  private key (): Buffer | undefined {
    const token = this.token()
    return token ? createHmac('sha256', token).update('authgate console session v1').digest() : undefined
  }
}

function mac (key: Buffer, body: string): string {
  return createHmac('sha256', key).update(body).digest('base64url')
}

/** The value of cookie `name` in the request's Cookie header(s). */
export function readCookie (req: http.IncomingMessage, name: string): string | undefined {
  const header = req.headers.cookie
  if (!header) return undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}
