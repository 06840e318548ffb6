import { Type, type Static } from '@sinclair/typebox'
import { Duration } from '../../gateway/config/schema.js'

export const schema = Type.Object({
  header: Type.String({ default: 'X-API-Key', pattern: '^[A-Za-z0-9-]+$', description: 'Request header that carries the key.' }),
  cacheTtl: Duration('How long a verified store key is trusted in-process before the store is read again. Revocations reach every instance at once by pub/sub; this bounds it if pub/sub is lost. 0 turns the cache off.', '5s'),
  negativeCacheTtl: Duration('How long a refused key (unknown, wrong secret, expired, revoked) is refused without reading the store again; absorbs floods of bad keys.', '2s'),
}, { additionalProperties: false })
export type ApiKeyConfig = Static<typeof schema>

export const staticKeySchema = Type.Object({
  id: Type.String({ pattern: '^[a-z0-9]{8,32}$', description: 'The `<id>` part of `agk_<id>_<secret>`.' }),
  hash: Type.String({ pattern: '^sha256:[0-9a-fA-F]{64}$', description: '`sha256:` + hex SHA-256 of the whole key text (`authgate hash-key KEY`). Never the key itself.' }),
  client: Type.String({ minLength: 1, description: 'Client name: the identity\'s subject and client.' }),
  scopes: Type.Array(Type.String(), { default: [], description: 'Scopes granted to the key.' }),
  tier: Type.Optional(Type.String({ description: 'Rate-limit tier (rateLimitTiers).' })),
  expiresAt: Type.Optional(Type.String({ format: 'date-time', description: 'ISO 8601 time after which the key is refused.' })),
}, { additionalProperties: false })
export type StaticKey = Static<typeof staticKeySchema>

export const apiKeysSectionSchema = Type.Array(staticKeySchema, { default: [], description: 'Static API keys (stored hashed). Dynamic keys live in the store (`authgate keys create`).' })
