import { createHash, timingSafeEqual } from 'node:crypto'
import { isInnerList, joinFieldLines, parseDictionary, serializeDictionary, type Dictionary, type ParseResult } from './structured-fields.js'

/** The Content-Digest algorithms (RFC 9530 §5) this gateway checks; others (md5, sha, unixsum...) are ignored. */
export type DigestAlgorithm = 'sha-256' | 'sha-512'

/** Node hash names by Content-Digest algorithm. A Map: the keys come from the client (`constructor=:...:`). */
const HASH: ReadonlyMap<string, string> = new Map([['sha-256', 'sha256'], ['sha-512', 'sha512']])

export type DigestCheck = { readonly ok: true } | { readonly ok: false, readonly reason: string }

/** `sha-256=:<base64>:` for a Content-Digest field (RFC 9530 §2). */
export function createContentDigest (body: Buffer | string, algorithm: DigestAlgorithm = 'sha-256'): string {
  const hash = HASH.get(algorithm)
  if (hash === undefined) throw new TypeError('the Content-Digest algorithm must be sha-256 or sha-512')
  const digest = createHash(hash).update(body).digest()
  const dict: Dictionary = new Map([[algorithm, { value: digest, params: new Map() }]])
  return serializeDictionary(dict)
}

/**
 * Checks every Content-Digest field line against the buffered body (RFC 9530 §2: the digest is of the
 * content, after any transfer coding is removed, which Node has done). Each supported algorithm present
 * must match; at least one supported algorithm is required. Comparison is constant-time. `parsed` is the
 * field already parsed as a Dictionary with duplicates refused, when the caller has it (one parse per request).
 */
export function verifyContentDigest (lines: readonly string[], body: Buffer, parsed?: ParseResult<Dictionary>): DigestCheck {
  if (lines.length === 0) return { ok: false, reason: 'Content-Digest header missing' }
  parsed ??= parseDictionary(joinFieldLines(lines), { duplicates: 'error' })
  if (!parsed.ok) return { ok: false, reason: 'Content-Digest header is malformed' }
  let checked = 0
  for (const [algorithm, member] of parsed.value) {
    const hash = HASH.get(algorithm)
    if (hash === undefined) continue
    if (isInnerList(member) || !Buffer.isBuffer(member.value)) return { ok: false, reason: `Content-Digest ${algorithm} is not a byte sequence` }
    const expected = createHash(hash).update(body).digest()
    const presented = member.value
    if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) {
      return { ok: false, reason: 'Content-Digest does not match the body' }
    }
    checked++
  }
  if (checked === 0) return { ok: false, reason: 'Content-Digest has no supported algorithm (sha-256, sha-512)' }
  return { ok: true }
}
