import { Type, type Static } from '@sinclair/typebox'
import { Duration } from '../../gateway/config/schema.js'
import { SIGNATURE_ALGORITHMS } from './rfc9421.js'

export const SCHEMES = ['hmac-sha256', 'rfc9421', 'github', 'stripe'] as const
export type Scheme = typeof SCHEMES[number]

const HeaderName = (description: string, defaultValue: string) =>
  Type.String({ pattern: '^[A-Za-z0-9-]+$', default: defaultValue, description })

export const schema = Type.Object({
  scheme: Type.Union(SCHEMES.map((s) => Type.Literal(s)), {
    default: 'hmac-sha256',
    description: '`hmac-sha256` (X-Key-Id, X-Timestamp, X-Signature), `rfc9421` (HTTP Message Signatures), `github` (X-Hub-Signature-256) or `stripe` (Stripe-Signature) webhooks.',
  }),
  window: Duration('Accepted clock difference: X-Timestamp (hmac-sha256) and Stripe `t` within ± this of now; an rfc9421 `created` no older (and no further in the future) than this. Replayed signatures are remembered for twice this.', '300s'),
  headers: Type.Optional(Type.Object({
    keyId: HeaderName('Header carrying the signing client\'s key id.', 'X-Key-Id'),
    timestamp: HeaderName('Header carrying the unix time (seconds) the request was signed at.', 'X-Timestamp'),
    signature: HeaderName('Header carrying base64(HMAC-SHA256(secret, METHOD\\nREQUEST_TARGET\\nTIMESTAMP\\nhex(sha256(body)))).', 'X-Signature'),
  }, { additionalProperties: false, description: 'hmac-sha256 only: header names.' })),
  components: Type.Optional(Type.Array(Type.String({ minLength: 1 }), {
    minItems: 1,
    description: 'rfc9421 only: component identifiers a signature must cover, e.g. `@method`, `@target-uri`, `content-digest`, `@query-param;name="id"`. `content-digest` is required only when the request has a body. Default: `@method`, `@target-uri`, `content-digest`.',
  })),
  requireNonce: Type.Boolean({ default: false, description: 'rfc9421 only: refuse signatures without a `nonce` parameter. A nonce, when present, is always checked against the replay store.' }),
  tag: Type.Optional(Type.String({ minLength: 1, description: 'rfc9421 only: the `tag` parameter a signature must carry (application-specific).' })),
  label: Type.Optional(Type.String({ pattern: '^[a-z*][a-z0-9_.*-]*$', description: 'rfc9421 only: verify only the signature with this label. Default: the first signature (in Signature-Input order) that meets the requirements.' })),
  secret: Type.Optional(Type.String({ minLength: 1, sensitive: true, description: 'github/stripe only: the webhook signing secret, from `${env:..}` or `${file:..}`.' })),
  client: Type.Optional(Type.String({ minLength: 1, description: 'github/stripe only: subject and client of the verified webhook identity. Default: the route name.' })),
  replay: Type.Boolean({ default: true, description: 'Refuse a signature already accepted within the window (401 replayed_request), across instances through the store. Not applied to github, which has no timestamp and redelivers on purpose.' }),
}, { additionalProperties: false })

export type HmacPolicyConfig = Static<typeof schema>

export const signingClientSchema = Type.Object({
  keyId: Type.String({ minLength: 1, maxLength: 256, pattern: '^[\\x21-\\x7e]+$', description: 'The key id clients send (`X-Key-Id`, or the rfc9421 `keyid` parameter).' }),
  client: Type.Optional(Type.String({ minLength: 1, description: 'Client name: the identity\'s subject and client. Default: the keyId.' })),
  secret: Type.Optional(Type.String({ minLength: 1, sensitive: true, description: 'HMAC secret (algorithm hmac-sha256), from `${env:..}` or `${file:..}`; at least 32 bytes.' })),
  secretEncoding: Type.Union([Type.Literal('utf8'), Type.Literal('base64')], { default: 'utf8', description: 'How `secret` becomes key bytes: its UTF-8 bytes, or base64 decoded.' }),
  algorithm: Type.Union(SIGNATURE_ALGORITHMS.map((a) => Type.Literal(a)), { default: 'hmac-sha256', description: 'The only algorithm accepted for this key: hmac-sha256 (with `secret`) or ed25519, ecdsa-p256-sha256, rsa-pss-sha512, rsa-v1_5-sha256 (with `publicKey`; rfc9421 scheme only).' }),
  publicKey: Type.Optional(Type.String({ minLength: 1, description: 'SPKI PEM public key (`-----BEGIN PUBLIC KEY-----`) for the asymmetric algorithms, e.g. `${file:keys/partner.pem}`.' })),
  scopes: Type.Array(Type.String(), { default: [], description: 'Scopes granted to requests signed with this key.' }),
  tier: Type.Optional(Type.String({ description: 'Rate-limit tier (rateLimitTiers).' })),
}, { additionalProperties: false })

export type SigningClientConfig = Static<typeof signingClientSchema>

export const signingClientsSectionSchema = Type.Array(signingClientSchema, {
  default: [],
  description: 'HMAC secrets and public keys for request signatures (`hmac` policy, schemes hmac-sha256 and rfc9421).',
})
