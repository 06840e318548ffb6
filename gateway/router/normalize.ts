/**
 * Path normalization: the one path string (DESIGN.md, Hard rules). The path this returns is the path that is
 * matched against routes AND the path that is forwarded, so there is nothing left for an upstream to reinterpret.
 *
 * - Unreserved percent-escapes (ALPHA DIGIT - _ ~) are decoded, once; every other escape is kept, hex upper-cased.
 * - Runs of `/` are merged into one; the trailing slash is kept (it is significant).
 * - Refused: `.`/`..` segments, encoded `.` `/` `\` `;`, raw `\` `;`, NUL and other control characters (raw or
 *   encoded), raw spaces and non-ASCII characters, malformed escapes, escapes that are not UTF-8, a `#` anywhere.
 * - Refused too, for upstreams that decode twice or apply Unicode compatibility normalization (NFKC): an escaped `%`
 *   whose next decoding is one of the escapes above (`%252e`, `%252F`, `%255c`, `%25%32%65`, `%25252e`), and an
 *   escaped character whose NFKC form adds `.` `/` `\` `;` `%` `?` or `#` (full-width `%EF%BC%8E` U+FF0E, U+FF0F,
 *   U+FF3C, and the like). `%25` before anything else (`/files/100%25`) is an ordinary character and passes.
 *
 * Normalization is idempotent: normalizing an accepted path returns it unchanged.
 */
import { isUtf8 } from 'node:buffer'

export interface NormalizedPath {
  readonly ok: true
  /** The path to match and to forward. */
  readonly path: string
  /** Everything after the first `?`, exactly as sent ('' when none). */
  readonly rawQuery: string
  /** Absolute-form targets only: the authority exactly as sent (RFC 9112 §3.2.2: it replaces Host). */
  readonly authority?: string
}

export interface PathRefusal {
  readonly ok: false
  /** A short fixed text for the 400 detail; never contains the input. */
  readonly reason: string
}

export type NormalizedTarget = NormalizedPath | PathRefusal

const SLASH = 0x2f
const PERCENT = 0x25
const DOT = 0x2e
const QUESTION = 0x3f

// Character classes of raw (not escaped) path characters.
const PLAIN = 0
const SEPARATOR = 1
const ESCAPE = 2
const CONTROL = 3
const BACKSLASH = 4
const SEMICOLON = 5
const SPACE = 6

const CLASS = new Uint8Array(128)
for (let c = 0; c < 0x20; c++) CLASS[c] = CONTROL
CLASS[0x7f] = CONTROL
CLASS[0x20] = SPACE
CLASS[SLASH] = SEPARATOR
CLASS[PERCENT] = ESCAPE
CLASS[0x5c] = BACKSLASH
CLASS[0x3b] = SEMICOLON

// Hex digit values by char code, -1 for anything else.
const HEX = new Int8Array(128).fill(-1)
for (let d = 0; d < 10; d++) HEX[0x30 + d] = d
for (let d = 0; d < 6; d++) {
  HEX[0x41 + d] = 10 + d
  HEX[0x61 + d] = 10 + d
}

// RFC 3986 §2.3 unreserved characters, which are decoded. `.` is unreserved too, but an encoded dot is refused.
const UNRESERVED = new Uint8Array(128)
for (let c = 0x30; c <= 0x39; c++) UNRESERVED[c] = 1
for (let c = 0x41; c <= 0x5a; c++) UNRESERVED[c] = 1
for (let c = 0x61; c <= 0x7a; c++) UNRESERVED[c] = 1
UNRESERVED[0x2d] = 1 // -
UNRESERVED[0x5f] = 1 // _
UNRESERVED[0x7e] = 1 // ~

// Characters of an absolute-form authority we accept: a reg-name, IPv4, or [IPv6], and a port.
const AUTHORITY = new Uint8Array(128)
for (let c = 0; c < 128; c++) if (UNRESERVED[c] === 1) AUTHORITY[c] = 1
AUTHORITY[DOT] = 1
AUTHORITY[0x3a] = 1 // :
AUTHORITY[0x5b] = 1 // [
AUTHORITY[0x5d] = 1 // ]

const UPPER_ESCAPE: string[] = []
for (let b = 0; b < 256; b++) UPPER_ESCAPE.push('%' + b.toString(16).toUpperCase().padStart(2, '0'))

const ABSOLUTE_FORM = /^https?:\/\//i

/** Reasons are short, fixed texts (they become the 400 detail) and never contain the input. */
function fail (reason: string): PathRefusal {
  return { ok: false, reason }
}

/**
 * Normalize a request-target exactly as received: origin-form (`/a/b?x=1`) or absolute-form (`http://host/a?x=1`,
 * whose authority is returned raw for the caller to check; an empty path there means `/`, RFC 9112 §3.2.1).
 * The query (after the first `?`) is returned raw, exactly as sent; it is only checked for control characters,
 * spaces and raw non-ASCII, which no client may send and no upstream client library accepts.
 */
export function normalizePath (rawTarget: string): NormalizedTarget {
  const length = rawTarget.length
  if (length === 0) return fail('empty request target')
  if (rawTarget.indexOf('#') !== -1) return fail('fragment in request target')

  let source = rawTarget
  let from = 0
  let authority: string | undefined
  if (rawTarget.charCodeAt(0) !== SLASH) {
    if (!ABSOLUTE_FORM.test(rawTarget)) return fail('request target must be a path starting with /')
    const authorityStart = rawTarget.indexOf('//') + 2
    let pathStart = authorityStart
    while (pathStart < length) {
      const c = rawTarget.charCodeAt(pathStart)
      if (c === SLASH || c === QUESTION) break
      // host[:port] only: no userinfo (RFC 9110 §4.2.4) and no `\`, which WHATWG URL parsers read as `/`.
      if (c >= 128 || AUTHORITY[c] !== 1) return fail('invalid host in absolute-form request target')
      pathStart++
    }
    if (pathStart === authorityStart) return fail('absolute-form request target without a host')
    authority = rawTarget.slice(authorityStart, pathStart)
    if (pathStart === length || rawTarget.charCodeAt(pathStart) === QUESTION) {
      // RFC 9110 §4.2.3: an empty path is equivalent to "/".
      source = '/' + rawTarget.slice(pathStart)
    } else {
      from = pathStart
    }
  }

  const q = source.indexOf('?', from)
  const to = q === -1 ? source.length : q
  let rawQuery = ''
  if (q !== -1) {
    for (let i = q + 1; i < source.length; i++) {
      const c = source.charCodeAt(i)
      if (c <= 0x20 || c >= 0x7f) return fail('invalid character in query')
    }
    rawQuery = source.slice(q + 1)
  }

  const path = normalizeRange(source, from, to)
  if (typeof path !== 'string') return path
  return authority === undefined ? { ok: true, path, rawQuery } : { ok: true, path, rawQuery, authority }
}

/** Normalize `source[from, to)`, which starts with `/`. Returns the path or a failure. */
function normalizeRange (source: string, from: number, to: number): string | PathRefusal {
  let out: string | undefined // built only when the path changes
  let copiedTo = from // source[from, copiedTo) is already accounted for in `out`
  let previousWasSlash = false
  let segmentLength = 0
  let segmentDots = 0
  let highEscapes = false
  let percentEscapes = false

  for (let i = from; i < to; i++) {
    const c = source.charCodeAt(i)
    if (c > 0x7e) {
      return c === 0x7f ? fail('control character in path') : fail('non-ASCII character in path (percent-encode it)')
    }
    switch (CLASS[c]) {
      case PLAIN:
        previousWasSlash = false
        segmentLength++
        if (c === DOT) segmentDots++
        break
      case SEPARATOR:
        if (segmentDots === segmentLength && segmentLength > 0 && segmentLength <= 2) return fail('dot segment in path')
        if (previousWasSlash) {
          out = (out ?? '') + source.slice(copiedTo, i) // drop this `/`: runs of slashes become one
          copiedTo = i + 1
        }
        previousWasSlash = true
        segmentLength = 0
        segmentDots = 0
        break
      case ESCAPE: {
        if (i + 2 >= to) return fail('malformed percent-encoding in path')
        const c1 = source.charCodeAt(i + 1)
        const c2 = source.charCodeAt(i + 2)
        const h1 = c1 < 128 ? HEX[c1]! : -1
        const h2 = c2 < 128 ? HEX[c2]! : -1
        if (h1 < 0 || h2 < 0) return fail('malformed percent-encoding in path')
        const b = h1 * 16 + h2
        if (b === DOT) return fail('encoded dot in path')
        if (b === SLASH) return fail('encoded slash in path')
        if (b === 0x5c) return fail('encoded backslash in path')
        if (b === 0x3b) return fail('encoded semicolon in path')
        if (b === 0) return fail('NUL in path')
        if (b < 0x20 || b === 0x7f) return fail('control character in path')
        if (b < 128 && UNRESERVED[b] === 1) {
          out = (out ?? '') + source.slice(copiedTo, i) + String.fromCharCode(b)
          copiedTo = i + 3
        } else {
          if (b >= 128) highEscapes = true
          else if (b === PERCENT) percentEscapes = true
          if (c1 >= 0x61 || c2 >= 0x61) { // lower-case hex digit: RFC 3986 §6.2.2.1 prefers upper case
            out = (out ?? '') + source.slice(copiedTo, i) + UPPER_ESCAPE[b]!
            copiedTo = i + 3
          }
        }
        previousWasSlash = false
        segmentLength++
        i += 2
        break
      }
      case CONTROL:
        return c === 0 ? fail('NUL in path') : fail('control character in path')
      case BACKSLASH:
        return fail('backslash in path')
      case SEMICOLON:
        return fail('semicolon in path')
      default: // SPACE
        return fail('space in path')
    }
  }
  if (segmentDots === segmentLength && segmentLength > 0 && segmentLength <= 2) return fail('dot segment in path')

  const path = out === undefined ? source.slice(from, to) : out + source.slice(copiedTo, to)
  if (percentEscapes && hidesRefusedEscape(path)) return fail('double-encoded character in path')
  if (highEscapes) {
    const bytes = decodeEscapes(path)
    // Escaped bytes must form UTF-8: lenient decoders read overlong forms such as %C0%AE as `.`.
    if (!isUtf8(bytes)) return fail('percent-encoded bytes in path are not UTF-8')
    if (hidesStructure(bytes.toString('utf8'))) return fail('full-width or compatibility form of . / \\ ; % ? # in path')
  }
  return path
}

/** A byte whose escape a path may not carry: `.` `/` `\` `;`, NUL and control characters. */
function isRefusedEscape (b: number): boolean {
  return b === DOT || b === SLASH || b === 0x5c || b === 0x3b || b < 0x20 || b === 0x7f
}

/**
 * `%25` (an escaped `%`), possibly repeated as `%2525...`, followed by the hex digits of a refused escape: what an
 * upstream that decodes twice (or more) would read as `.` `/` `\` `;` or a control character. `path` is normalized,
 * so unreserved escapes are already decoded (`%25%32%65` arrives here as `%252e`).
 */
function hidesRefusedEscape (path: string): boolean {
  for (let i = path.indexOf('%25'); i !== -1; i = path.indexOf('%25', i + 3)) {
    let j = i + 3
    while (path.charCodeAt(j) === 0x32 && path.charCodeAt(j + 1) === 0x35) j += 2 // `25`: one more level of `%`
    const c1 = path.charCodeAt(j)
    const c2 = path.charCodeAt(j + 1)
    const h1 = c1 < 128 ? HEX[c1]! : -1
    const h2 = c2 < 128 ? HEX[c2]! : -1
    if (h1 >= 0 && h2 >= 0 && isRefusedEscape(h1 * 16 + h2)) return true
  }
  return false
}

const STRUCTURAL = /[./\\;%?#]/g
const NON_ASCII = /[^\x00-\x7f]/

/**
 * Whether NFKC adds a `.` `/` `\` `;` `%` `?` or `#` to the decoded path: full-width U+FF0E U+FF0F U+FF3C, one dot
 * leader U+2024, small full stop U+FE52 and the like would become path syntax at an upstream that normalizes.
 */
function hidesStructure (decoded: string): boolean {
  if (!NON_ASCII.test(decoded)) return false
  return (decoded.normalize('NFKC').match(STRUCTURAL)?.length ?? 0) !== (decoded.match(STRUCTURAL)?.length ?? 0)
}

/** The bytes a path stands for, every escape decoded once. Only for paths normalizePath accepted. */
function decodeEscapes (path: string): Buffer {
  const bytes = Buffer.allocUnsafe(path.length)
  let n = 0
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i)
    if (c === PERCENT) {
      bytes[n++] = HEX[path.charCodeAt(i + 1)]! * 16 + HEX[path.charCodeAt(i + 2)]!
      i += 2
    } else {
      bytes[n++] = c
    }
  }
  return bytes.subarray(0, n)
}
