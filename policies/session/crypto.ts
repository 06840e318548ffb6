import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto'

/** At least this many bytes of `sessions.secret` (256 bits for AES-256 keys derived from it). */
export const MIN_SECRET_BYTES = 32

/**
 * The keys derived from `sessions.secret` (HKDF-SHA256, one per use): records are sealed with AES-256-GCM, the
 * store key as additional data (a record cannot be moved under another key); login transactions are bound to the
 * browser with HMAC-SHA256.
 */
export class SessionKeys {
  readonly #record: Buffer
  readonly #binding: Buffer

  constructor (secret: string) {
    const ikm = Buffer.from(secret, 'utf8')
    this.#record = Buffer.from(hkdfSync('sha256', ikm, 'authgate-sessions', 'record-v1', 32))
    this.#binding = Buffer.from(hkdfSync('sha256', ikm, 'authgate-sessions', 'binding-v1', 32))
  }

  /** `v1.` + base64url(iv | ciphertext | tag). */
  seal (plaintext: string, storeKey: string): string {
    const iv = randomBytes(12)
    const cipher = createCipheriv('aes-256-gcm', this.#record, iv)
    cipher.setAAD(Buffer.from(storeKey, 'utf8'))
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
    return 'v1.' + Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url')
  }

  /** The plaintext, or undefined for anything that was not sealed by this secret under this key. */
  open (sealed: string, storeKey: string): string | undefined {
    if (!sealed.startsWith('v1.')) return undefined
    const raw = Buffer.from(sealed.slice(3), 'base64url')
    if (raw.length < 12 + 16) return undefined
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#record, raw.subarray(0, 12))
      decipher.setAAD(Buffer.from(storeKey, 'utf8'))
      decipher.setAuthTag(raw.subarray(raw.length - 16))
      return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString('utf8')
    } catch {
      return undefined
    }
  }

  /** MAC binding a login's state to the browser's transaction cookie. */
  bind (browser: string, state: string): string {
    return createHmac('sha256', this.#binding).update(browser).update('\n').update(state).digest('base64url')
  }

  matches (expected: string, browser: string, state: string): boolean {
    const a = Buffer.from(expected)
    const b = Buffer.from(this.bind(browser, state))
    return a.length === b.length && timingSafeEqual(a, b)
  }
}

/** 256 random bits, base64url. */
export function randomToken (): string {
  return randomBytes(32).toString('base64url')
}

export function sha256 (text: string): string {
  return createHash('sha256').update(text).digest('hex')
}

/** RFC 7636 §4.2: S256 challenge of a verifier. */
export function pkceChallenge (verifier: string): string {
  return createHash('sha256').update(verifier).digest('base64url')
}
