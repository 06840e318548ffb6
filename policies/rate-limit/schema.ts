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
  lease: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Literal('auto')], {
    default: 1,
    description: 'Requests\' worth of this limit one gateway instance may take from the shared store in one round trip and then admit locally (a lease). 1 (default): one store round trip per request. N > 1: fewer round trips on busy keys, and never more requests than the limit: each one is charged in the store before this instance admits it. A key leases 1 while it is quiet and more (doubling, up to N and up to burst/10) only while it needs a new lease within 250 ms of the last. `auto`: sized from demand alone, up to burst/10 (about a quarter to half a second of what one instance admits on the key). Leased cells unused after 1 s are dropped: up to N-1 (auto: burst/10 - 1) requests\' worth may sit unused in one instance for at most 1 s, and other instances may be refused them meanwhile; a cell spent up to 1 s after it was charged counts in the window it was charged in (the README states the measured effect). RateLimit `r` then counts this instance\'s unused cells as remaining.',
  })),
  name: Type.Optional(Type.String({
    pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$',
    description: 'Name of this limit in the RateLimit headers ("<route>-<name>") and in store keys. Default: the `by` value. Needed when two limits of one route have the same `by`.',
  })),
}, { additionalProperties: false, description: 'GCRA rate limit, shared by every gateway instance through the store; 429 rate_limited when exceeded.' })

export type RateLimitConfig = Static<typeof schema>
