import type { IdentityUpdate, PolicyDefinition, SectionDefinition } from '../types.js'
import { Rejection } from '../../gateway/errors.js'
import type { ConfigIssue } from '../../gateway/errors.js'
import { parseDuration } from '../../gateway/config/units.js'
import { schema, apiKeysSectionSchema, type ApiKeyConfig, type StaticKey } from './schema.js'
import { KeyDirectory, type CacheTtls, type KeyRecord } from './directory.js'
import { staticApiKeys } from './records.js'
import { apiKeyAdminRoutes as adminRoutes } from './admin.js'
import { KeyService } from './service.js'

export { KeyDirectory } from './directory.js'
export { KeyService, KeyRequestError } from './service.js'
export { staticApiKeys } from './records.js'

/**
 * `apiKey`: `agk_<id>_<secret>` in a header (default X-API-Key). Static keys (`apiKeys:`) are checked first, then
 * the store; one KeyDirectory (caches, pub/sub subscription, lastUsedAt batches) serves every route of a
 * configuration generation.
 */
export const apiKey: PolicyDefinition<ApiKeyConfig> = {
  key: 'apiKey',
  schema,
  authenticates: true,
  commands: [
    {
      name: 'keys',
      usage: `create --client NAME [--scopes a,b] [--tier T] [--expires 90d] | list | revoke ID | rotate ID [--grace 24h]
          [-c FILE] [--json]                the API key lifecycle in the configured Redis`,
      async run (args, io) {
        const { keysCommand } = await import('./cli.js')
        return await keysCommand(args, io)
      },
    },
    {
      name: 'hash-key',
      usage: 'KEY                              print sha256:<hex> for a static apiKeys entry',
      async run (args, io) {
        const { hashKeyCommand } = await import('./cli.js')
        return hashKeyCommand(args, io)
      },
    },
  ],
  credentialHeaders: (config) => [{ name: String(config.header ?? 'X-API-Key'), path: ['header'], secret: true }],
  adminRoutes (deps) {
    return [adminRoutes(new KeyService({ store: () => deps.store(), staticKeys: () => staticApiKeys(deps.config()), now: () => deps.now() }))]
  },
  create (config, deps) {
    const header = config.header.toLowerCase()
    const challenge = { scheme: 'ApiKey', params: { realm: deps.realm, header: config.header } }
    const directory = deps.shared('apiKey:directory', () => new KeyDirectory(staticApiKeys(deps.config), deps.store, { now: deps.now, log: deps.log }))
    const ttls: CacheTtls = { ttlMs: parseDuration(config.cacheTtl), negativeTtlMs: parseDuration(config.negativeCacheTtl) }
    const queryNames = new Set(['api_key', 'apikey', 'x-api-key', header])
    const inQuery = Rejection.badRequest(`API keys belong in the ${config.header} header, not in the query string`)

    return {
      challenge,
      credentialHeaders: [header],
      close: () => directory.close(),
      async evaluate (ctx) {
        // Most requests have no query: no URLSearchParams for them.
        if (ctx.rawQuery.length > 0) {
          for (const [name, value] of ctx.query) {
            if (queryNames.has(name.toLowerCase()) || value.startsWith('agk_')) return inQuery
          }
        }
        const values = ctx.headerValues(header)
        if (values.length > 1) return Rejection.badRequest(`more than one ${config.header} header`)
        const presented = values[0]
        if (presented === undefined || presented === '') return Rejection.unauthenticated('missing_credentials', 'API key required', challenge)
        const result = await directory.verify(presented, ttls)
        if (!result.ok) return Rejection.unauthenticated('invalid_credentials', result.reason, challenge)
        return identityOf(result.record)
      },
    }
  },
}

/** The outcome of a verified key, built once per record (the directory's cached one): a cache hit builds nothing. */
const IDENTITIES = new WeakMap<KeyRecord, { readonly identity: IdentityUpdate }>()
function identityOf (record: KeyRecord): { readonly identity: IdentityUpdate } {
  let outcome = IDENTITIES.get(record)
  if (outcome === undefined) {
    const identity: IdentityUpdate = {
      subject: record.client,
      client: record.client,
      scopes: Object.freeze([...record.scopes]) as string[],
      ...(record.tier !== undefined ? { tier: record.tier } : {}),
    }
    IDENTITIES.set(record, outcome = Object.freeze({ identity: Object.freeze(identity) }))
  }
  return outcome
}

export const apiKeysSection: SectionDefinition = {
  key: 'apiKeys',
  schema: apiKeysSectionSchema,
  check (value) {
    const issues: ConfigIssue[] = []
    const seen = new Map<string, number>()
    ;(value as StaticKey[]).forEach((key, i) => {
      if (seen.has(key.id)) issues.push({ severity: 'error', path: ['apiKeys', i, 'id'], message: `duplicate key id "${key.id}" (also at apiKeys[${seen.get(key.id)}])`, fix: 'each key needs its own id' })
      seen.set(key.id, i)
    })
    return issues
  },
}
