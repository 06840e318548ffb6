/**
 * Users and password hashes for `basic`: bcrypt lines from an htpasswd file, scrypt (or bcrypt) hashes inline.
 * Inline scrypt format: `scrypt$N$r$p$<salt>$<hash>` with salt and hash in base64 (padding optional), N a power
 * of two from 2^10 to 2^20, r 1..32, p 1..16, a salt of 16..64 bytes and a hash of 16..64 bytes.
 */
import { randomBytes, randomInt, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import bcrypt from 'bcryptjs'
import { ConfigError, type ConfigIssue } from '../../gateway/errors.js'
import { PoolFullError, type PasswordPool } from './password-pool.js'
import { USERNAME_PATTERN, type UsersSection } from './schema.js'

export type PasswordHash =
  | { readonly kind: 'bcrypt', readonly text: string, readonly cost: number }
  | { readonly kind: 'scrypt', readonly N: number, readonly r: number, readonly p: number, readonly salt: Buffer, readonly hash: Buffer }

/** How many password hashes were computed (bcrypt or scrypt), for tests and benchmarks: a cache hit adds none. */
export const passwordChecks = { count: 0 }

const BCRYPT = /^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$/
const BCRYPT_ALPHABET = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
const USERNAME = new RegExp(USERNAME_PATTERN)
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/
export const SCRYPT_DEFAULTS = { N: 2 ** 15, r: 8, p: 1 } as const

/** A hash string from htpasswd or inline config; undefined when it is not bcrypt or well-formed scrypt. */
export function parsePasswordHash (text: string): PasswordHash | undefined {
  const bc = BCRYPT.exec(text)
  if (bc) {
    const cost = Number(bc[1])
    return cost >= 4 && cost <= 31 ? { kind: 'bcrypt', text, cost } : undefined
  }
  const parts = text.split('$')
  if (parts.length !== 6 || parts[0] !== 'scrypt') return undefined
  const [N, r, p] = parts.slice(1, 4).map((s) => /^\d{1,8}$/.test(s!) ? Number(s) : NaN) as [number, number, number]
  if (!(N >= 1024 && N <= 2 ** 20 && (N & (N - 1)) === 0 && r >= 1 && r <= 32 && p >= 1 && p <= 16)) return undefined
  if (!BASE64.test(parts[4]!) || !BASE64.test(parts[5]!)) return undefined
  const salt = Buffer.from(parts[4]!, 'base64')
  const hash = Buffer.from(parts[5]!, 'base64')
  if (salt.length < 16 || salt.length > 64 || hash.length < 16 || hash.length > 64) return undefined
  return { kind: 'scrypt', N, r, p, salt, hash }
}

/** What a refused htpasswd hash is, for a config error that says how to fix it (never the hash itself). */
export function describeUnsupportedHash (text: string): string {
  if (text.startsWith('$apr1$')) return 'an apr1 (Apache MD5) hash'
  if (text.startsWith('{SHA}')) return 'a {SHA} (SHA-1) hash'
  if (text.startsWith('$1$')) return 'an MD5-crypt hash'
  if (text.startsWith('$5$')) return 'a SHA-256-crypt hash'
  if (text.startsWith('$6$')) return 'a SHA-512-crypt hash'
  if (text.startsWith('$2')) return 'a malformed or unsupported bcrypt hash'
  if (text.startsWith('scrypt$')) return 'a scrypt hash (accepted inline in gateway.yaml, not in htpasswd files)'
  if (/^[./0-9A-Za-z]{13}$/.test(text)) return 'a DES crypt hash'
  return 'a plain-text password or an unknown hash format'
}

const scryptAsync = (password: string, salt: Buffer, keylen: number, options: ScryptOptions): Promise<Buffer> =>
  new Promise((resolve, reject) => scryptCallback(password, salt, keylen, options, (err, key) => err ? reject(err) : resolve(key)))

function scryptOptions (N: number, r: number, p: number): ScryptOptions {
  return { N, r, p, maxmem: 256 * N * r + 1024 * 1024 }
}

/** Checks a password against one hash: the expensive step the success cache avoids. */
export async function verifyPassword (password: string, hash: PasswordHash): Promise<boolean> {
  passwordChecks.count++
  if (hash.kind === 'bcrypt') return await bcrypt.compare(password, hash.text)
  const derived = await scryptAsync(password, hash.salt, hash.hash.length, scryptOptions(hash.N, hash.r, hash.p))
  return timingSafeEqual(derived, hash.hash)
}

/** `$2y$` (htpasswd's spelling; the same algorithm as `$2b$`). */
export async function bcryptHash (password: string, cost = 10): Promise<string> {
  const hash = await bcrypt.hash(password, cost)
  return hash.replace(/^\$2[ab]\$/, '$2y$')
}

export async function scryptHash (password: string, params: { N: number, r: number, p: number } = SCRYPT_DEFAULTS): Promise<string> {
  const salt = randomBytes(16)
  const hash = await scryptAsync(password, salt, 32, scryptOptions(params.N, params.r, params.p))
  return `scrypt$${params.N}$${params.r}$${params.p}$${salt.toString('base64')}$${hash.toString('base64')}`
}

/** A hash nobody's password matches, costing the same work as `like`: unknown users are not found faster. */
export function dummyHash (like: PasswordHash): PasswordHash {
  if (like.kind === 'scrypt') return { ...like, salt: randomBytes(like.salt.length), hash: randomBytes(like.hash.length) }
  let rest = ''
  for (let i = 0; i < 53; i++) rest += BCRYPT_ALPHABET[randomInt(BCRYPT_ALPHABET.length)]
  const text = `$2b$${String(like.cost).padStart(2, '0')}$${rest}`
  return { kind: 'bcrypt', text, cost: like.cost }
}

/** The most expensive hash of the list (the dummy copies it), bcrypt cost 10 when there is none. */
function costliest (hashes: Iterable<PasswordHash>): PasswordHash {
  let best: PasswordHash | undefined
  let bestWork = -1
  for (const hash of hashes) {
    const work = hash.kind === 'bcrypt' ? 2 ** hash.cost * 1000 : hash.N * hash.r * hash.p
    if (work > bestWork) { best = hash; bestWork = work }
  }
  return best ?? { kind: 'bcrypt', text: '', cost: 10 }
}

/** One password against one hash: verifyPassword on this thread, or a PasswordPool's workers (poolCheck). */
export type PasswordCheck = (password: string, hash: PasswordHash) => Promise<boolean>

/** verifyPassword's work on the pool's worker threads; rejects with PoolFullError at once when it is saturated. */
export function poolCheck (pool: PasswordPool): PasswordCheck {
  return async (password, hash) => {
    if (pool.saturated) throw new PoolFullError()
    passwordChecks.count++
    return await pool.check({
      password,
      hash: hash.kind === 'bcrypt' ? { kind: 'bcrypt', text: hash.text } : { kind: 'scrypt', salt: hash.salt, hash: hash.hash, options: scryptOptions(hash.N, hash.r, hash.p) },
    })
  }
}

export class UserDirectory {
  private readonly dummy: PasswordHash

  constructor (private readonly users: ReadonlyMap<string, PasswordHash>) {
    this.dummy = dummyHash(costliest(users.values()))
  }

  get size (): number { return this.users.size }

  has (username: string): boolean { return this.users.has(username) }

  /** False for a wrong password and for an unknown user, after the same work (a dummy hash of equal cost). */
  async verify (username: string, password: string, check: PasswordCheck = verifyPassword): Promise<boolean> {
    const hash = this.users.get(username)
    const ok = await check(password, hash ?? this.dummy)
    return hash !== undefined && ok
  }
}

/** Problems of the inline list (positioned by the loader) and of the htpasswd file (file:line). */
export function checkUsers (section: UsersSection, baseDir: string | undefined): { users: Map<string, PasswordHash>, issues: ConfigIssue[] } {
  const users = new Map<string, PasswordHash>()
  const issues: ConfigIssue[] = []
  const from = new Map<string, string>()
  if ((section.inline?.length ?? 0) === 0 && section.htpasswd === undefined) {
    issues.push({ severity: 'error', path: ['users'], message: 'users: lists nobody', fix: 'add htpasswd: users.htpasswd (authgate passwd USER) or inline: [{ username, hash }]' })
  }
  section.inline?.forEach((user, i) => {
    const hash = parsePasswordHash(user.hash)
    if (!hash) {
      issues.push({ severity: 'error', path: ['users', 'inline', i, 'hash'], message: `user "${user.username}": the hash is not scrypt$N$r$p$salt$hash or bcrypt $2y$`, fix: `make one with \`authgate passwd --scrypt ${user.username}\`` })
      return
    }
    if (users.has(user.username)) {
      issues.push({ severity: 'error', path: ['users', 'inline', i, 'username'], message: `user "${user.username}" is listed twice`, fix: 'keep one entry per user' })
      return
    }
    users.set(user.username, hash)
    from.set(user.username, `users.inline[${i}]`)
  })
  if (section.htpasswd !== undefined && baseDir !== undefined) {
    const file = resolve(baseDir, section.htpasswd)
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (error) {
      issues.push({ severity: 'error', path: ['users', 'htpasswd'], message: `cannot read the htpasswd file ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'}); basic routes would accept nobody`, fix: 'create it with `authgate passwd USER >> FILE`, or fix the path (relative to the config file\'s folder)' })
      return { users, issues }
    }
    // The message names the file and line too: the loader may position the issue at users.htpasswd in gateway.yaml.
    const at = (line: number, message: string, fix?: string) =>
      issues.push({ severity: 'error', file, line, col: 1, path: ['users', 'htpasswd'], message: `${section.htpasswd} line ${line}: ${message}`, ...(fix ? { fix } : {}) })
    text.split('\n').forEach((raw, index) => {
      const line = raw.replace(/\r$/, '')
      const number = index + 1
      if (line.trim() === '' || line.trimStart().startsWith('#')) return
      const colon = line.indexOf(':')
      if (colon <= 0) { at(number, 'not a "user:hash" line', 'each line is USER:HASH, as `authgate passwd USER` prints it'); return }
      const username = line.slice(0, colon)
      const hashText = line.slice(colon + 1).trim()
      if (!USERNAME.test(username)) { at(number, 'the user name has control characters or is too long'); return }
      const hash = BCRYPT.test(hashText) ? parsePasswordHash(hashText) : undefined
      if (!hash) {
        at(number, `user "${username}" has ${describeUnsupportedHash(hashText)}; only bcrypt ($2y$, $2b$, $2a$) is accepted`,
          `re-create the line with \`authgate passwd ${username}\` (or \`htpasswd -B\`)`)
        return
      }
      if (users.has(username)) { at(number, `user "${username}" is already defined (${from.get(username)})`, 'keep one entry per user'); return }
      users.set(username, hash)
      from.set(username, `line ${number}`)
    })
  }
  return { users, issues }
}

/** Loads every user (reading the htpasswd file now); throws one ConfigError listing every problem. */
export function loadUsers (section: UsersSection | undefined, baseDir: string): UserDirectory {
  if (!section) {
    throw new ConfigError([{ severity: 'error', path: ['users'], message: 'the basic policy needs a users: section', fix: 'users: { htpasswd: users.htpasswd }' }])
  }
  const { users, issues } = checkUsers(section, baseDir)
  if (issues.length > 0) throw new ConfigError(issues)
  return new UserDirectory(users)
}
