import { Type, type Static } from '@sinclair/typebox'
import { Rejection } from '../../gateway/errors.js'
import type { PolicyDefinition, RequestContext } from '../types.js'

const Scalar = Type.Union([Type.String(), Type.Number(), Type.Boolean()])

export const schema = Type.Record(
  Type.String({ minLength: 1 }),
  Type.Union([Scalar, Type.Array(Scalar, { minItems: 1 })], {
    description: 'A value (equality) or a list of values (membership). An array claim passes when it contains the value, or any of the values.',
  }),
  {
    minProperties: 1,
    description: 'Claims the authenticated identity must carry (from jwt or introspection): `{ tenant: acme, roles: [admin, ops] }`. Every entry must match; failing is 403 forbidden.',
  },
)

export type ClaimsConfig = Static<typeof schema>
type Scalar = string | number | boolean

/**
 * `claims: { name: value | [values] }` (DESIGN.md "claims"): equality, or membership when a list is given; an
 * array claim passes when it contains the value (or any of the values). Names are top-level claim names, matched
 * exactly; values are compared with their JSON type (`42` is not `"42"`). Every entry must match.
 */
export const claims: PolicyDefinition<ClaimsConfig> = {
  key: 'claims',
  schema,
  authenticates: false,
  needsIdentity: true,
  create (config, { realm }) {
    const rules = Object.entries(config).map(([name, expected]) => ({
      name,
      allowed: (Array.isArray(expected) ? expected : [expected]) as readonly Scalar[],
    }))

    return {
      evaluate (ctx: RequestContext) {
        const identity = ctx.identity
        if ((identity.methods ?? []).length === 0) {
          return Rejection.unauthenticated('missing_credentials', 'authentication required', { scheme: 'Bearer', params: { realm } })
        }
        const held = identity.claims ?? {}
        for (const rule of rules) {
          const value = Object.hasOwn(held, rule.name) ? held[rule.name] : undefined
          // Names come from the configuration, so naming them is safe; the caller's values are not echoed.
          if (value === undefined) return Rejection.forbidden('forbidden', `required claim "${rule.name}" is missing`)
          if (!matches(value, rule.allowed)) return Rejection.forbidden('forbidden', `claim "${rule.name}" does not have an allowed value`)
        }
        return { authenticated: false }
      },
    }
  },
}

/** True when the claim equals one of the allowed values, or (an array claim) contains one of them. */
export function matches (value: unknown, allowed: readonly Scalar[]): boolean {
  if (Array.isArray(value)) return value.some((item) => allowed.includes(item as Scalar))
  return allowed.includes(value as Scalar)
}
