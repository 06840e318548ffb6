import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto'
import { ConfigError, type ConfigIssue } from '../../gateway/errors.js'
import { keyFitsAlgorithm, type SignatureAlgorithm } from './rfc9421.js'
import type { SigningClientConfig } from './schema.js'

/** HMAC-SHA256 keys shorter than the hash output are refused (RFC 2104 §3). */
export const HMAC_MIN_BYTES = 32

/** A signing client with its key parsed once, at load. */
export interface SigningKey {
  readonly keyId: string
  /** `client`, else the keyId: the identity's subject and client. */
  readonly client: string
  readonly algorithm: SignatureAlgorithm
  /** The HMAC secret (a secret KeyObject) or the public key. */
  readonly key: KeyObject
  readonly scopes: readonly string[]
  readonly tier: string | undefined
}

/** The secret's key bytes, or undefined when base64 was asked for and the text is not base64. */
export function decodeSecret (secret: string, encoding: 'utf8' | 'base64' | undefined): Buffer | undefined {
  if (encoding !== 'base64') return Buffer.from(secret, 'utf8')
  const text = secret.trim()
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) return undefined
  return Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64')
}

/** An SPKI PEM public key, or why the text is not one. */
function parsePublicKey (pem: string): KeyObject | string {
  if (/PRIVATE KEY-----/.test(pem)) return 'publicKey holds a private key: give only the public key'
  if (!/-----BEGIN PUBLIC KEY-----/.test(pem)) return 'publicKey is not an SPKI PEM public key (-----BEGIN PUBLIC KEY-----)'
  try {
    return createPublicKey({ key: pem, format: 'pem' })
  } catch {
    return 'publicKey is not a readable PEM public key'
  }
}

type Parsed = { readonly key: SigningKey, readonly issues: readonly ConfigIssue[] } | { readonly key: undefined, readonly issues: readonly ConfigIssue[] }

function parseClient (entry: SigningClientConfig, index: number): Parsed {
  const issues: ConfigIssue[] = []
  const error = (field: string | undefined, message: string, fix: string) =>
    issues.push({ severity: 'error', path: ['signingClients', index, ...(field ? [field] : [])], message, fix })
  const algorithm = entry.algorithm ?? 'hmac-sha256'
  let key: KeyObject | undefined

  if (algorithm === 'hmac-sha256') {
    if (entry.publicKey !== undefined) error('publicKey', `keyId "${entry.keyId}": hmac-sha256 uses a shared \`secret\`, not a public key`, 'remove `publicKey`, or set `algorithm:` to the key\'s algorithm (ed25519, ecdsa-p256-sha256, rsa-pss-sha512, rsa-v1_5-sha256)')
    if (entry.secret === undefined) {
      error(undefined, `keyId "${entry.keyId}" has no secret`, 'add `secret: ${env:NAME}` (at least 32 random bytes), or `algorithm` + `publicKey` for a key pair')
    } else {
      const bytes = decodeSecret(entry.secret, entry.secretEncoding)
      if (bytes === undefined) {
        error('secret', `keyId "${entry.keyId}": secret is not base64 (secretEncoding: base64)`, 'give the base64 text, or set `secretEncoding: utf8`')
      } else if (bytes.length < HMAC_MIN_BYTES) {
        error('secret', `keyId "${entry.keyId}": secret is ${bytes.length} bytes; hmac-sha256 needs at least ${HMAC_MIN_BYTES}`, 'use a random secret, e.g. `openssl rand -base64 32` with `secretEncoding: base64`')
      } else {
        key = createSecretKey(bytes)
      }
    }
  } else {
    if (entry.secret !== undefined) error('secret', `keyId "${entry.keyId}": ${algorithm} verifies with a public key; a secret must not be given`, 'remove `secret` (or set `algorithm: hmac-sha256` for a shared secret)')
    if (entry.publicKey === undefined) {
      error(undefined, `keyId "${entry.keyId}" (${algorithm}) has no publicKey`, 'add `publicKey: ${file:keys/NAME.pem}` (SPKI PEM)')
    } else {
      const parsed = parsePublicKey(entry.publicKey)
      if (typeof parsed === 'string') {
        error('publicKey', `keyId "${entry.keyId}": ${parsed}`, 'give an SPKI PEM public key, e.g. `publicKey: ${file:keys/partner.pem}`')
      } else if (!keyFitsAlgorithm(algorithm, parsed)) {
        const curve = parsed.asymmetricKeyDetails?.namedCurve
        error('publicKey', `keyId "${entry.keyId}": the publicKey is ${parsed.asymmetricKeyType}${curve ? ` (${curve})` : ''} and cannot verify ${algorithm}`, 'set `algorithm:` to match the key, or give the right key')
      } else if ((parsed.asymmetricKeyDetails?.modulusLength ?? 4096) < 2048) {
        error('publicKey', `keyId "${entry.keyId}": a ${parsed.asymmetricKeyDetails?.modulusLength}-bit RSA key; at least 2048 bits are required`, 'use an RSA key of 2048 bits or more, or Ed25519')
      } else {
        key = parsed
      }
    }
  }
  if (issues.length > 0 || key === undefined) return { key: undefined, issues }
  return {
    issues,
    key: { keyId: entry.keyId, client: entry.client ?? entry.keyId, algorithm, key, scopes: [...(entry.scopes ?? [])], tier: entry.tier },
  }
}

/** `check` of the signingClients section: every entry's key material, and unique keyIds. */
export function checkSigningClients (value: unknown): ConfigIssue[] {
  const entries = (Array.isArray(value) ? value : []) as SigningClientConfig[]
  const issues: ConfigIssue[] = []
  const seen = new Map<string, number>()
  entries.forEach((entry, i) => {
    const first = seen.get(entry.keyId)
    if (first !== undefined) {
      issues.push({ severity: 'error', path: ['signingClients', i, 'keyId'], message: `duplicate keyId "${entry.keyId}" (also at signingClients[${first}])`, fix: 'each signing client needs its own keyId' })
    } else {
      seen.set(entry.keyId, i)
    }
    issues.push(...parseClient(entry, i).issues)
  })
  return issues
}

/** Parses every signing client once (secrets and PEM keys into KeyObjects). Throws ConfigError on any problem. */
export function buildSigningKeys (value: unknown): ReadonlyMap<string, SigningKey> {
  const issues = checkSigningClients(value)
  if (issues.some((issue) => issue.severity === 'error')) throw new ConfigError(issues)
  const keys = new Map<string, SigningKey>()
  const entries = (Array.isArray(value) ? value : []) as SigningClientConfig[]
  entries.forEach((entry, i) => {
    const parsed = parseClient(entry, i)
    if (parsed.key) keys.set(parsed.key.keyId, parsed.key)
  })
  return keys
}
