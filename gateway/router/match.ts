/**
 * Route matching on the normalized path (see normalize.ts), compiled once per config.
 *
 * Path patterns (DESIGN.md, Pinned details): exact `/v1/orders`; `/v1/orders/*`, exactly one non-empty segment;
 * `/v1/orders/**`, the base `/v1/orders` itself, `/v1/orders/` and everything below; `/**`, every path. The trailing
 * slash is significant and matching is case-sensitive. `*` is allowed only as the whole last segment.
 *
 * Hosts: case-insensitive, compared without the port and without one trailing dot (`api.example.com.:443` is
 * `api.example.com`). `*.example.com` matches one or more labels in front of `example.com`, never `example.com`
 * itself. No `hosts`: any host (including a request without Host).
 *
 * Methods: upper case; a request method is compared as sent and, failing that, upper-cased (so `get` gets the
 * protections of a GET route rather than falling through to a later one). `HEAD` is accepted wherever `GET` is.
 * No `methods`: every method. Listeners: listener names; no `listeners`: every listener.
 *
 * The first matching route in file order wins, with one limit (DESIGN.md, Method mismatch): once a route has matched
 * the path, host and listener but refused the method, a later route may take the request only if it names that
 * method in its own `methods`, or has the same path pattern as a route that refused it (`orders-read` GET and
 * `orders-write` POST on one path). A later route for every method with another pattern (a public `/v1/**` after a
 * GET-only `/v1/orders/**`) never gets what a method-restricted route refused: that is 404 `no_route`, and
 * `pathMatched` in the result says so (for logs and metrics).
 */
import { normalizePath } from './normalize.js'

export interface RouteSpec {
  readonly name: string
  /** Host names, lower or mixed case, or `*.suffix` wildcards. Absent: any host. */
  readonly hosts?: readonly string[]
  /** A path pattern: `/exact`, `/prefix/*` or `/base/**`. */
  readonly path: string
  /** HTTP methods. Absent: every method. */
  readonly methods?: readonly string[]
  /** Listener names. Absent: every listener. */
  readonly listeners?: readonly string[]
  /** Position in the file's `routes:` list (file order decides). */
  readonly index: number
}

export interface MatchInput {
  /** The Host header (or absolute-form authority) as sent; a port and one trailing dot are ignored. */
  readonly host: string
  /** The normalized path (normalizePath). */
  readonly path: string
  readonly method: string
  readonly listener: string
}

export type MatchResult<R extends RouteSpec = RouteSpec> =
  | { readonly route: R }
  /** `pathMatched`: some route matched path, host and listener, but not the method. */
  | { readonly route: undefined, readonly pathMatched: boolean }

export interface RouteTable<R extends RouteSpec = RouteSpec> {
  /** The routes in match order (file order). */
  readonly routes: readonly R[]
  match (input: MatchInput): MatchResult<R>
}

const EXACT = 0
const ONE_SEGMENT = 1
const ANY_DEPTH = 2

interface PathPattern {
  readonly kind: typeof EXACT | typeof ONE_SEGMENT | typeof ANY_DEPTH
  /** EXACT: the path; ONE_SEGMENT: the prefix ending in `/`; ANY_DEPTH: the base without the trailing `/` ('' for `/**`). */
  readonly literal: string
  /** The first path segment every matching path has; undefined when paths of any first segment match. */
  readonly firstSegment: string | undefined
}

interface HostPattern {
  readonly exact: readonly string[]
  /** `*.example.com` is kept as `.example.com`. */
  readonly suffixes: readonly string[]
}

interface CompiledRoute<R extends RouteSpec> {
  readonly spec: R
  readonly pattern: PathPattern
  readonly hosts: HostPattern | undefined
  readonly methods: ReadonlySet<string> | undefined
  readonly listeners: ReadonlySet<string> | undefined
}

/**
 * Why a path pattern cannot be used, or undefined when it can. For `authgate check`: the pattern is quoted in the
 * message (it is configuration, not request input).
 */
export function pathPatternProblem (pattern: string): string | undefined {
  if (typeof pattern !== 'string' || pattern.charCodeAt(0) !== 0x2f) return 'a path pattern starts with /'
  let literal = pattern
  if (pattern.endsWith('/**')) literal = pattern.slice(0, -3)
  else if (pattern.endsWith('/*')) literal = pattern.slice(0, -1)
  if (literal.includes('*')) return `"*" is allowed only as the whole last segment: /prefix/* or /prefix/**, not ${JSON.stringify(pattern)}`
  if (literal === '') return undefined // `/**`
  if (literal.includes('?')) return `a path pattern has no query: ${JSON.stringify(pattern)}`
  const normalized = normalizePath(literal)
  if (!normalized.ok) return `path pattern ${JSON.stringify(pattern)} can never match: ${normalized.reason}`
  let fixed = normalized.path
  if (pattern.endsWith('/**') && fixed.endsWith('/')) fixed = fixed.slice(0, -1) // `/x//**` is `/x/**`
  if (fixed !== literal) {
    const suggestion = fixed + pattern.slice(literal.length)
    return `path pattern ${JSON.stringify(pattern)} can never match as written (requests are matched after normalization): write ${JSON.stringify(suggestion)}`
  }
  return undefined
}

/** Why a host pattern cannot be used, or undefined when it can. */
export function hostPatternProblem (host: string): string | undefined {
  if (typeof host !== 'string' || host === '') return 'a host is a name such as api.example.com'
  if (/[^\x21-\x7e]/.test(host)) return `host ${JSON.stringify(host)}: write internationalized names in their xn-- (punycode) form, without spaces`
  if (/[/?#@]/.test(host)) return `host ${JSON.stringify(host)} must be a bare host name (no scheme, path or user)`
  const bracketed = host.startsWith('[') && host.endsWith(']')
  if (!bracketed && host.includes(':')) return `host ${JSON.stringify(host)} must not carry a port: the port is ignored when matching`
  const star = host.lastIndexOf('*')
  if (star > 0 || (star === 0 && (!host.startsWith('*.') || host.length < 3 || host === '*.'))) {
    return `host ${JSON.stringify(host)}: a wildcard is written *.example.com (one or more labels in front)`
  }
  return undefined
}

/**
 * A copy of `text` stored flat. Slices of longer strings are views into their parent in V8, and comparing against
 * a view is several times slower: the literals compared on every request are copied once here.
 */
function flatString (text: string): string {
  return Buffer.from(text, 'utf8').toString('utf8')
}

function compilePathPattern (pattern: string): PathPattern {
  const problem = pathPatternProblem(pattern)
  if (problem !== undefined) throw new TypeError(problem)
  let kind: PathPattern['kind'] = EXACT
  let literal = pattern
  if (pattern.endsWith('/**')) {
    kind = ANY_DEPTH
    literal = pattern.slice(0, -3)
  } else if (pattern.endsWith('/*')) {
    kind = ONE_SEGMENT
    literal = pattern.slice(0, -1)
  }
  // The first segment of every matching path, when the literal fixes it: `/v1/x/**` → `v1`, `/*` and `/**` → none.
  let firstSegment: string | undefined
  const slash = literal.indexOf('/', 1)
  if (slash !== -1) firstSegment = literal.slice(1, slash)
  else if (kind === EXACT || (kind === ANY_DEPTH && literal !== '')) firstSegment = literal.slice(1)
  return { kind, literal: flatString(literal), firstSegment }
}

function canonicalHost (host: string): string {
  const lower = host.toLowerCase()
  return lower.endsWith('.') ? lower.slice(0, -1) : lower
}

function compileHosts (hosts: readonly string[] | undefined): HostPattern | undefined {
  if (hosts === undefined) return undefined
  if (hosts.length === 0) throw new TypeError('an empty hosts list matches nothing: omit it to match any host')
  const exact: string[] = []
  const suffixes: string[] = []
  for (const host of hosts) {
    const problem = hostPatternProblem(host)
    if (problem !== undefined) throw new TypeError(problem)
    const canonical = canonicalHost(host)
    if (canonical.startsWith('*.')) suffixes.push(flatString(canonical.slice(1)))
    else exact.push(flatString(canonical))
  }
  return { exact, suffixes }
}

function compileNames (names: readonly string[] | undefined, what: string, upper: boolean): ReadonlySet<string> | undefined {
  if (names === undefined) return undefined
  if (names.length === 0) throw new TypeError(`an empty ${what} list matches nothing: omit it to match every ${what.slice(0, -1)}`)
  return new Set(upper ? names.map((name) => name.toUpperCase()) : names)
}

/** The methods a route accepts: its list upper-cased, with `HEAD` wherever `GET` is (DESIGN.md, Method mismatch). */
function compileMethods (methods: readonly string[] | undefined): ReadonlySet<string> | undefined {
  const set = compileNames(methods, 'methods', true)
  if (set === undefined || !set.has('GET') || set.has('HEAD')) return set
  return new Set([...set, 'HEAD'])
}

function samePattern (a: PathPattern, b: PathPattern): boolean {
  return a.kind === b.kind && a.literal === b.literal
}

function compileRoute<R extends RouteSpec> (spec: R): CompiledRoute<R> {
  return {
    spec,
    pattern: compilePathPattern(spec.path),
    hosts: compileHosts(spec.hosts),
    methods: compileMethods(spec.methods),
    listeners: compileNames(spec.listeners, 'listeners', false),
  }
}

/**
 * `path` starts with `literal`, compared from the end: routes that share a bucket share their first segment and
 * mostly differ near the end, and this loop beats String.prototype.startsWith several times over on such pairs.
 */
function hasPrefix (path: string, literal: string): boolean {
  if (path.length < literal.length) return false
  for (let i = literal.length - 1; i >= 0; i--) {
    if (path.charCodeAt(i) !== literal.charCodeAt(i)) return false
  }
  return true
}

function matchesPath (pattern: PathPattern, path: string): boolean {
  const literal = pattern.literal
  switch (pattern.kind) {
    case EXACT:
      return path === literal
    case ONE_SEGMENT:
      return path.length > literal.length && hasPrefix(path, literal) && path.indexOf('/', literal.length) === -1
    default: // ANY_DEPTH: the base itself, or the base followed by `/`
      if (path.length === literal.length) return path === literal
      return path.length > literal.length && path.charCodeAt(literal.length) === 0x2f && hasPrefix(path, literal)
  }
}

function matchesHost (hosts: HostPattern, host: string): boolean {
  for (const exact of hosts.exact) if (host === exact) return true
  for (const suffix of hosts.suffixes) if (host.length > suffix.length && host.endsWith(suffix)) return true
  return false
}

/** The host name of a Host header: lower case, without port or trailing dot. `[::1]:8080` → `[::1]`. */
export function requestHostname (host: string): string {
  let end = host.length
  if (host.charCodeAt(0) === 0x5b) { // `[` IPv6 literal
    const close = host.indexOf(']')
    if (close !== -1) end = close + 1
  } else {
    const colon = host.indexOf(':')
    if (colon !== -1) end = colon
  }
  if (end > 0 && host.charCodeAt(end - 1) === 0x2e) end--
  const name = end === host.length ? host : host.slice(0, end)
  return name.toLowerCase()
}

/**
 * Compile routes into a table. Routes are tried in `index` order. Throws TypeError for a pattern, host or empty
 * list the config loader should have refused (pathPatternProblem, hostPatternProblem).
 */
export function compileRoutes<R extends RouteSpec> (routes: readonly R[]): RouteTable<R> {
  const ordered = [...routes].sort((a, b) => a.index - b.index)
  const compiled = ordered.map((spec) => compileRoute(spec))
  const anyHostPatterns = compiled.some((route) => route.hosts !== undefined)

  // Candidate lists by first path segment: the routes bound to that segment plus those open to any, in order.
  // A request whose first segment names no bucket sees only the open routes.
  const open = compiled.filter((route) => route.pattern.firstSegment === undefined)
  const buckets = new Map<string, CompiledRoute<R>[]>()
  for (const route of compiled) {
    const segment = route.pattern.firstSegment
    if (segment !== undefined && !buckets.has(segment)) {
      buckets.set(segment, compiled.filter((r) => r.pattern.firstSegment === undefined || r.pattern.firstSegment === segment))
    }
  }
  const frozenRoutes = Object.freeze(ordered)
  // Consecutive requests mostly carry the same Host: remember the last one instead of re-parsing it.
  let lastHost = ''
  let lastHostname = ''

  return {
    routes: frozenRoutes,
    match ({ host, path, method, listener }) {
      const slash = path.indexOf('/', 1)
      const segment = slash === -1 ? path.slice(1) : path.slice(1, slash)
      const candidates = buckets.get(segment) ?? open
      let hostname = ''
      if (anyHostPatterns) {
        if (host !== lastHost) {
          lastHostname = requestHostname(host)
          lastHost = host
        }
        hostname = lastHostname
      }
      let upperMethod: string | undefined
      // Patterns of the routes that matched path, host and listener but refused the method; rarely any.
      let refusedBy: PathPattern[] | undefined
      for (let i = 0; i < candidates.length; i++) {
        const route = candidates[i]!
        if (!matchesPath(route.pattern, path)) continue
        if (route.listeners !== undefined && !route.listeners.has(listener)) continue
        if (route.hosts !== undefined && !matchesHost(route.hosts, hostname)) continue
        if (route.methods !== undefined && !route.methods.has(method)) {
          upperMethod ??= method.toUpperCase()
          if (upperMethod === method || !route.methods.has(upperMethod)) {
            (refusedBy ??= []).push(route.pattern)
            continue
          }
        }
        // After a refusal only a route that names the method, or a sibling of the same path, may take the request:
        // a catch-all behind a method-restricted route must not serve the methods that route left out.
        if (refusedBy !== undefined && route.methods === undefined && !refusedBy.some((p) => samePattern(p, route.pattern))) continue
        return { route: route.spec }
      }
      return { route: undefined, pathMatched: refusedBy !== undefined }
    },
  }
}

// Shadowing, for `authgate check`: a later route no request can reach because an earlier one takes all of them.

function pathCovers (outer: PathPattern, inner: PathPattern): boolean {
  switch (outer.kind) {
    case EXACT:
      return inner.kind === EXACT && inner.literal === outer.literal
    case ONE_SEGMENT:
      if (inner.kind === ONE_SEGMENT) return inner.literal === outer.literal
      return inner.kind === EXACT && matchesPath(outer, inner.literal)
    default: { // ANY_DEPTH
      if (outer.literal === '') return true
      if (inner.kind === EXACT) return matchesPath(outer, inner.literal)
      // Every path matched by inner starts with inner's literal; `/b/*` (literal `/b/`) and `/b/**` (literal `/b`).
      if (inner.kind === ONE_SEGMENT) return inner.literal.startsWith(outer.literal + '/')
      return inner.literal === outer.literal || inner.literal.startsWith(outer.literal + '/')
    }
  }
}

/** Some path matches both patterns. */
function pathsOverlap (a: PathPattern, b: PathPattern): boolean {
  if (a.kind === EXACT) return matchesPath(b, a.literal)
  if (b.kind === EXACT) return matchesPath(a, b.literal)
  if (a.kind === ONE_SEGMENT && b.kind === ONE_SEGMENT) return a.literal === b.literal
  if (a.kind === ANY_DEPTH && b.kind === ANY_DEPTH) {
    return a.literal === b.literal || a.literal.startsWith(b.literal + '/') || b.literal.startsWith(a.literal + '/')
  }
  const [one, any] = a.kind === ONE_SEGMENT ? [a, b] : [b, a]
  // `/p/x` (one segment after `/p/`) is the base of `/p/x/**` or lies below a base that `/p/` is under.
  const rest = any.literal.slice(one.literal.length)
  return one.literal.startsWith(any.literal + '/') ||
    (any.literal.startsWith(one.literal) && rest !== '' && !rest.includes('/'))
}

function hostCovers (outer: HostPattern | undefined, inner: HostPattern | undefined): boolean {
  if (outer === undefined) return true
  if (inner === undefined) return false
  const coversName = (name: string) => matchesHost(outer, name)
  const coversSuffix = (suffix: string) => outer.suffixes.some((s) => suffix === s || suffix.endsWith(s))
  return inner.exact.every(coversName) && inner.suffixes.every(coversSuffix)
}

/** Some host matches both. */
function hostsOverlap (a: HostPattern | undefined, b: HostPattern | undefined): boolean {
  if (a === undefined || b === undefined) return true
  return a.exact.some((name) => matchesHost(b, name)) || b.exact.some((name) => matchesHost(a, name)) ||
    a.suffixes.some((x) => b.suffixes.some((y) => x.endsWith(y) || y.endsWith(x)))
}

function setCovers (outer: ReadonlySet<string> | undefined, inner: ReadonlySet<string> | undefined): boolean {
  if (outer === undefined) return true
  if (inner === undefined) return false
  for (const name of inner) if (!outer.has(name)) return false
  return true
}

function setsOverlap (a: ReadonlySet<string> | undefined, b: ReadonlySet<string> | undefined): boolean {
  if (a === undefined || b === undefined) return true
  for (const name of a) if (b.has(name)) return true
  return false
}

/** Some request matches the path, host and listener of both routes. */
function placesOverlap (a: CompiledRoute<RouteSpec>, b: CompiledRoute<RouteSpec>): boolean {
  return pathsOverlap(a.pattern, b.pattern) && hostsOverlap(a.hosts, b.hosts) && setsOverlap(a.listeners, b.listeners)
}

function compileValid (routes: readonly RouteSpec[]): CompiledRoute<RouteSpec>[] {
  const compiled: CompiledRoute<RouteSpec>[] = []
  for (const spec of [...routes].sort((a, b) => a.index - b.index)) {
    try {
      compiled.push(compileRoute(spec))
    } catch {
      // reported by the config validation, not here
    }
  }
  return compiled
}

/**
 * Whether `compiled[i]` takes every request `compiled[j]` (j > i) would, under the matching rule of compileRoutes,
 * given that i's path, hosts and listeners cover j's.
 */
function takesAll (compiled: readonly CompiledRoute<RouteSpec>[], i: number, j: number): boolean {
  const outer = compiled[i]!
  const inner = compiled[j]!
  // inner, a route for every method, is passed over after any refusal unless a refusing route has its pattern.
  const innerIgnoredAfterRefusal = inner.methods === undefined &&
    !compiled.slice(0, j).some((route) => samePattern(route.pattern, inner.pattern))
  if (outer.methods !== undefined) {
    // outer names each method inner accepts, so it is never passed over; what it refuses, inner cannot take either.
    return inner.methods === undefined ? innerIgnoredAfterRefusal : setCovers(outer.methods, inner.methods)
  }
  // outer takes every method unless an earlier route refused the request first; then it may be passed over.
  const earlierRefusal = compiled.slice(0, i).some((route) => route.methods !== undefined && placesOverlap(route, inner))
  return !earlierRefusal || innerIgnoredAfterRefusal
}

/**
 * Routes that can never match because an earlier route (in `index` order) takes every request they would: its path
 * pattern, hosts and listeners cover the later route's, and the methods rule of compileRoutes gives it every method
 * the later route accepts. Conservative: it reports a pair only when that is certain (a route shadowed only by
 * several earlier routes together is not reported). Each shadowed route is reported once, with the first route that
 * shadows it. Routes with invalid patterns are skipped.
 */
export function shadowedRoutes (routes: readonly RouteSpec[]): Array<{ route: number, by: number }> {
  const compiled = compileValid(routes)
  const shadowed: Array<{ route: number, by: number }> = []
  for (let j = 1; j < compiled.length; j++) {
    const inner = compiled[j]!
    for (let i = 0; i < j; i++) {
      const outer = compiled[i]!
      if (pathCovers(outer.pattern, inner.pattern) && hostCovers(outer.hosts, inner.hosts) &&
        setCovers(outer.listeners, inner.listeners) && takesAll(compiled, i, j)) {
        shadowed.push({ route: inner.spec.index, by: outer.spec.index })
        break
      }
    }
  }
  return shadowed
}

/**
 * Where a method-restricted route keeps requests from a later route for every method, for `authgate check`: `by`
 * has `methods`, `route` has none and another path pattern, some request matches the path, host and listener of
 * both, and no route of `by`'s pattern after it takes every method. Requests there with a method `by` does not
 * accept never reach `route` (DESIGN.md, Method mismatch): they get 404 `no_route`, unless a later route names
 * their method. Each route is reported once, with the first such `by`; routes shadowedRoutes reports are left out.
 * `methods`: what `by` accepts, `HEAD` included where `GET` is.
 */
export function methodRestrictedOverlaps (routes: readonly RouteSpec[]): Array<{ route: number, by: number, methods: string[] }> {
  const compiled = compileValid(routes)
  const shadowed = new Set(shadowedRoutes(routes).map(({ route }) => route))
  const found: Array<{ route: number, by: number, methods: string[] }> = []
  for (let j = 1; j < compiled.length; j++) {
    const inner = compiled[j]!
    if (inner.methods !== undefined || shadowed.has(inner.spec.index)) continue
    for (let i = 0; i < j; i++) {
      const outer = compiled[i]!
      if (outer.methods === undefined || samePattern(outer.pattern, inner.pattern) || !placesOverlap(outer, inner)) continue
      // A later route of the same pattern for every method, wherever outer applies, takes what outer refuses.
      const sibling = compiled.slice(i + 1).some((route) => route.methods === undefined && samePattern(route.pattern, outer.pattern) &&
        hostCovers(route.hosts, outer.hosts) && setCovers(route.listeners, outer.listeners))
      if (sibling) continue
      found.push({ route: inner.spec.index, by: outer.spec.index, methods: [...outer.methods] })
      break
    }
  }
  return found
}
