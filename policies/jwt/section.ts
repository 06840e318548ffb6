import { createPublicKey, type KeyObject } from 'node:crypto'
import { Type, type Static } from '@sinclair/typebox'
import type { ConfigIssue } from '../../gateway/errors.js'
import { Duration, Size } from '../../gateway/config/schema.js'
import { didYouMean } from '../../gateway/config/positions.js'
import type { SectionDefinition } from '../types.js'
import { remoteUrlProblem } from './http.js'

/** Every JWS algorithm a provider may list. `none` is not one of them, ever. */
export const ALGORITHMS = [
  'HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA',
] as const

/** RFC 7518 §3.2: an HMAC key at least as long as the hash output. */
const HMAC_MIN_BYTES: Record<string, number> = { HS256: 32, HS384: 48, HS512: 64 }

const StringOrList = (description: string) =>
  Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })], { description })

export const ProviderSchema = Type.Object({
  issuer: Type.Optional(Type.String({ minLength: 1, description: 'Expected `iss`, compared exactly. Alone, it also locates the signing keys by OIDC discovery (`<issuer>/.well-known/openid-configuration`).' })),
  audience: Type.Optional(StringOrList('Expected `aud`: the token must name at least one of these. A route may override it (`jwt: { audience }`).')),
  algorithms: Type.Array(Type.String({ minLength: 1 }), { minItems: 1, uniqueItems: true, description: 'Accepted `alg` values: HS256/384/512 (with `secret`) or RS*/PS*/ES*/EdDSA (with a public key, JWKS or discovery). `none` is never accepted.' }),
  secret: Type.Optional(Type.String({ minLength: 1, sensitive: true, description: 'Shared HMAC secret for HS* tokens; from `${env:..}` or `${file:..}`. At least as long as the hash (32/48/64 bytes).' })),
  secretEncoding: Type.Union([Type.Literal('utf8'), Type.Literal('base64')], { default: 'utf8', description: 'How `secret` becomes key bytes: its UTF-8 bytes, or base64 (or base64url) decoded.' }),
  publicKey: Type.Optional(Type.String({ minLength: 1, description: 'PEM public key (`-----BEGIN PUBLIC KEY-----`), e.g. `${file:keys/idp.pem}`.' })),
  jwksUri: Type.Optional(Type.String({ minLength: 1, description: 'URL of the JWKS (https; plain http only on loopback).' })),
  discovery: Type.Optional(Type.Boolean({ description: 'Find `jwks_uri` by OIDC discovery from `issuer`. Default: true when `issuer` is the only key source.' })),
  clockTolerance: Duration('Allowed clock skew for `exp`, `nbf` and `iat`.', '30s'),
  maxAge: Type.Optional(Duration('Refuse tokens whose `iat` is older than this (requires `iat`).')),
  requireExp: Type.Boolean({ default: true, description: 'Refuse tokens without `exp`. Turn off only for an IdP that cannot set it.' }),
  requiredClaims: Type.Array(Type.String({ minLength: 1 }), { default: [], description: 'Claims that must be present.' }),
  typ: Type.Optional(Type.String({ minLength: 1, description: 'Required `typ` header, e.g. `at+jwt` (RFC 9068 access tokens).' })),
  scopeClaim: Type.Optional(Type.String({ minLength: 1, description: 'Claim holding the scopes (space-separated string or array). Default: `scope`, else `scp`.' })),
  revocation: Type.Boolean({ default: false, description: 'Check each token\'s `jti` against the deny-list in the store (`authgate tokens revoke`); tokens without `jti` are then refused.' }),
  jwksCacheTtl: Duration('How long a fetched JWKS is used before it is refreshed (in the background).', '10m'),
  jwksCooldown: Duration('Least time between two JWKS fetches caused by an unknown `kid`.', '30s'),
  jwksStaleGrace: Duration('How long past `jwksCacheTtl` the last keys are still used while the IdP cannot be reached; then tokens are refused.', '1h'),
  timeout: Duration('Time allowed for one discovery or JWKS request.', '5s'),
  maxResponseBytes: Size('Largest discovery or JWKS response accepted.', '512KiB'),
}, { additionalProperties: false })

export type ProviderConfig = Static<typeof ProviderSchema>

export const jwtProvidersSection: SectionDefinition = {
  key: 'jwtProviders',
  schema: Type.Record(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$' }), ProviderSchema, {
    // TypeBox puts the key pattern in patternProperties only: without this, a name outside it is not validated at all.
    additionalProperties: false,
    default: {},
    description: 'JWT issuers by name, referenced by `jwt: { provider: NAME }`.',
  }),
  check (value) {
    const issues: ConfigIssue[] = []
    for (const [name, provider] of Object.entries((value ?? {}) as Record<string, ProviderConfig>)) {
      issues.push(...checkProvider(name, provider))
    }
    return issues
  },
}

export type KeySource = 'secret' | 'publicKey' | 'jwksUri' | 'discovery'

/** The key sources a provider names (a valid provider names exactly one). */
export function keySources (provider: ProviderConfig): KeySource[] {
  const sources: KeySource[] = []
  if (provider.secret !== undefined) sources.push('secret')
  if (provider.publicKey !== undefined) sources.push('publicKey')
  if (provider.jwksUri !== undefined) sources.push('jwksUri')
  if (usesDiscovery(provider)) sources.push('discovery')
  return sources
}

/** Discovery is on when asked for, or by default when `issuer` is the only thing that could locate keys. */
export function usesDiscovery (provider: ProviderConfig): boolean {
  if (provider.discovery !== undefined) return provider.discovery
  return provider.issuer !== undefined && provider.secret === undefined &&
    provider.publicKey === undefined && provider.jwksUri === undefined
}

export function isHmac (alg: string): boolean {
  return alg.startsWith('HS')
}

/** The secret's key bytes, or undefined when base64 was asked for and the text is not base64. */
export function decodeSecret (provider: ProviderConfig): Buffer | undefined {
  if (provider.secret === undefined) return undefined
  if (provider.secretEncoding !== 'base64') return Buffer.from(provider.secret, 'utf8')
  const text = provider.secret.trim()
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) return undefined
  return Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64')
}

function checkProvider (name: string, provider: ProviderConfig): ConfigIssue[] {
  const issues: ConfigIssue[] = []
  const at = (...path: Array<string | number>) => ['jwtProviders', name, ...path]
  const error = (path: Array<string | number>, message: string, fix?: string) =>
    issues.push({ severity: 'error', path: at(...path), message, ...(fix ? { fix } : {}) })

  const known = new Set<string>(ALGORITHMS)
  provider.algorithms.forEach((alg, i) => {
    if (alg.toLowerCase() === 'none') {
      error(['algorithms', i], 'algorithm "none" is never accepted: unsigned tokens prove nothing', 'remove "none" and list the algorithms your issuer signs with, e.g. RS256')
    } else if (!known.has(alg)) {
      const guess = didYouMean(alg, ALGORITHMS)
      error(['algorithms', i], `unknown algorithm "${alg}"`, guess ? `did you mean "${guess}"?` : `use one of ${ALGORITHMS.join(', ')}`)
    }
  })
  const algorithms = provider.algorithms.filter((alg) => known.has(alg))
  const hmac = algorithms.filter(isHmac)
  const asymmetric = algorithms.filter((alg) => !isHmac(alg))
  if (hmac.length > 0 && asymmetric.length > 0) {
    error(['algorithms'], `algorithm confusion: ${hmac.join(', ')} and ${asymmetric.join(', ')} in one provider let a public key be used as an HMAC secret`,
      'split them into two providers: one with `secret` and HS*, one with a public key, JWKS or issuer')
  }

  const sources = keySources(provider)
  if (provider.discovery === true && provider.issuer === undefined) {
    error(['discovery'], 'discovery needs `issuer`', 'set `issuer:` to the IdP\'s issuer URL')
  }
  if (sources.length === 0) {
    error([], 'no signing key source', 'give exactly one of `secret`, `publicKey`, `jwksUri`, or `issuer` (OIDC discovery)')
  } else if (sources.length > 1) {
    error([sources[1] === 'discovery' ? 'discovery' : sources[1]!], `more than one key source (${sources.join(', ')})`,
      'give exactly one of `secret`, `publicKey`, `jwksUri`, or `issuer` with discovery')
  }

  if (provider.secret !== undefined) {
    if (asymmetric.length > 0 && hmac.length === 0) {
      error(['algorithms'], `algorithm confusion: a shared \`secret\` cannot verify ${asymmetric.join(', ')}`, 'use HS256, HS384 or HS512 with `secret`, or give the IdP\'s public key instead')
    }
    const bytes = decodeSecret(provider)
    if (bytes === undefined) {
      error(['secret'], 'secret is not base64 (secretEncoding: base64)', 'give the base64 text, or set `secretEncoding: utf8`')
    } else {
      const needed = Math.max(0, ...hmac.map((alg) => HMAC_MIN_BYTES[alg]!))
      if (bytes.length < needed) {
        const alg = hmac.find((a) => HMAC_MIN_BYTES[a] === needed)!
        error(['secret'], `secret is ${bytes.length} bytes; ${alg} needs at least ${needed}`,
          `use a random secret of ${needed} bytes or more, e.g. \`openssl rand -base64 ${needed}\` with secretEncoding: base64`)
      }
    }
  } else if (hmac.length > 0) {
    error(['algorithms'], `algorithm confusion: ${hmac.join(', ')} needs a shared \`secret\`, and a public key must never serve as one`,
      'list the asymmetric algorithms your issuer signs with (RS256, ES256...), or give `secret` for HS*')
  }

  if (provider.publicKey !== undefined) {
    const key = parsePublicKey(provider.publicKey)
    if (typeof key === 'string') {
      error(['publicKey'], key, 'give an SPKI PEM public key (`-----BEGIN PUBLIC KEY-----`), e.g. `publicKey: ${file:keys/idp.pem}`')
    } else {
      for (const alg of asymmetric) {
        const problem = keyAlgorithmProblem(key, alg)
        if (problem) error(['publicKey'], problem, 'list only algorithms that match the key\'s type')
      }
    }
  }

  if (provider.jwksUri !== undefined) {
    const problem = remoteUrlProblem(provider.jwksUri)
    if (problem) error(['jwksUri'], `jwksUri ${problem}`, 'use the IdP\'s https JWKS URL')
  }
  if (usesDiscovery(provider) && provider.issuer !== undefined) {
    const problem = remoteUrlProblem(provider.issuer)
    if (problem) error(['issuer'], `issuer ${problem} (it is used for OIDC discovery)`, 'use the IdP\'s https issuer URL, or give `jwksUri` or `publicKey`')
  }

  if (provider.audience === undefined) {
    issues.push({
      severity: 'warning', path: at(),
      message: `provider "${name}" has no audience: tokens this issuer made for any other service are accepted`,
      fix: 'set `audience:` to this API\'s identifier (or per route: `jwt: { provider, audience }`)',
    })
  }
  return issues
}

/** A parsed SPKI public key, or why the text is not one. */
export function parsePublicKey (pem: string): KeyObject | string {
  if (/PRIVATE KEY-----/.test(pem)) return 'publicKey holds a private key: give only the public key'
  if (!/-----BEGIN PUBLIC KEY-----/.test(pem)) return 'publicKey is not an SPKI PEM public key'
  try {
    return createPublicKey({ key: pem, format: 'pem' })
  } catch {
    return 'publicKey is not a readable PEM public key'
  }
}

/** Why `key` cannot verify `alg` (a key/algorithm type mismatch), or undefined. */
export function keyAlgorithmProblem (key: KeyObject, alg: string): string | undefined {
  const type = key.asymmetricKeyType
  const curve = key.asymmetricKeyDetails?.namedCurve
  const curves: Record<string, string> = { ES256: 'prime256v1', ES384: 'secp384r1', ES512: 'secp521r1' }
  let fits: boolean
  if (alg.startsWith('RS')) fits = type === 'rsa'
  else if (alg.startsWith('PS')) fits = type === 'rsa' || type === 'rsa-pss'
  else if (alg.startsWith('ES')) fits = type === 'ec' && curve === curves[alg]
  else if (alg === 'EdDSA') fits = type === 'ed25519'
  else fits = false
  if (!fits) return `publicKey is ${type}${curve ? ` (${curve})` : ''} and cannot verify ${alg}`
  const bits = key.asymmetricKeyDetails?.modulusLength
  if ((type === 'rsa' || type === 'rsa-pss') && bits !== undefined && bits < 2048) {
    return `publicKey is a ${bits}-bit RSA key; at least 2048 bits are required`
  }
  return undefined
}
