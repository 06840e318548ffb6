/**
 * HTTP Message Signatures (RFC 9421): component values, the signature base, the algorithms of
 * §3.3, and signing. The policy (schemes.ts) decides which signatures are acceptable; this module
 * only computes. Nothing here throws for malformed input: every check returns a Result.
 */
import { constants, createHmac, sign as cryptoSign, timingSafeEqual, verify as cryptoVerify, type KeyObject } from 'node:crypto'
import {
  isInnerList, joinFieldLines, parseDictionary, parseItem, parseList, serializeDictionary, serializeInnerList,
  serializeItem, serializeMember, type BareItem, type Dictionary, type InnerList, type Item, type Member, type Parameters,
  type ParseResult,
} from './structured-fields.js'

export type Result<T> = ParseResult<T>

export const SIGNATURE_ALGORITHMS = ['hmac-sha256', 'ed25519', 'ecdsa-p256-sha256', 'rsa-pss-sha512', 'rsa-v1_5-sha256'] as const
export type SignatureAlgorithm = typeof SIGNATURE_ALGORITHMS[number]

export function isSignatureAlgorithm (value: unknown): value is SignatureAlgorithm {
  return typeof value === 'string' && (SIGNATURE_ALGORITHMS as readonly string[]).includes(value)
}

/** The parts of an HTTP message that component values are derived from. */
export interface HttpMessage {
  readonly kind: 'request' | 'response'
  readonly method?: string
  /** Lower-case URI scheme, `http` or `https`. */
  readonly scheme?: string
  /** The Host (authority) as sent. */
  readonly authority?: string
  /** The request-target exactly as sent: origin-form `/path?query` (or absolute-form). */
  readonly target?: string
  readonly status?: number
  /** Every field line of a field (lower-case name), in order; empty when absent. */
  fieldLines (name: string): readonly string[]
}

/** A request message from a URL and headers (client side, tests). `Host` defaults to the URL's host. */
export function requestMessage (method: string, url: string | URL, headers: Readonly<Record<string, string | readonly string[] | undefined>> = {}): HttpMessage {
  const parsed = typeof url === 'string' ? new URL(url) : url
  const lines = new Map<string, string[]>()
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue
    const key = name.toLowerCase()
    lines.set(key, [...(lines.get(key) ?? []), ...(typeof value === 'string' ? [value] : value)])
  }
  return {
    kind: 'request',
    method,
    scheme: parsed.protocol.slice(0, -1),
    authority: lines.get('host')?.[0] ?? parsed.host,
    target: `${parsed.pathname}${parsed.search}`,
    fieldLines: (name) => lines.get(name) ?? [],
  }
}

export function responseMessage (status: number, headers: Readonly<Record<string, string | readonly string[]>>): HttpMessage {
  const lines = new Map<string, readonly string[]>()
  for (const [name, value] of Object.entries(headers)) lines.set(name.toLowerCase(), typeof value === 'string' ? [value] : value)
  return { kind: 'response', status, fieldLines: (name) => lines.get(name) ?? [] }
}

// Bounds: the work a request can ask for before any signature is checked (DESIGN, "Signature bases are bounded")

/** Covered components per signature; a Signature-Input member covering more is unusable (401 invalid_signature). */
export const MAX_COVERED_COMPONENTS = 32
/** Signatures (labels) in one Signature-Input; more fails the field as a whole. */
export const MAX_SIGNATURES = 8

// Component identifiers

const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/
const DERIVED_NAME = /^@[a-z0-9-]+$/

/**
 * `@method`, `content-digest`, `@query-param;name="id"` or the serialized form `"@query-param";name="id"`
 * to a component identifier (a String Item with parameters).
 */
export function parseComponentId (text: string): Result<Item> {
  const trimmed = text.trim()
  let source = trimmed
  if (!trimmed.startsWith('"')) {
    const semi = trimmed.indexOf(';')
    const name = semi === -1 ? trimmed : trimmed.slice(0, semi)
    source = `"${name}"${semi === -1 ? '' : trimmed.slice(semi)}`
  }
  const parsed = parseItem(source, { duplicates: 'error' })
  if (!parsed.ok) return { ok: false, error: `component identifier ${JSON.stringify(text)} is malformed: ${parsed.error}` }
  if (typeof parsed.value.value !== 'string') return { ok: false, error: `component identifier ${JSON.stringify(text)} must be a string` }
  return parsed
}

const DERIVED_COMPONENTS = new Set(['@method', '@target-uri', '@authority', '@scheme', '@request-target', '@path', '@query', '@query-param', '@status'])

/** Why a component identifier can never be valid in a request signature (for config checks), or undefined. */
export function componentIdProblem (id: Item): string | undefined {
  const name = id.value
  if (typeof name !== 'string') return 'a component identifier is a string'
  if (name === '@signature-params') return '@signature-params is never a covered component'
  if (name === '@status') return '@status is only for responses'
  if (name.startsWith('@')) {
    if (!DERIVED_COMPONENTS.has(name)) return `unknown derived component ${name}`
    for (const [key, value] of id.params) {
      if (name !== '@query-param' || key !== 'name') return `unknown parameter ${key} on ${name}`
      if (typeof value !== 'string') return '@query-param needs name="..."'
    }
    if (name === '@query-param' && !id.params.has('name')) return '@query-param needs name="..."'
    return undefined
  }
  if (!FIELD_NAME.test(name)) return `${JSON.stringify(name)} is not a lower-case field name`
  for (const [key, value] of id.params) {
    if ((key === 'sf' || key === 'bs') && value === true) continue
    if (key === 'key' && typeof value === 'string') continue
    return `parameter ${key} is not supported on ${name} (sf, bs, key="...")`
  }
  if (id.params.has('bs') && (id.params.has('sf') || id.params.has('key'))) return 'bs cannot be combined with sf or key'
  return undefined
}

export function componentKey (id: Item): string {
  return serializeItem(id)
}

// Component values (RFC 9421 §2.1, §2.2)

/** Structured fields whose type is known, for the `sf` and `key` parameters (RFC 9421 §2.1.1). */
const DICTIONARY_FIELDS = new Set([
  'signature', 'signature-input', 'accept-signature', 'content-digest', 'repr-digest', 'want-content-digest',
  'want-repr-digest', 'priority', 'example-dict',
])
const LIST_FIELDS = new Set(['accept-ch', 'cache-status', 'proxy-status', 'example-list'])

/**
 * One message's component sources, each read and parsed at most once however many components use it:
 * a field's lines and joined value, its dictionary (`key`, `sf`), its strict re-serialization (`sf`), and
 * the target's path and query parameters (`@query-param`). Make one per message (per request).
 */
export class MessageComponents {
  /** Field and query parses so far: at most one per field and kind, and one of the query, per message. */
  parses = 0
  readonly message: HttpMessage
  private readonly lines = new Map<string, { readonly lines: readonly string[], readonly joined: string }>()
  private readonly dictionaries = new Map<string, { readonly strict: Result<Dictionary>, loose?: Result<Dictionary> }>()
  private readonly structured = new Map<string, string | undefined>()
  private targetParts: { readonly target: string, readonly path: string, readonly query: string | undefined } | undefined
  private queryParams: Map<string, string[]> | undefined

  constructor (message: HttpMessage) {
    this.message = message
  }

  static of (message: HttpMessage | MessageComponents): MessageComponents {
    return message instanceof MessageComponents ? message : new MessageComponents(message)
  }

  fieldLines (name: string): readonly string[] {
    return this.field(name).lines
  }

  /** The field lines trimmed and joined with ", " (RFC 9421 §2.1). */
  joined (name: string): string {
    return this.field(name).joined
  }

  /**
   * The field as a Dictionary. `strict` refuses a key given twice (fields carrying credentials); `loose` is
   * RFC 8941's "last wins". One parse serves both unless the field repeats a key or is malformed.
   */
  dictionary (name: string, mode: 'strict' | 'loose'): Result<Dictionary> {
    let entry = this.dictionaries.get(name)
    if (entry === undefined) {
      this.parses++
      entry = { strict: parseDictionary(this.joined(name), { duplicates: 'error' }) }
      this.dictionaries.set(name, entry)
    }
    if (mode === 'strict' || entry.strict.ok) return entry.strict
    if (entry.loose === undefined) {
      this.parses++
      entry.loose = parseDictionary(this.joined(name))
    }
    return entry.loose
  }

  /**
   * RFC 9421 §2.1.1 (`sf`): the field re-serialized, undefined when it is not a structured field. Known
   * dictionaries and lists by name; otherwise the first of dictionary, list, item that parses (the
   * dictionary parse is the one `key` uses).
   */
  reserialized (name: string): string | undefined {
    if (!this.structured.has(name)) this.structured.set(name, this.reserialize(name))
    return this.structured.get(name)
  }

  private reserialize (name: string): string | undefined {
    if (LIST_FIELDS.has(name)) {
      this.parses++
      const list = parseList(this.joined(name))
      return list.ok ? list.value.map(serializeMember).join(', ') : undefined
    }
    const dict = this.dictionary(name, 'loose')
    if (dict.ok) return serializeDictionary(dict.value)
    if (DICTIONARY_FIELDS.has(name)) return undefined
    this.parses++
    const list = parseList(this.joined(name))
    if (list.ok) return list.value.map(serializeMember).join(', ')
    const item = parseItem(this.joined(name))
    return item.ok ? serializeItem(item.value) : undefined
  }

  target (): { readonly target: string, readonly path: string, readonly query: string | undefined } {
    if (this.targetParts === undefined) {
      const target = this.message.target ?? ''
      this.targetParts = { target, ...splitTarget(target) }
    }
    return this.targetParts
  }

  /** Every value of a query parameter by its form-encoded name, form-encoded (RFC 9421 §2.2.8), in order. */
  queryParam (encodedName: string): readonly string[] {
    if (this.queryParams === undefined) {
      this.parses++
      const params = new Map<string, string[]>()
      for (const [key, value] of new URLSearchParams(this.target().query ?? '')) {
        const name = formEncode(key)
        const values = params.get(name)
        if (values === undefined) params.set(name, [formEncode(value)])
        else values.push(formEncode(value))
      }
      this.queryParams = params
    }
    return this.queryParams.get(encodedName) ?? []
  }

  private field (name: string): { readonly lines: readonly string[], readonly joined: string } {
    let entry = this.lines.get(name)
    if (entry === undefined) {
      const lines = this.message.fieldLines(name)
      entry = { lines, joined: joinFieldLines(lines) }
      this.lines.set(name, entry)
    }
    return entry
  }
}

/** The component values of one identifier (several only for a repeated `@query-param`). */
export function componentValues (message: HttpMessage | MessageComponents, id: Item): Result<string[]> {
  const name = id.value
  if (typeof name !== 'string') return { ok: false, error: 'component identifier must be a string' }
  if (name === '@signature-params') return { ok: false, error: '@signature-params must not be a covered component' }
  const source = MessageComponents.of(message)
  if (name.startsWith('@')) return derivedValue(source, name, id.params)
  return fieldValue(source, name, id.params)
}

function derivedValue (source: MessageComponents, name: string, params: Parameters): Result<string[]> {
  const message = source.message
  if (!DERIVED_NAME.test(name)) return { ok: false, error: `unknown derived component ${name}` }
  if (params.has('req')) return { ok: false, error: `the req parameter is not supported (${name})` }
  for (const key of params.keys()) {
    if (!(name === '@query-param' && key === 'name')) return { ok: false, error: `unknown parameter ${key} on ${name}` }
  }
  if (name === '@status') {
    if (message.kind !== 'response' || message.status === undefined) return { ok: false, error: '@status is only for responses' }
    return { ok: true, value: [String(message.status)] }
  }
  if (message.kind !== 'request') return { ok: false, error: `${name} is only for requests` }
  const { target, path, query } = source.target()
  switch (name) {
    case '@method':
      return message.method ? { ok: true, value: [message.method] } : { ok: false, error: 'no method' }
    case '@target-uri':
      return { ok: true, value: [targetUri(message, target)] }
    case '@authority':
      return { ok: true, value: [normalizeAuthority(message.authority ?? '', message.scheme ?? '')] }
    case '@scheme':
      return { ok: true, value: [(message.scheme ?? '').toLowerCase()] }
    case '@request-target':
      return { ok: true, value: [target] }
    case '@path':
      return { ok: true, value: [path === '' ? '/' : path] }
    case '@query':
      return { ok: true, value: [`?${query ?? ''}`] }
    case '@query-param': {
      const wanted = params.get('name')
      if (typeof wanted !== 'string') return { ok: false, error: '@query-param needs a string name parameter' }
      const values = source.queryParam(wanted)
      if (values.length === 0) return { ok: false, error: `query parameter ${wanted} is absent` }
      return { ok: true, value: [...values] }
    }
    default:
      return { ok: false, error: `unknown derived component ${name}` }
  }
}

function fieldValue (source: MessageComponents, name: string, params: Parameters): Result<string[]> {
  if (!FIELD_NAME.test(name)) return { ok: false, error: `component name ${JSON.stringify(name)} must be a lower-case field name` }
  for (const [key, value] of params) {
    if (key === 'req' || key === 'tr') return { ok: false, error: `the ${key} parameter is not supported (${name})` }
    if (key === 'sf' || key === 'bs') {
      if (value !== true) return { ok: false, error: `the ${key} parameter takes no value (${name})` }
    } else if (key === 'key') {
      if (typeof value !== 'string') return { ok: false, error: `the key parameter must be a string (${name})` }
    } else {
      return { ok: false, error: `unknown parameter ${key} on ${name}` }
    }
  }
  if (params.has('bs') && (params.has('sf') || params.has('key'))) return { ok: false, error: `bs cannot be combined with sf or key (${name})` }
  const lines = source.fieldLines(name)
  if (lines.length === 0) return { ok: false, error: `covered field ${name} is absent` }

  // RFC 9421 §2.1: each field line trimmed, then joined with ", ".
  if (params.has('bs')) {
    return { ok: true, value: [lines.map((line) => `:${Buffer.from(line.trim(), 'latin1').toString('base64')}:`).join(', ')] }
  }
  const dictKey = params.get('key')
  if (typeof dictKey === 'string') {
    const dict = source.dictionary(name, 'loose')
    if (!dict.ok) return { ok: false, error: `field ${name} is not a dictionary` }
    const member = dict.value.get(dictKey)
    if (member === undefined) return { ok: false, error: `field ${name} has no member ${dictKey}` }
    return { ok: true, value: [serializeMember(member)] }
  }
  if (params.has('sf')) {
    const strict = source.reserialized(name)
    return strict === undefined ? { ok: false, error: `field ${name} is not a structured field` } : { ok: true, value: [strict] }
  }
  return { ok: true, value: [source.joined(name)] }
}

/** Path and query of a request-target, without decoding (origin-form or absolute-form). */
function splitTarget (target: string): { path: string, query: string | undefined } {
  let rest = target
  const absolute = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/.exec(target)
  if (absolute) rest = target.slice(absolute[0].length)
  const q = rest.indexOf('?')
  return q === -1 ? { path: rest, query: undefined } : { path: rest.slice(0, q), query: rest.slice(q + 1) }
}

function targetUri (message: HttpMessage, target: string): string {
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(target)) return target
  const scheme = (message.scheme ?? '').toLowerCase()
  return `${scheme}://${normalizeAuthority(message.authority ?? '', scheme)}${target === '*' ? '' : target}`
}

/** RFC 9421 §2.2.3: host lower-cased, the scheme's default port removed. */
export function normalizeAuthority (authority: string, scheme: string): string {
  const lower = authority.trim().toLowerCase()
  const match = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(lower)
  if (!match) return lower
  const host = match[1]!
  const port = match[2]
  if (port === undefined || port === '') return host
  if ((scheme === 'http' && port === '80') || (scheme === 'https' && port === '443')) return host
  return `${host}:${port}`
}

/** RFC 9421 §2.2.8: the application/x-www-form-urlencoded percent-encode set, with %20 for space. */
function formEncode (text: string): string {
  if (/^[A-Za-z0-9*\-._]*$/.test(text)) return text
  let out = ''
  for (const byte of Buffer.from(text, 'utf8')) {
    const c = String.fromCharCode(byte)
    out += /[A-Za-z0-9*\-._]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}

// The signature base (RFC 9421 §2.5)

/**
 * The signature base for one signature: a line per covered component, then `"@signature-params": ...`,
 * joined with LF and no trailing LF. Fails on a duplicated or `@signature-params` component, an absent
 * field, an unknown parameter, or a non-ASCII value. Pass the request's MessageComponents to share its
 * parses with other work on the same request.
 */
export function buildSignatureBase (message: HttpMessage | MessageComponents, signatureParams: InnerList): Result<string> {
  const source = MessageComponents.of(message)
  const lines: string[] = []
  const seen = new Set<string>()
  for (const id of signatureParams.items) {
    if (typeof id.value !== 'string') return { ok: false, error: 'covered components must be strings' }
    const key = componentKey(id)
    if (seen.has(key)) return { ok: false, error: `component ${key} is covered twice` }
    seen.add(key)
    const values = componentValues(source, id)
    if (!values.ok) return values
    for (const value of values.value) lines.push(`${key}: ${value}`)
  }
  lines.push(`"@signature-params": ${serializeInnerList(signatureParams)}`)
  const base = lines.join('\n')
  // eslint-disable-next-line no-control-regex
  if (/[^\x20-\x7e\n]/.test(base)) return { ok: false, error: 'a covered component value is not printable ASCII' }
  return { ok: true, value: base }
}

// Signature parameters and the Signature / Signature-Input fields (RFC 9421 §2.3, §4)

export interface SignatureParams {
  readonly created?: number
  readonly expires?: number
  readonly nonce?: string
  readonly alg?: string
  readonly keyid?: string
  readonly tag?: string
}

export interface SignatureEntry {
  readonly label: string
  /** The covered components with the signature parameters, as in Signature-Input. */
  readonly input: InnerList
  readonly params: SignatureParams
  readonly signature: Buffer
}

export type LabeledEntry = { readonly label: string, readonly ok: true, readonly entry: SignatureEntry }
  | { readonly label: string, readonly ok: false, readonly error: string }

/** Typed view of the registered parameters; other (extension) parameters stay in the input and are ignored. */
export function readSignatureParams (params: Parameters): Result<SignatureParams> {
  const out: Record<string, string | number> = {}
  for (const [key, value] of params) {
    if (key === 'created' || key === 'expires') {
      if (typeof value !== 'number') return { ok: false, error: `${key} must be an integer` }
      out[key] = value
    } else if (key === 'nonce' || key === 'alg' || key === 'keyid' || key === 'tag') {
      if (typeof value !== 'string') return { ok: false, error: `${key} must be a string` }
      out[key] = value
    }
  }
  return { ok: true, value: out }
}

/**
 * Parses Signature-Input and Signature (each the joined field lines). A field that is not a valid
 * dictionary, or names a label twice, or a Signature-Input with more than MAX_SIGNATURES labels, fails as
 * a whole; otherwise each Signature-Input label gives an entry or the reason it cannot be used (more than
 * MAX_COVERED_COMPONENTS components, one covered twice, ...), in field order. No base is built here.
 */
export function parseSignatureFields (signatureInput: string, signature: string): Result<LabeledEntry[]> {
  const inputs = parseDictionary(signatureInput, { duplicates: 'error' })
  if (!inputs.ok) return { ok: false, error: `Signature-Input is malformed: ${inputs.error}` }
  if (inputs.value.size > MAX_SIGNATURES) return { ok: false, error: `Signature-Input has ${inputs.value.size} signatures; at most ${MAX_SIGNATURES} are accepted` }
  const signatures = parseDictionary(signature, { duplicates: 'error' })
  if (!signatures.ok) return { ok: false, error: `Signature is malformed: ${signatures.error}` }
  const entries: LabeledEntry[] = []
  for (const [label, member] of inputs.value) entries.push(readEntry(label, member, signatures.value.get(label)))
  return { ok: true, value: entries }
}

function readEntry (label: string, input: Member, signature: Member | undefined): LabeledEntry {
  if (!isInnerList(input)) return { label, ok: false, error: `Signature-Input ${label} is not an inner list` }
  if (input.items.length > MAX_COVERED_COMPONENTS) {
    return { label, ok: false, error: `Signature-Input ${label} covers ${input.items.length} components; at most ${MAX_COVERED_COMPONENTS} are accepted` }
  }
  if (input.items.some((item) => typeof item.value !== 'string')) return { label, ok: false, error: `Signature-Input ${label} lists a non-string component` }
  const covered = new Set<string>()
  for (const item of input.items) {
    const key = componentKey(item)
    if (covered.has(key)) return { label, ok: false, error: `Signature-Input ${label} covers ${key} twice` }
    covered.add(key)
  }
  if (signature === undefined) return { label, ok: false, error: `Signature has no ${label} member` }
  if (isInnerList(signature) || !Buffer.isBuffer(signature.value)) return { label, ok: false, error: `Signature ${label} is not a byte sequence` }
  const params = readSignatureParams(input.params)
  if (!params.ok) return { label, ok: false, error: `Signature-Input ${label}: ${params.error}` }
  return { label, ok: true, entry: { label, input, params: params.value, signature: signature.value } }
}

// Algorithms (RFC 9421 §3.3)

/** Whether a key object is of the type an algorithm needs (RFC 9421 §3.2 step 6: key and algorithm must agree). */
export function keyFitsAlgorithm (algorithm: SignatureAlgorithm, key: KeyObject): boolean {
  switch (algorithm) {
    case 'hmac-sha256':
      return key.type === 'secret'
    case 'ed25519':
      return key.asymmetricKeyType === 'ed25519'
    case 'ecdsa-p256-sha256':
      return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1'
    case 'rsa-pss-sha512':
      return key.asymmetricKeyType === 'rsa' || key.asymmetricKeyType === 'rsa-pss'
    case 'rsa-v1_5-sha256':
      return key.asymmetricKeyType === 'rsa'
  }
}

/** Verifies signature bytes; false (never an exception) for a wrong key type, length or value. */
export function verifySignatureBytes (algorithm: SignatureAlgorithm, key: KeyObject, data: Buffer, signature: Buffer): boolean {
  if (!keyFitsAlgorithm(algorithm, key)) return false
  try {
    switch (algorithm) {
      case 'hmac-sha256': {
        const expected = createHmac('sha256', key).update(data).digest()
        return signature.length === expected.length && timingSafeEqual(signature, expected)
      }
      case 'ed25519':
        return cryptoVerify(null, data, key, signature)
      case 'ecdsa-p256-sha256':
        // RFC 9421 §3.3.4: r || s, 32 bytes each, not DER.
        return signature.length === 64 && cryptoVerify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, signature)
      case 'rsa-pss-sha512':
        // RFC 9421 §3.3.1: MGF1 with SHA-512, salt length 64.
        return cryptoVerify('sha512', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 64 }, signature)
      case 'rsa-v1_5-sha256':
        return cryptoVerify('sha256', data, { key, padding: constants.RSA_PKCS1_PADDING }, signature)
    }
  } catch {
    return false
  }
}

/** Signs with a private key (or the HMAC secret). Throws TypeError when the key does not fit the algorithm. */
export function createSignatureBytes (algorithm: SignatureAlgorithm, key: KeyObject, data: Buffer): Buffer {
  if (algorithm === 'hmac-sha256') {
    if (key.type !== 'secret') throw new TypeError('hmac-sha256 needs a secret key')
    return createHmac('sha256', key).update(data).digest()
  }
  if (key.type !== 'private' || !keyFitsAlgorithm(algorithm, key)) throw new TypeError(`the key does not fit ${algorithm}`)
  switch (algorithm) {
    case 'ed25519':
      return cryptoSign(null, data, key)
    case 'ecdsa-p256-sha256':
      return cryptoSign('sha256', data, { key, dsaEncoding: 'ieee-p1363' })
    case 'rsa-pss-sha512':
      return cryptoSign('sha512', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 64 })
    case 'rsa-v1_5-sha256':
      return cryptoSign('sha256', data, { key, padding: constants.RSA_PKCS1_PADDING })
  }
}

/** The algorithm a key implies, for signers that are given only a key. RSA keys sign rsa-pss-sha512. */
export function algorithmForKey (key: KeyObject): SignatureAlgorithm | undefined {
  if (key.type === 'secret') return 'hmac-sha256'
  if (key.asymmetricKeyType === 'ed25519') return 'ed25519'
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ecdsa-p256-sha256'
  if (key.asymmetricKeyType === 'rsa' || key.asymmetricKeyType === 'rsa-pss') return 'rsa-pss-sha512'
  return undefined
}

// Signing (RFC 9421 §3.1)

export interface Rfc9421SignOptions {
  readonly message: HttpMessage
  /** Covered components in order: `@method`, `content-digest`, `@query-param;name="id"`... */
  readonly components: readonly string[]
  /** Signature parameters, serialized in the object's key order (e.g. created, keyid, alg). */
  readonly params: SignatureParams
  readonly algorithm: SignatureAlgorithm
  readonly key: KeyObject
  /** Default `sig1`. */
  readonly label?: string
}

export interface Rfc9421Signature {
  readonly label: string
  readonly base: string
  readonly signature: Buffer
  /** The Signature-Input field value (`label=(...);created=...`). */
  readonly signatureInput: string
  /** The Signature field value (`label=:...:`). */
  readonly signatureField: string
}

/** Builds the signature base and signs it. Fails (a Result) when a covered component is absent or invalid. */
export function signRfc9421 (options: Rfc9421SignOptions): Result<Rfc9421Signature> {
  const items: Item[] = []
  for (const text of options.components) {
    const id = parseComponentId(text)
    if (!id.ok) return id
    items.push(id.value)
  }
  const params: Parameters = new Map()
  for (const [key, value] of Object.entries(options.params)) {
    if (value !== undefined) params.set(key, value as BareItem)
  }
  const input: InnerList = { items, params }
  const base = buildSignatureBase(options.message, input)
  if (!base.ok) return base
  const signature = createSignatureBytes(options.algorithm, options.key, Buffer.from(base.value, 'ascii'))
  const label = options.label ?? 'sig1'
  return {
    ok: true,
    value: {
      label,
      base: base.value,
      signature,
      signatureInput: serializeDictionary(new Map([[label, input]])),
      signatureField: serializeDictionary(new Map([[label, { value: signature, params: new Map() }]])),
    },
  }
}

/**
 * An Accept-Signature field value (RFC 9421 §5.1) asking for a signature over `components`, with
 * `created` requested and an optional `tag`.
 */
export function acceptSignature (label: string, components: readonly Item[], tag?: string): string {
  const params: Parameters = new Map<string, BareItem>([['created', true]])
  if (tag !== undefined) params.set('tag', tag)
  return serializeDictionary(new Map([[label, { items: [...components], params }]]))
}
