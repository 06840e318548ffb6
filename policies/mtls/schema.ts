import { Type, type Static } from '@sinclair/typebox'

export const FINGERPRINT_PATTERN = '^(?:[0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$'

export const schema = Type.Object({
  subjects: Type.Optional(Type.Array(Type.String({ minLength: 1 }), {
    description: 'Allowed certificate subjects as RFC 4514 distinguished names, most specific first ' +
      '(`CN=billing-service,O=Acme`). The whole subject must match: attribute types ignore case, values do not.',
  })),
  sans: Type.Optional(Type.Array(Type.String({ minLength: 1 }), {
    description: 'Allowed subject alternative names: `URI:spiffe://example.org/ns/default/sa/billing`, ' +
      '`DNS:billing.internal`, `IP:10.0.0.7`, `email:ops@example.com`, or a bare value matching a SAN of any type. ' +
      'DNS names ignore case; URIs match exactly.',
  })),
  fingerprints: Type.Optional(Type.Array(Type.String({ pattern: FINGERPRINT_PATTERN }), {
    description: 'Allowed certificates by the hex SHA-256 of their DER encoding; case and colons are ignored.',
  })),
  subjectFrom: Type.Unsafe<'auto' | 'cn' | 'uri'>({
    type: 'string',
    enum: ['auto', 'cn', 'uri'],
    default: 'auto',
    description: 'Where the identity subject comes from: `auto` (the SPIFFE URI SAN if any, else the subject CN), ' +
      '`cn` (the subject CN), or `uri` (the SPIFFE URI SAN, else the first URI SAN).',
  }),
}, {
  additionalProperties: false,
  description: 'Requires a client certificate verified against the listener\'s `tls.clientCA`. With allow-lists, the ' +
    'certificate must match at least one entry of any of them (else 403 `forbidden`); without, any verified ' +
    'certificate passes. The upstream receives `X-Forwarded-Client-Cert` in Envoy\'s format.',
})
export type MtlsConfig = Static<typeof schema>
