/** Why no route matched: for the routes whose path did, the first other condition that did not. */
import { compileRoutes, type RouteSpec } from '../../gateway/router/index.js'
import type { RouteMiss } from './report.js'

/** For each route whose path pattern matches: the first of listener, host, method that does not. */
export function routeMisses (routes: readonly RouteSpec[], host: string, path: string, method: string, listener: string): RouteMiss[] {
  const misses: RouteMiss[] = []
  const matches = (spec: RouteSpec) => compileRoutes([{ ...spec, index: 0 }]).match({ host, path, method, listener }).route !== undefined
  for (const route of routes) {
    const only = { name: route.name, path: route.path, index: 0 }
    if (!matches(only)) continue
    if (route.listeners !== undefined && !matches({ ...only, listeners: route.listeners })) {
      misses.push({ route: route.name, reason: `listener "${listener}" is not one of ${route.listeners.join(', ')}` })
    } else if (route.hosts !== undefined && !matches({ ...only, hosts: route.hosts })) {
      misses.push({ route: route.name, reason: `host "${host}" is not one of ${route.hosts.join(', ')}` })
    } else if (route.methods !== undefined && !matches({ ...only, methods: route.methods })) {
      misses.push({ route: route.name, reason: `method ${method} is not one of ${route.methods.join(', ')}` })
    }
  }
  return misses
}
