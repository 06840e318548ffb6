/**
 * `authgate check` rule `[method-restricted-path]`: a route with `methods` keeps the methods it leaves out from a
 * later route for every method whose paths overlap it (DESIGN.md, Method mismatch: they get 404 `no_route`, never
 * the later route). Usually what was meant (a GET-only route with an API key before a public `/v1/**`), sometimes a
 * surprise (a POST route for `/v1/orders` placed before a catch-all that was to serve GET there): the warning says
 * which, and how to route the other methods. The analysis is methodRestrictedOverlaps (match.ts); this file only
 * words it. Called from gateway/lint.ts.
 */
import type { GatewayDocument } from '../config/types.js'
import type { LintIssue } from '../lint.js'
import { methodRestrictedOverlaps, type RouteSpec } from './match.js'

export function methodRestrictedPaths (doc: GatewayDocument): LintIssue[] {
  const specs: RouteSpec[] = doc.routes.map((route, index) => ({
    name: route.name,
    path: route.match.path,
    index,
    ...(route.match.host !== undefined ? { hosts: [route.match.host].flat() } : {}),
    ...(route.match.methods !== undefined ? { methods: route.match.methods } : {}),
    ...(route.match.listener !== undefined ? { listeners: [route.match.listener].flat() } : {}),
  }))
  return methodRestrictedOverlaps(specs).map(({ route, by, methods }) => {
    const restricted = doc.routes[by]!
    const later = doc.routes[route]!
    return {
      rule: 'method-restricted-path',
      severity: 'warning',
      path: ['routes', by, 'match', 'methods'],
      message: `route "${restricted.name}" accepts only ${methods.join(', ')} on ${restricted.match.path}: other methods there get 404 no_route and never reach the later route "${later.name}" (${later.match.path}), which takes every method elsewhere [method-restricted-path]`,
      fix: `if 404 is what you want, nothing to change; to route the other methods, add a route for ${restricted.match.path} that lists them in methods: (with the policies they need), or give "${later.name}" a methods: list`,
    }
  })
}
