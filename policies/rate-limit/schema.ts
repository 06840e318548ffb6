import { Type, type Static } from '@sinclair/typebox'
import { Rate } from '../../gateway/config/schema.js'

export const schema = Type.Object({
  by: Type.String({
    default: 'client',
    minLength: 1,
    description: 'Whose counter a request uses: `client`, `subject`, `ip` (the client address, trustProxies-aware), `route` (one counter for everyone), `header:NAME` or `claim:NAME`. A missing header or claim value counts against the client address instead.',
  }),
  limit: Type.Optional(Rate('Sustained rate. With `tier: true`, the rate for callers whose tier is not in rateLimitTiers.')),
  tier: Type.Optional(Type.Boolean({ description: 'Take the rate from rateLimitTiers by the identity\'s tier (API-key metadata). Callers without a known tier get `limit`, else the tier named `default`, else 403 forbidden.' })),
  burst: Type.Optional(Type.Integer({ minimum: 1, description: 'Requests that may pass at once from a rested counter (GCRA burst). Default: the rate\'s count.' })),
  name: Type.Optional(Type.String({
    pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$',
    description: 'Name of this limit in the RateLimit headers ("<route>-<name>") and in store keys. Default: the `by` value. Needed when two limits of one route have the same `by`.',
  })),
}, { additionalProperties: false, description: 'GCRA rate limit, shared by every gateway instance through the store; 429 rate_limited when exceeded.' })

export type RateLimitConfig = Static<typeof schema>
