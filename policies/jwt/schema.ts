import { Type, type Static } from '@sinclair/typebox'

export const schema = Type.Object({
  provider: Type.String({ minLength: 1, description: 'Name of an entry in `jwtProviders`.' }),
  audience: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })], {
    description: 'Expected `aud` on this route, instead of the provider\'s `audience`.',
  })),
  passthrough: Type.Boolean({ default: false, description: 'Forward the `Authorization` header to the upstream (by default the gateway removes it).' }),
}, { additionalProperties: false })

export type JwtPolicyConfig = Static<typeof schema>
