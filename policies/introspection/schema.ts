import { Type, type Static } from '@sinclair/typebox'
import { Duration, Size } from '../../gateway/config/schema.js'

export const schema = Type.Object({
  endpoint: Type.String({ minLength: 1, description: 'The IdP\'s RFC 7662 introspection URL (https; plain http only on loopback).' }),
  clientId: Type.String({ minLength: 1, description: 'Client id the gateway authenticates with at the introspection endpoint.' }),
  clientSecret: Type.String({ minLength: 1, sensitive: true, description: 'Its client secret, from `${env:..}` or `${file:..}`.' }),
  auth: Type.Union([Type.Literal('client_secret_basic'), Type.Literal('client_secret_post')], {
    default: 'client_secret_basic', description: 'How the client authenticates: HTTP Basic (RFC 6749 §2.3.1) or form fields.',
  }),
  audience: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })], {
    description: 'When set, the introspection answer\'s `aud` must name one of these.',
  })),
  cacheTtl: Duration('Longest time an active answer is reused (never past the token\'s `exp`).', '60s'),
  negativeTtl: Duration('How long an inactive answer is reused. Failures (timeouts, non-2xx) are never reused.', '5s'),
  timeout: Duration('Time allowed for one introspection request.', '5s'),
  maxResponseBytes: Size('Largest introspection response accepted.', '64KiB'),
  passthrough: Type.Boolean({ default: false, description: 'Forward the `Authorization` header to the upstream (by default the gateway removes it).' }),
}, { additionalProperties: false })

export type IntrospectionConfig = Static<typeof schema>
