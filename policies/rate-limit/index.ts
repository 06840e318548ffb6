import type { ConfigIssue } from '../../gateway/errors.js'
import type { RouteConfig } from '../../gateway/config/types.js'
import { parseRate } from '../../gateway/config/units.js'
import type { LintFinding, PolicyDefinition } from '../types.js'
import { leaseCap, leaseOf } from './lease.js'
import { parseBy, needsIdentity, RouteLimiter, type LimitSpec } from './limiter.js'
import { schema, type RateLimitConfig } from './schema.js'

export { schema, type RateLimitConfig } from './schema.js'

/**
 * `rateLimit: { by, limit | tier, burst?, name?, lease? }`: GCRA (DESIGN.md "Rate limits"), shared by every instance
 * through the store. All rateLimit steps that follow one another on a route are evaluated together: the first of
 * them makes ONE `store.rateLimit` call (one Lua script, one round trip) for all, and the rest reuse its answer.
 * With `lease` > 1 a busy key's store call takes several cells, and later requests spend them locally (lease.ts).
 * Every response of the route that passed the limiter carries `RateLimit-Policy` and `RateLimit`; 429 adds
 * `Retry-After`. `store.onError: allow` falls back to per-instance counters while the store is down.
 */
export const rateLimit: PolicyDefinition<RateLimitConfig> = {
  key: 'rateLimit',
  schema,
  authenticates: false,

  check (config, env) {
    const issues: ConfigIssue[] = []
    const error = (path: string[], message: string, fix?: string) =>
      issues.push({ severity: 'error', path, message, ...(fix ? { fix } : {}) })
    const by = parseBy(config.by)
    if (!by) {
      error(['by'], `unknown rate-limit key "${config.by}"`, 'use client, subject, ip, route, header:NAME or claim:NAME')
    }
    const tiers = (env.config.rateLimitTiers ?? {}) as Record<string, string>
    if (config.limit === undefined && config.tier !== true) {
      error([], 'a rateLimit needs `limit: N/unit` or `tier: true`', 'limit: 100/min')
    }
    if (config.tier === true && Object.keys(tiers).length === 0) {
      error(['tier'], 'tier: true needs rates in the top-level rateLimitTiers', 'rateLimitTiers: { free: 60/min, gold: 6000/min }')
    }
    if (config.tier === true && config.limit === undefined && Object.keys(tiers).length > 0 && !Object.hasOwn(tiers, 'default')) {
      issues.push({
        severity: 'warning', path: ['tier'],
        message: 'callers whose tier is not in rateLimitTiers (or who have none) will be refused with 403',
        fix: 'add `limit:` as their rate, or a tier named `default` in rateLimitTiers',
      })
    }

    const burst = config.burst ?? (config.limit !== undefined && config.tier !== true ? rateCount(config.limit) : undefined)
    const lease = leaseOf(config.lease)
    if (lease > 1 && burst !== undefined && leaseCap(lease, burst) === 1) {
      issues.push({
        severity: 'warning', path: ['lease'],
        message: `lease has no effect with a burst of ${burst}: one lease holds at most burst / 10 requests`,
        fix: 'remove lease, or use it on limits with a burst of 20 or more',
      })
    }

    const route = routeOf(env.config, env.route.name)
    if (!route || !by) return issues
    if (route.public === true && needsIdentity(by)) {
      error(['by'], `by: ${config.by} needs an authenticated caller, and route "${route.name}" is public`, 'use by: ip or by: route')
    }
    const steps = route.policies ?? []
    // Placement is checked for a step of the route's own list (inside anyOf, the loader refuses a rateLimit).
    if (env.step === undefined || env.step.member !== undefined) return issues
    const position = env.step.index
    if (route.public !== true && needsIdentity(by)) {
      // anyOf holds authenticating members only; a key the registry does not know is reported by the loader.
      const authenticates = (key: string) => key === 'anyOf' || env.policies?.get(key)?.authenticates !== false
      const authenticatedBefore = steps.slice(0, position).some((step) => authenticates(Object.keys(step)[0]!))
      if (!authenticatedBefore) {
        error(['by'], `by: ${config.by} needs the caller's identity, but this step runs before any authentication`, 'move the rateLimit step after the authenticating step')
      }
    }
    const label = labelOf(config)
    const earlier = steps.slice(0, position).filter((step) => step.rateLimit !== undefined)
    if (earlier.some((step) => labelOf(step.rateLimit as RateLimitConfig) === label)) {
      error(['name'], `another rateLimit on route "${route.name}" is already named "${label}" (headers and counters would collide)`, 'give this one its own `name:`')
    }
    if (earlier.length > 0 && steps[position - 1]?.rateLimit === undefined) {
      issues.push({
        severity: 'warning', path: [],
        message: 'rateLimit steps separated by other steps cost one store round trip per group',
        fix: 'list the rateLimit steps of a route one after another',
      })
    }
    return issues
  },

  lint ({ doc, occurrences, listeners }) {
    const findings: LintFinding[] = []
    const store = (doc.store ?? {}) as { redis?: unknown, onError?: string }
    const usesRedis = typeof store.redis === 'string' ? store.redis !== '' : store.redis !== undefined
    const routes = (doc.routes ?? []) as RouteConfig[]
    const unlimited = routes.filter((_, r) => !occurrences.some((o) => o.route.index === r))
    if (store.onError === 'allow' && usesRedis && unlimited.length > 0) {
      const names = unlimited.slice(0, 5).map((route) => `"${route.name}"`).join(', ') + (unlimited.length > 5 ? ` and ${unlimited.length - 5} more` : '')
      findings.push({
        rule: 'store-allow-without-limit',
        severity: 'warning',
        path: ['store', 'onError'],
        message: `onError: allow lets requests through without replay, revocation or failed-attempt checks while Redis is down, and nothing limits them on routes without a rateLimit: ${names}`,
        fix: 'add a rateLimit step to each route (it falls back to a per-instance limit while Redis is down), or use onError: deny',
      })
    }
    const trustProxies = (doc.trustProxies ?? []) as readonly string[]
    if (trustProxies.length === 0 && listeners.some((l) => l.exposed)) {
      for (const { config, path, route } of occurrences) {
        // `by` is a string, or a list when the policy accepts several keys.
        if (config.by !== 'ip' && !(Array.isArray(config.by) && config.by.includes('ip'))) continue
        findings.push({
          rule: 'ip-limit-without-trust-proxies',
          severity: 'warning',
          path: [...path, 'by'],
          message: `route "${route.name}" limits by ip, and trustProxies is empty: behind a load balancer every client has the balancer's address and shares one limit`,
          fix: 'list the load balancer\'s addresses in trustProxies (e.g. trustProxies: [10.0.0.0/8]), or limit by client if clients reach the gateway directly',
        })
      }
    }
    return findings
  },

  create (config, deps) {
    const by = parseBy(config.by)
    if (!by) throw new RangeError(`unknown rate-limit key "${config.by}"`) // check() reports it first
    const tiers = new Map(Object.entries((deps.config.rateLimitTiers ?? {}) as Record<string, string>)
      .map(([tier, rate]) => [tier, parseRate(rate)] as const))
    const spec: LimitSpec = {
      label: labelOf(config),
      by,
      ...(config.limit !== undefined ? { rate: parseRate(config.limit) } : {}),
      tiers: config.tier === true ? tiers : undefined,
      ...(config.burst !== undefined ? { burst: config.burst } : {}),
      lease: leaseOf(config.lease),
    }
    const limiter = deps.shared(`rateLimit:${deps.route.name}`, () => new RouteLimiter(deps.route.name, deps))
    // Consecutive rateLimit steps form one batch: the index of the run's first step names it (-1: a lone policy
    // built outside a route's chain, in a unit test).
    const steps = routeOf(deps.config, deps.route.name)?.policies ?? []
    let batch = deps.step === undefined || deps.step.member !== undefined ? -1 : deps.step.index
    while (batch > 0 && steps[batch - 1]!.rateLimit !== undefined) batch--
    const member = limiter.add(batch, spec)
    return {
      evaluate: (ctx) => member.evaluate(ctx),
      close: () => limiter.close(),
      // Read when the route is compiled, once every step of the batch was added: the batch runs as one.
      get anonymous () { return member.specs.every((s) => !needsIdentity(s.by)) },
      keyHeaders: by.kind === 'header' ? [by.name] : [],
    }
  },
}

/** The limit's name in headers and keys: `name`, else `by` (a header name lower-cased; claim names keep their case). */
function labelOf (config: RateLimitConfig): string {
  if (config.name !== undefined) return config.name
  return /^header:/i.test(config.by) ? `header:${config.by.slice(7).toLowerCase()}` : config.by
}

/** The count of a rate such as `100/min`, or undefined when it does not parse (validation reports that). */
function rateCount (text: string): number | undefined {
  try {
    return parseRate(text).count
  } catch {
    return undefined
  }
}

function routeOf (config: Readonly<Record<string, unknown>>, name: string): RouteConfig | undefined {
  return (config.routes as RouteConfig[] | undefined)?.find((route) => route.name === name)
}
