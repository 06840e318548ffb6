import type { PolicyDefinition, SectionDefinition } from '../types.js'
import { Rejection } from '../../gateway/errors.js'
import type { ConfigIssue } from '../../gateway/errors.js'
import { schema, apiKeysSectionSchema, type ApiKeyConfig, type StaticKey } from './schema.js'
import { KeyDirectory } from './directory.js'

export const apiKey: PolicyDefinition<ApiKeyConfig> = {
  key: 'apiKey',
  schema,
  authenticates: true,
  create (config, deps) {
    const header = config.header.toLowerCase()
    const challenge = { scheme: 'ApiKey', params: { realm: deps.realm, header: config.header } }
    const directory = deps.shared('apiKeys', () => new KeyDirectory(
      (deps.config.apiKeys as StaticKey[] | undefined) ?? [], deps.store, { now: deps.now, log: deps.log }))
    const queryNames = new Set(['api_key', 'apikey', 'x-api-key', header])

    return {
      challenge,
      credentialHeaders: [header],
      close: () => directory.close(),
      async evaluate (ctx) {
        for (const name of ctx.query.keys()) {
          if (queryNames.has(name.toLowerCase())) return Rejection.badRequest(`API keys belong in the ${config.header} header, not in the query string`)
        }
        const values = ctx.headerValues(header)
        if (values.length === 0) return Rejection.unauthenticated('missing_credentials', 'API key required', challenge)
        if (values.length > 1) return Rejection.badRequest(`more than one ${config.header} header`)
        const result = await directory.verify(values[0]!)
        if (!result.ok) return Rejection.unauthenticated('invalid_credentials', result.reason, challenge)
        const record = result.record
        return {
          identity: {
            subject: record.client,
            client: record.client,
            scopes: [...record.scopes],
            ...(record.tier !== undefined ? { tier: record.tier } : {}),
          },
        }
      },
    }
  },
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
