import { Type, type Static } from '@sinclair/typebox'
import { Rejection, type Challenge } from '../../gateway/errors.js'
import type { PolicyDefinition, RequestContext } from '../types.js'

const Scope = Type.String({ minLength: 1, pattern: '^[\\x21\\x23-\\x5B\\x5D-\\x7E]+$', description: 'A scope (RFC 6749 §3.3 scope-token).' })

export const schema = Type.Union([
  Type.Array(Scope, { minItems: 1, description: 'Every listed scope is required.' }),
  Type.Object({
    anyOf: Type.Array(Scope, { minItems: 1, description: 'One of these scopes suffices.' }),
  }, { additionalProperties: false, description: 'One of the listed scopes suffices.' }),
], { description: 'Scopes the authenticated identity must hold: `[a, b]` (all) or `{ anyOf: [a, b] }` (one). Failing is 403 insufficient_scope.' })

export type ScopesConfig = Static<typeof schema>

/**
 * `scopes: [a, b]` (all required) or `scopes: { anyOf: [a, b] }`. Authorization, not authentication: a caller
 * without the scopes is 403 `insufficient_scope` (with `Bearer error="insufficient_scope", scope="..."` when a
 * bearer token authenticated them), never 401. Re-checked on every request, cache hits included.
 */
export const scopes: PolicyDefinition<ScopesConfig> = {
  key: 'scopes',
  schema,
  authenticates: false,
  needsIdentity: true,
  create (config, { realm, policies }) {
    // Methods whose credential is an OAuth bearer token (`credential: 'bearer'`): their 403 carries the RFC 6750 §3.1 challenge.
    const bearerMethods = new Set([...policies?.values() ?? []].filter((p) => p.credential === 'bearer').map((p) => p.key))
    const all = Array.isArray(config)
    const wanted: readonly string[] = Array.isArray(config) ? [...config] : [...config.anyOf]
    const scopeParam = wanted.join(' ')
    const unauthenticated: Challenge = { scheme: 'Bearer', params: { realm } }

    return {
      evaluate (ctx: RequestContext) {
        const identity = ctx.identity
        // A valid config puts an authenticating step first; refuse anyway rather than authorize nobody.
        if ((identity.methods ?? []).length === 0) {
          return Rejection.unauthenticated('missing_credentials', 'authentication required', unauthenticated)
        }
        const held = new Set(identity.scopes ?? [])
        const missing = wanted.filter((scope) => !held.has(scope))
        const passed = all ? missing.length === 0 : missing.length < wanted.length
        if (passed) return { authenticated: false }

        const detail = all
          ? `missing scope${missing.length === 1 ? '' : 's'}: ${missing.join(', ')}`
          : `requires one of the scopes: ${wanted.join(', ')}`
        const bearer = (identity.methods ?? []).some((method) => bearerMethods.has(method))
        return Rejection.forbidden('insufficient_scope', detail, bearer
          ? { scheme: 'Bearer', params: { realm, error: 'insufficient_scope', scope: scopeParam } }
          : undefined)
      },
    }
  },
}
