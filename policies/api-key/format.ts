import { createHash, hash, randomBytes, timingSafeEqual } from 'node:crypto'

/** `agk_<id>_<secret>`: the id finds the record without a scan; the secret is 32 random bytes in base62 (43 chars). */
const KEY = /^agk_([a-z0-9]{8,32})_([0-9A-Za-z]{43})$/
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'

export interface ParsedKey { readonly id: string, readonly secret: string }

/** undefined for anything that is not a well-formed key: rejected before any store access. */
export function parseApiKey (text: string): ParsedKey | undefined {
  const match = KEY.exec(text)
  return match ? { id: match[1]!, secret: match[2]! } : undefined
}

export function hashApiKey (key: string): string {
  return `sha256:${createHash('sha256').update(key).digest('hex')}`
}

/** Raw digest for constant-time comparison. */
export function digestApiKey (key: string): Buffer {
  // One-shot crypto.hash (Node >= 20.12): no Hash object per request.
  return hash('sha256', key, 'buffer')
}

/** Parses `sha256:<hex>`; undefined when malformed. */
export function parseKeyHash (hash: string): Buffer | undefined {
  const match = /^sha256:([0-9a-fA-F]{64})$/.exec(hash)
  return match ? Buffer.from(match[1]!, 'hex') : undefined
}

/** Constant time for equal-length digests; a missing expected digest still costs one comparison. */
export function digestsMatch (expected: Buffer | undefined, actual: Buffer): boolean {
  const target = expected ?? DUMMY
  const equal = timingSafeEqual(target, actual)
  return expected !== undefined && equal
}
const DUMMY = Buffer.alloc(32)

export function newKeyId (): string {
  return randomBytes(8).toString('hex') // 16 chars of [0-9a-f]
}

export function newKeySecret (): string {
  // 32 random bytes as a fixed-width 43-digit base62 number.
  let n = BigInt('0x' + randomBytes(32).toString('hex'))
  let out = ''
  for (let i = 0; i < 43; i++) {
    out = BASE62[Number(n % 62n)]! + out
    n /= 62n
  }
  return out
}

export function newApiKey (): { id: string, key: string } {
  const id = newKeyId()
  return { id, key: `agk_${id}_${newKeySecret()}` }
}
