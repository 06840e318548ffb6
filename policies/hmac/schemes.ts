/**
 * The four verification schemes of the `hmac` policy. Each is built once from the validated config
 * and returns a per-request `evaluate`. Rejections are values; a store failure (StoreUnavailableError
 * from setIfAbsent) is a fault and propagates to the chain.
 */
import { createHash, createHmac, createSecretKey, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto'
import { Rejection, type Challenge } from '../../gateway/errors.js'
import { parseDuration } from '../../gateway/config/units.js'
import type { Store } from '../../gateway/store/types.js'
import type { IdentityUpdate, Outcome, RequestContext } from '../types.js'
import { verifyContentDigest } from './content-digest.js'
import {
  acceptSignature, buildSignatureBase, componentKey, MessageComponents, parseComponentId, parseSignatureFields, verifySignatureBytes,
  type HttpMessage, type LabeledEntry, type SignatureEntry,
} from './rfc9421.js'
import type { HmacPolicyConfig } from './schema.js'
import type { SigningKey } from './signing-clients.js'
import { joinFieldLines, parseDictionary, type Item } from './structured-fields.js'

export interface SchemeDeps {
  readonly store: Store
  readonly realm: string
  /** The route's name: default webhook identity. */
  readonly routeName: string
  /** Signing clients by keyId (hmac-sha256, rfc9421). */
  readonly keys: ReadonlyMap<string, SigningKey>
}

export interface Scheme {
  readonly challenge: Challenge
  /** Lower-case names of the headers holding the credential (removed before forwarding). */
  readonly credentialHeaders: readonly string[]
  evaluate (ctx: RequestContext): Promise<Outcome>
}

export const DEFAULT_COMPONENTS = ['@method', '@target-uri', 'content-digest'] as const

export function createScheme (config: HmacPolicyConfig, deps: SchemeDeps): Scheme {
  const windowMs = parseDuration(config.window ?? '300s')
  switch (config.scheme ?? 'hmac-sha256') {
    case 'hmac-sha256': return hmacSha256Scheme(config, deps, windowMs)
    case 'rfc9421': return rfc9421Scheme(config, deps, windowMs)
    case 'github': return githubScheme(config, deps)
    case 'stripe': return stripeScheme(config, deps, windowMs)
  }
}

// Shared pieces

function sha256Hex (data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

/** True when the message has a body (RFC 9112 §6.3): Transfer-Encoding, or a Content-Length above 0. */
function hasBody (ctx: RequestContext): boolean {
  if (ctx.headers['transfer-encoding'] !== undefined) return true
  const length = Number(ctx.headers['content-length'] ?? 0)
  return Number.isFinite(length) && length > 0
}

/** The buffered body (the chain buffered it already: readsBody), or an empty one for a body-less request. */
async function readBody (ctx: RequestContext): Promise<Buffer> {
  return hasBody(ctx) ? await ctx.body() : Buffer.alloc(0)
}

function equalBytes (a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b)
}

/** A one-off key for the work done on an unknown key id, so that unknown and known ids take the same time. */
const DUMMY_KEY: KeyObject = createSecretKey(randomBytes(32))

function identityOf (key: SigningKey): IdentityUpdate {
  return {
    subject: key.client,
    client: key.client,
    scopes: [...key.scopes],
    ...(key.tier !== undefined ? { tier: key.tier } : {}),
  }
}

/** The one value of a header, `null` when absent, or a 400 when it is sent more than once. */
function single (ctx: RequestContext, name: string, display: string): string | null | Rejection {
  const values = ctx.headerValues(name.toLowerCase())
  if (values.length > 1) return Rejection.badRequest(`more than one ${display} header`)
  return values[0] ?? null
}

function requestFromContext (ctx: RequestContext): HttpMessage {
  return {
    kind: 'request',
    method: ctx.method,
    scheme: ctx.scheme,
    authority: ctx.authority,
    target: ctx.rawTarget,
    fieldLines: (name) => ctx.headerValues(name),
  }
}

// hmac-sha256: X-Key-Id, X-Timestamp, X-Signature

const BASE64_SHA256 = /^[A-Za-z0-9+/]{43}=$/

function hmacSha256Scheme (config: HmacPolicyConfig, deps: SchemeDeps, windowMs: number): Scheme {
  const names = {
    keyId: config.headers?.keyId ?? 'X-Key-Id',
    timestamp: config.headers?.timestamp ?? 'X-Timestamp',
    signature: config.headers?.signature ?? 'X-Signature',
  }
  const challenge: Challenge = { scheme: 'HMAC', params: { realm: deps.realm, headers: `${names.keyId} ${names.timestamp} ${names.signature}` } }
  const invalid = (reason: string) => Rejection.unauthenticated('invalid_signature', reason, challenge)
  const replay = config.replay ?? true

  return {
    challenge,
    credentialHeaders: [names.keyId, names.timestamp, names.signature].map((h) => h.toLowerCase()),
    async evaluate (ctx) {
      const keyId = single(ctx, names.keyId, names.keyId)
      if (keyId instanceof Rejection) return keyId
      const timestamp = single(ctx, names.timestamp, names.timestamp)
      if (timestamp instanceof Rejection) return timestamp
      const signature = single(ctx, names.signature, names.signature)
      if (signature instanceof Rejection) return signature
      if (keyId === null && timestamp === null && signature === null) {
        return Rejection.unauthenticated('missing_credentials', `request signature required (${challenge.params.headers})`, challenge)
      }
      if (keyId === null) return invalid(`${names.keyId} header missing`)
      if (timestamp === null) return invalid(`${names.timestamp} header missing`)
      if (signature === null) return invalid(`${names.signature} header missing`)
      if (!/^\d{1,12}$/.test(timestamp)) return invalid(`${names.timestamp} is not a unix time in seconds`)
      if (!BASE64_SHA256.test(signature)) return invalid(`${names.signature} is not a base64 HMAC-SHA256`)

      const key = deps.keys.get(keyId)
      const usable = key !== undefined && key.algorithm === 'hmac-sha256'
      const nowSec = ctx.now() / 1000
      const ts = Number(timestamp)
      const body = await readBody(ctx)
      // Base: METHOD \n REQUEST_TARGET (as sent) \n TIMESTAMP \n hex(sha256(body))
      const base = `${ctx.method}\n${ctx.rawTarget}\n${timestamp}\n${sha256Hex(body)}`
      const expected = createHmac('sha256', usable ? key.key : DUMMY_KEY).update(base).digest()
      const presented = Buffer.from(signature, 'base64')
      if (!usable) return invalid('unknown key id')
      if (ts < nowSec - windowMs / 1000) return invalid(`stale timestamp (more than ${windowMs / 1000} s old)`)
      if (ts > nowSec + windowMs / 1000) return invalid(`timestamp in the future (more than ${windowMs / 1000} s ahead)`)
      if (!equalBytes(presented, expected)) return invalid('bad signature')

      // Keyed on the decoded bytes: two base64 spellings of one MAC are one signature.
      if (replay && !await deps.store.setIfAbsent(`hmac:replay:${sha256Hex(presented)}`, '1', 2 * windowMs)) {
        return Rejection.unauthenticated('replayed_request', 'signature already used', challenge)
      }
      return { identity: identityOf(key) }
    },
  }
}

// rfc9421: Signature-Input + Signature

function rfc9421Scheme (config: HmacPolicyConfig, deps: SchemeDeps, windowMs: number): Scheme {
  const challenge: Challenge = { scheme: 'Signature', params: { realm: deps.realm } }
  const required: Item[] = (config.components ?? DEFAULT_COMPONENTS).map((text) => {
    const id = parseComponentId(text)
    if (!id.ok) throw new TypeError(id.error) // check() refuses these at load
    return id.value
  })
  const isDigest = (id: Item) => id.value === 'content-digest'
  const requiredFor = (body: boolean) => required.filter((id) => body || !isDigest(id))
  const windowSec = windowMs / 1000
  const replay = config.replay ?? true
  const label = config.label
  const acceptFor = (body: boolean) => ({ 'accept-signature': acceptSignature(label ?? 'sig1', requiredFor(body), config.tag) })
  const reject = (code: 'missing_credentials' | 'invalid_signature' | 'replayed_request', reason: string, body: boolean) =>
    Rejection.unauthenticated(code, reason, challenge, acceptFor(body))

  /** Why an entry cannot be the one verified, or undefined when it meets every requirement. */
  const unmet = (labeled: LabeledEntry, body: boolean): string | undefined => {
    if (!labeled.ok) return labeled.error
    const { params, input } = labeled.entry
    if (params.keyid === undefined) return 'keyid parameter missing'
    if (params.created === undefined) return 'created parameter missing'
    if (config.requireNonce && params.nonce === undefined) return 'nonce parameter missing'
    if (config.tag !== undefined && params.tag !== config.tag) return `tag parameter must be "${config.tag}"`
    const covered = new Set(input.items.map(componentKey))
    for (const id of requiredFor(body)) {
      if (!covered.has(componentKey(id))) return `signature must cover ${componentKey(id)}`
    }
    return undefined
  }

  return {
    challenge,
    credentialHeaders: ['signature', 'signature-input'],
    async evaluate (ctx) {
      const body = hasBody(ctx)
      const inputLines = ctx.headerValues('signature-input')
      const signatureLines = ctx.headerValues('signature')
      if (inputLines.length === 0 && signatureLines.length === 0) {
        return reject('missing_credentials', 'HTTP message signature required (Signature-Input, Signature)', body)
      }
      if (inputLines.length === 0) return reject('invalid_signature', 'Signature-Input header missing', body)
      if (signatureLines.length === 0) return reject('invalid_signature', 'Signature header missing', body)
      // Several field lines are one dictionary (RFC 8941 §4.2); a label or parameter given twice is ambiguous.
      // Parsed once; only a field that fails is parsed again, to tell ambiguous (400) from malformed (401).
      const inputText = joinFieldLines(inputLines)
      const signatureText = joinFieldLines(signatureLines)
      const parsed = parseSignatureFields(inputText, signatureText)
      if (!parsed.ok) {
        if (isAmbiguous(inputText)) return Rejection.badRequest('Signature-Input names a label or parameter twice')
        if (isAmbiguous(signatureText)) return Rejection.badRequest('Signature names a label twice')
        return reject('invalid_signature', parsed.error, body)
      }

      const candidates = label === undefined ? parsed.value : parsed.value.filter((entry) => entry.label === label)
      if (candidates.length === 0) return reject('invalid_signature', `no signature labelled ${label}`, body)
      let chosen: SignatureEntry | undefined
      for (const candidate of candidates) {
        if (unmet(candidate, body) === undefined && candidate.ok) {
          chosen = candidate.entry
          break
        }
      }
      if (chosen === undefined) return reject('invalid_signature', unmet(candidates[0]!, body) ?? 'no acceptable signature', body)

      const { params } = chosen
      const key = deps.keys.get(params.keyid!)
      if (key === undefined) return reject('invalid_signature', 'unknown key id', body)
      // RFC 9421 §3.2 step 6: an explicit alg must be the key's algorithm.
      if (params.alg !== undefined && params.alg !== key.algorithm) return reject('invalid_signature', 'alg parameter does not match the key\'s algorithm', body)
      const nowSec = ctx.now() / 1000
      const created = params.created!
      if (created > nowSec + windowSec) return reject('invalid_signature', `created is in the future (more than ${windowSec} s ahead)`, body)
      if (created < nowSec - windowSec) return reject('invalid_signature', `signature too old (created more than ${windowSec} s ago)`, body)
      if (params.expires !== undefined && nowSec > params.expires) return reject('invalid_signature', 'signature expired', body)

      // One MessageComponents per request: each field and the query are parsed at most once, however many
      // components (at most MAX_COVERED_COMPONENTS, checked by parseSignatureFields) refer to them.
      const source = new MessageComponents(requestFromContext(ctx))
      const base = buildSignatureBase(source, chosen.input)
      if (!base.ok) return reject('invalid_signature', base.error.slice(0, 200), body)
      if (chosen.input.items.some(isDigest)) {
        const digestLines = source.fieldLines('content-digest')
        const digest = verifyContentDigest(digestLines, await readBody(ctx), digestLines.length > 0 ? source.dictionary('content-digest', 'strict') : undefined)
        if (!digest.ok) return reject('invalid_signature', digest.reason, body)
      }
      if (!verifySignatureBytes(key.algorithm, key.key, Buffer.from(base.value, 'ascii'), chosen.signature)) {
        return reject('invalid_signature', 'bad signature', body)
      }

      // A nonce is single-use; otherwise the signature base itself (not the signature bytes, which
      // ECDSA lets anyone re-randomize) is remembered for the window.
      const replayKey = params.nonce !== undefined
        ? `hmac:nonce:${sha256Hex(`${key.keyId}\n${params.nonce}`)}`
        : replay ? `hmac:replay:${sha256Hex(`${key.keyId}\n${base.value}`)}` : undefined
      if (replayKey !== undefined && !await deps.store.setIfAbsent(replayKey, '1', 2 * windowMs)) {
        return reject('replayed_request', params.nonce !== undefined ? 'nonce already used' : 'signature already used', body)
      }
      return { identity: identityOf(key) }
    },
  }
}

/** For a field that failed the strict parse: parses with RFC 8941's "later wins", so a key or parameter was repeated. */
function isAmbiguous (text: string): boolean {
  return parseDictionary(text).ok && !parseDictionary(text, { duplicates: 'error' }).ok
}

// Webhooks

function webhookIdentity (config: HmacPolicyConfig, deps: SchemeDeps): IdentityUpdate {
  const client = config.client ?? deps.routeName
  return { subject: client, client }
}

function webhookSecret (config: HmacPolicyConfig): KeyObject {
  if (config.secret === undefined) throw new TypeError(`${config.scheme} needs a secret`) // check() refuses this at load
  return createSecretKey(Buffer.from(config.secret, 'utf8'))
}

/** GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`. No timestamp, so no replay window. */
function githubScheme (config: HmacPolicyConfig, deps: SchemeDeps): Scheme {
  const challenge: Challenge = { scheme: 'HMAC', params: { realm: deps.realm } }
  const secret = webhookSecret(config)
  const identity = webhookIdentity(config, deps)
  const invalid = (reason: string) => Rejection.unauthenticated('invalid_signature', reason, challenge)

  return {
    challenge,
    credentialHeaders: ['x-hub-signature-256'],
    async evaluate (ctx) {
      const header = single(ctx, 'x-hub-signature-256', 'X-Hub-Signature-256')
      if (header instanceof Rejection) return header
      if (header === null) return Rejection.unauthenticated('missing_credentials', 'X-Hub-Signature-256 header required', challenge)
      const match = /^sha256=([0-9a-fA-F]{64})$/.exec(header.trim())
      if (!match) return invalid('X-Hub-Signature-256 is not sha256=<hex>')
      const expected = createHmac('sha256', secret).update(await readBody(ctx)).digest()
      if (!equalBytes(Buffer.from(match[1]!, 'hex'), expected)) return invalid('bad signature')
      return { identity }
    },
  }
}

/** Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`, HMAC-SHA256 of `${t}.${body}`. */
function stripeScheme (config: HmacPolicyConfig, deps: SchemeDeps, windowMs: number): Scheme {
  const challenge: Challenge = { scheme: 'HMAC', params: { realm: deps.realm } }
  const secret = webhookSecret(config)
  const identity = webhookIdentity(config, deps)
  const invalid = (reason: string) => Rejection.unauthenticated('invalid_signature', reason, challenge)
  const replay = config.replay ?? true

  return {
    challenge,
    credentialHeaders: ['stripe-signature'],
    async evaluate (ctx) {
      const header = single(ctx, 'stripe-signature', 'Stripe-Signature')
      if (header instanceof Rejection) return header
      if (header === null) return Rejection.unauthenticated('missing_credentials', 'Stripe-Signature header required', challenge)
      const timestamps: string[] = []
      const signatures: Buffer[] = []
      for (const part of header.split(',')) {
        const eq = part.indexOf('=')
        if (eq === -1) return invalid('Stripe-Signature is malformed')
        const name = part.slice(0, eq).trim()
        const value = part.slice(eq + 1).trim()
        if (name === 't') timestamps.push(value)
        else if (name === 'v1') {
          if (!/^[0-9a-fA-F]{64}$/.test(value)) return invalid('Stripe-Signature v1 is not hex HMAC-SHA256')
          signatures.push(Buffer.from(value, 'hex'))
        }
      }
      if (timestamps.length !== 1 || !/^\d{1,12}$/.test(timestamps[0]!)) return invalid('Stripe-Signature needs exactly one t=<unix seconds>')
      if (signatures.length === 0) return invalid('Stripe-Signature has no v1 signature')
      const t = timestamps[0]!
      const nowSec = ctx.now() / 1000
      if (Number(t) < nowSec - windowMs / 1000) return invalid(`stale timestamp (more than ${windowMs / 1000} s old)`)
      if (Number(t) > nowSec + windowMs / 1000) return invalid(`timestamp in the future (more than ${windowMs / 1000} s ahead)`)
      const expected = createHmac('sha256', secret).update(`${t}.`).update(await readBody(ctx)).digest()
      // Every v1 is compared (secret rolling sends several); no early exit.
      let matched = false
      for (const candidate of signatures) matched = equalBytes(candidate, expected) || matched
      if (!matched) return invalid('bad signature')
      if (replay && !await deps.store.setIfAbsent(`hmac:replay:${sha256Hex(`${deps.routeName}\n${expected.toString('hex')}`)}`, '1', 2 * windowMs)) {
        return Rejection.unauthenticated('replayed_request', 'signature already used', challenge)
      }
      return { identity }
    },
  }
}
