import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { LineCounter, parseDocument } from 'yaml'
import { ConfigError, type ConfigIssue } from '../errors.js'
import { policies, sections } from '../../policies/index.js'
import type { ListenerInfo, RouteInfo } from '../../policies/types.js'
import { gatewaySchema } from './schema.js'
import { validate, type PathIssue } from './validate.js'
import { interpolate, maskSecrets } from './interpolate.js'
import { didYouMean, positionOf } from './positions.js'
import { parseSize } from './units.js'
import { parseCidrs } from '../net.js'
import { hostPatternProblem, pathPatternProblem, shadowedRoutes } from '../router/index.js'
import type { GatewayDocument, ListenerConfig, LoadedConfig, PolicyStep, RouteConfig } from './types.js'
import { productionIssues } from './production.js'
import { lintConfig } from '../lint.js'
import { http2RuntimeProblem } from '../http2/runtime.js'

export interface LoadOptions {
  env?: NodeJS.ProcessEnv
  /** Use this text instead of reading the file (tests, reload from a snapshot). */
  text?: string
}

const topSchema = gatewaySchema(Object.fromEntries(sections.map((s) => [s.key, s.schema])))

/**
 * read -> parse (positions kept) -> interpolate -> validate (defaults applied) -> cross-check.
 * Returns every issue found, errors and warnings, each positioned in the file.
 */
export function checkConfig (file: string, options: LoadOptions = {}): { issues: ConfigIssue[], config?: LoadedConfig } {
  const env = options.env ?? process.env
  const baseDir = dirname(resolve(file))
  let text: string
  try {
    text = options.text ?? readFileSync(file, 'utf8')
  } catch (error) {
    return { issues: [{ severity: 'error', file, line: 1, col: 1, path: [], message: `cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`, fix: 'pass the right file with -c FILE' }] }
  }
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false })
  if (doc.errors.length > 0) {
    return {
      issues: doc.errors.map((e) => {
        // linePos is filled only with prettyErrors: take the position from the offset.
        const pos = e.linePos?.[0] ?? lineCounter.linePos(e.pos[0])
        return { severity: 'error' as const, file, line: pos.line, col: pos.col, path: [], message: `YAML: ${e.message.split('\n')[0]}`, fix: 'fix the YAML syntax (indentation, quotes, colons)' }
      }),
    }
  }
  let raw: unknown
  try {
    raw = doc.toJS({ maxAliasCount: 100 })
  } catch (error) {
    // yaml refuses alias expansion past maxAliasCount (a "billion laughs" document): an issue, never a crash.
    return { issues: [{ severity: 'error', file, line: 1, col: 1, path: [], message: `YAML: ${(error as Error).message}`, fix: 'use fewer aliases (*name); write the values out' }] }
  }
  if (isRecursive(raw)) {
    return { issues: [{ severity: 'error', file, line: 1, col: 1, path: [], message: 'YAML: an alias (*name) refers to a node that contains it, so the document never ends', fix: 'write the values out instead of referring to an enclosing anchor' }] }
  }
  const secrets = new Map<string, string>()
  const place = (issue: PathIssue): ConfigIssue => {
    const { keyName, ...rest } = issue
    const pos = positionOf(doc, lineCounter, issue.path, keyName)
    // An issue about a key (unknown key, unknown policy) is reported at that key, and its path names it.
    const path = keyName !== undefined && issue.path[issue.path.length - 1] !== keyName ? [...issue.path, keyName] : issue.path
    // A value that came from ${env:..} or ${file:..} may be a secret: never printed, its reference is.
    if (secrets.size > 0) {
      rest.message = maskSecrets(rest.message, secrets)
      if (rest.fix !== undefined) rest.fix = maskSecrets(rest.fix, secrets)
    }
    // An issue about another file (an htpasswd line) keeps its own position.
    if (rest.file !== undefined) return { ...rest, path }
    return { ...rest, path, file, line: pos.line, col: pos.col }
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    return { issues: [place({ severity: 'error', path: [], message: 'the configuration must be a mapping (version, listeners, upstreams, routes...)' })] }
  }
  const issues: PathIssue[] = []
  const value = interpolate(raw, env, baseDir, issues, [], secrets) as Record<string, unknown>
  issues.push(...validate(topSchema, value, []))
  const config = value as GatewayDocument
  if (issues.some((i) => i.severity === 'error')) {
    // Report every mistake at once: the cross-checks still run on what is there, except where the shape is
    // already wrong (an issue under a path that has one is the same mistake seen twice).
    const broken = issues.filter((i) => i.severity === 'error').map((i) => i.path)
    let more: PathIssue[] = []
    more = crossCheck(config, env, baseDir, true)
    const within = (path: ReadonlyArray<string | number>) => broken.some((b) => b.length <= path.length && b.every((part, k) => part === path[k]))
    issues.push(...more.filter((i) => !within(i.path)))
    return { issues: sortIssues(issues.map(place)) }
  }

  issues.push(...crossCheck(config, env, baseDir))
  const sorted = sortIssues(issues.map(place))
  if (sorted.some((i) => i.severity === 'error')) return { issues: sorted }
  deepFreeze(config)
  return {
    issues: sorted,
    config: {
      file,
      baseDir,
      doc: config,
      hash: createHash('sha256').update(text).digest('hex'),
      loadedAt: new Date(),
      warnings: sorted.filter((i) => i.severity === 'warning'),
    },
  }
}

/** Like checkConfig, but throws one ConfigError holding every error. */
export function loadConfig (file: string, options: LoadOptions = {}): LoadedConfig {
  const { issues, config } = checkConfig(file, options)
  if (!config) throw new ConfigError(issues.filter((i) => i.severity === 'error'))
  return config
}

/** What a route can be reached on, for policies' placement checks. */
export function routeInfo (config: GatewayDocument, route: RouteConfig): RouteInfo {
  const listeners: ListenerInfo[] = reachableListeners(config, route)
    .map((l): ListenerInfo => l.mode === 'decide'
      // A decision listener's TLS authenticates the proxy: the user's certificate is the forwarded one, verified
      // against the listener's own clientCA.
      ? { name: l.name, mode: 'decide', tls: l.tls !== undefined, clientCA: l.clientCA !== undefined, clientCert: l.clientCA === undefined ? 'none' : 'optional' }
      : {
          name: l.name,
          mode: 'forward',
          tls: l.tls !== undefined,
          clientCA: l.tls?.clientCA !== undefined,
          clientCert: l.tls?.clientCA === undefined ? 'none' : (l.tls.clientCert ?? 'optional'),
        })
  const maxBody = route.limits?.maxBodyBytes ?? config.limits.maxBodyBytes
  return { name: route.name, upstream: route.upstream ?? route.name, listeners, maxBodyBytes: parseSize(maxBody) }
}

function reachableListeners (config: GatewayDocument, route: RouteConfig): ListenerConfig[] {
  const names = route.match.listener === undefined ? undefined : new Set([route.match.listener].flat())
  return config.listeners.filter((l) => names === undefined || names.has(l.name))
}

/**
 * Checks across sections. `tolerant`: the schema already refused parts of the document, so a check that trips
 * over a malformed value is skipped (that value has its issue) and the other checks still report theirs.
 */
function crossCheck (config: GatewayDocument, env: NodeJS.ProcessEnv, baseDir: string, tolerant = false): PathIssue[] {
  const issues: PathIssue[] = []
  const error = (path: Array<string | number>, message: string, fix?: string) =>
    issues.push({ severity: 'error', path, message, ...(fix ? { fix } : {}) })
  const guard = (check: () => void) => {
    try { check() } catch (e) { if (!tolerant) throw e }
  }

  // Listeners: unique names and addresses.
  const listenerNames = new Set<string>()
  const addresses = new Set<string>()
  guard(() => config.listeners.forEach((l, i) => {
    if (listenerNames.has(l.name)) error(['listeners', i, 'name'], `duplicate listener name "${l.name}"`)
    if (addresses.has(l.address) && !l.address.endsWith(':0')) error(['listeners', i, 'address'], `address ${l.address} is used by another listener`)
    listenerNames.add(l.name)
    addresses.add(l.address)
    if (l.tls?.crl !== undefined && l.tls.clientCA === undefined) error(['listeners', i, 'tls', 'crl'], 'a CRL needs clientCA', 'add clientCA: or remove crl:')
    if (l.mode !== 'decide') {
      for (const key of ['trustProxies', 'clientCA', 'crl'] as const) {
        if (l[key] !== undefined) error(['listeners', i, key], `${key} here is for decision listeners only`, key === 'trustProxies' ? 'set mode: decide, or use the top-level trustProxies' : 'set mode: decide, or use tls.clientCA / tls.crl')
      }
    } else {
      if (l.crl !== undefined && l.clientCA === undefined) error(['listeners', i, 'crl'], 'a CRL needs clientCA', 'add clientCA: or remove crl:')
      parseCidrs(l.trustProxies ?? []).bad.forEach((t) => error(['listeners', i, 'trustProxies', t], 'not an IP address or CIDR', 'write it like 10.0.0.0/8 or 192.0.2.7'))
    }
    if (l.tls !== undefined && l.http2 === 'prior-knowledge') error(['listeners', i, 'http2'], 'prior-knowledge is for plain listeners; a TLS listener negotiates h2 with ALPN', 'http2: true')
    if (l.tls === undefined && l.http2 === true) error(['listeners', i, 'http2'], 'a plain listener speaks HTTP/2 only with prior knowledge', 'http2: prior-knowledge')
    if (l.mode === 'decide' && l.http2 !== undefined && l.http2 !== false) error(['listeners', i, 'http2'], 'a decision listener answers the proxies\' HTTP/1.1 subrequests; it does not speak HTTP/2', 'remove http2: (the proxy in front may still speak HTTP/2 to clients)')
  }))

  guard(() => {
    for (const [name, upstream] of Object.entries(config.upstreams)) {
      if ((upstream.url === undefined) === (upstream.echo !== true)) {
        error(['upstreams', name], 'an upstream needs exactly one of url: or echo: true', 'url: http://127.0.0.1:9000')
      }
      if (upstream.url !== undefined && upstream.protocol === 'h2' && !upstream.url.startsWith('https:')) error(['upstreams', name, 'protocol'], 'h2 is HTTP/2 over TLS: it needs an https URL', 'protocol: h2c for a plain http URL')
      if (upstream.url !== undefined && upstream.protocol === 'h2c' && !upstream.url.startsWith('http:')) error(['upstreams', name, 'protocol'], 'h2c is HTTP/2 without TLS: it needs an http URL', 'protocol: h2 for an https URL')
    }
  })

  guard(() => {
    const http2 = config.listeners.findIndex((l) => l.tls !== undefined ? l.http2 !== false : l.http2 === 'prior-knowledge')
    const problem = http2 === -1 ? undefined : http2RuntimeProblem()
    if (problem !== undefined) error(['listeners', http2, 'http2'], problem, 'upgrade Node (20.12.1 or later), or set http2: false on every listener')
  })

  guard(() => parseCidrs(config.trustProxies).bad.forEach((i) => error(['trustProxies', i], 'not an IP address or CIDR', 'write it like 10.0.0.0/8 or 192.0.2.7')))

  guard(() => { for (const [tier, rate] of Object.entries(config.rateLimitTiers)) void tier, void rate })

  for (const section of sections) {
    const value = config[section.key]
    if (value !== undefined && section.check) guard(() => issues.push(...section.check!(value, config, { baseDir })))
  }

  const routeNames = new Map<string, number>()
  guard(() => config.routes.forEach((route, r) => guard(() => {
    const at = ['routes', r]
    if (routeNames.has(route.name)) error([...at, 'name'], `duplicate route name "${route.name}" (also routes[${routeNames.get(route.name)}])`, 'give each route its own name')
    routeNames.set(route.name, r)
    if (route.upstream === undefined) {
      const forwarding = reachableListeners(config, route).filter((l) => l.mode !== 'decide')
      if (forwarding.length > 0) {
        error([...at], `route "${route.name}" has no upstream but is reachable on listener "${forwarding[0]!.name}", which forwards requests`,
          'add upstream:, or limit the route to decision listeners with match.listener')
      }
    } else if (!(route.upstream in config.upstreams)) {
      const guess = didYouMean(route.upstream, Object.keys(config.upstreams))
      error([...at, 'upstream'], `unknown upstream "${route.upstream}" (known: ${Object.keys(config.upstreams).join(', ')})`, guess ? `did you mean "${guess}"?` : 'add it under upstreams:')
    }
    for (const name of route.match.listener === undefined ? [] : [route.match.listener].flat()) {
      if (!listenerNames.has(name)) {
        const guess = didYouMean(name, listenerNames)
        error([...at, 'match', 'listener'], `unknown listener "${name}" (known: ${[...listenerNames].join(', ')})`, guess ? `did you mean "${guess}"?` : undefined)
      }
    }
    const pathProblem = pathPatternProblem(route.match.path)
    if (pathProblem) error([...at, 'match', 'path'], pathProblem)
    for (const host of route.match.host === undefined ? [] : [route.match.host].flat()) {
      const hostProblem = hostPatternProblem(host)
      if (hostProblem) error([...at, 'match', 'host'], hostProblem)
    }
    if (route.stripPrefix !== undefined && !route.match.path.startsWith(route.stripPrefix)) {
      error([...at, 'stripPrefix'], 'stripPrefix must be a prefix of match.path')
    }
    issues.push(...checkPolicies(config, route, r))
  })))

  if (issues.some((i) => i.severity === 'error')) return issues
  guard(() => {
    for (const { route, by } of shadowedRoutes(config.routes.map((route, index) => toRouteSpec(route, index)))) {
      issues.push({ severity: 'warning', path: ['routes', route, 'match'], message: `route "${config.routes[route]!.name}" can never match: routes[${by}] ("${config.routes[by]!.name}") matches everything it would`, fix: 'move it above the broader route or narrow the earlier match' })
    }
  })

  guard(() => issues.push(...productionIssues(config, env)))
  // The security lint assumes a valid document: skipped while schema errors are being reported.
  if (!tolerant) issues.push(...lintConfig(config))
  return issues
}

export function toRouteSpec (route: RouteConfig, index: number) {
  return {
    name: route.name,
    path: route.match.path,
    index,
    ...(route.match.host !== undefined ? { hosts: [route.match.host].flat() } : {}),
    ...(route.match.methods !== undefined ? { methods: route.match.methods.map((m) => m.toUpperCase()) } : {}),
    ...(route.match.listener !== undefined ? { listeners: [route.match.listener].flat() } : {}),
  }
}

function checkPolicies (config: GatewayDocument, route: RouteConfig, r: number): PathIssue[] {
  const issues: PathIssue[] = []
  const info = routeInfo(config, route)
  let authenticating = 0
  // A step that is unknown or invalid may be the authenticating one: then "no authenticating policy" is noise.
  let uncertain = false
  const visit = (steps: PolicyStep[], path: Array<string | number>, inAnyOf: boolean) => {
    steps.forEach((step, s) => {
      const entries = Object.entries(step ?? {})
      if (entries.length !== 1) return // reported by the schema
      const [key, rawConfig] = entries[0]!
      const at = [...path, s]
      if (key === 'anyOf') {
        if (inAnyOf) { issues.push({ severity: 'error', path: [...at, key], message: 'anyOf cannot be nested' }); return }
        if (!Array.isArray(rawConfig) || rawConfig.length < 2) {
          issues.push({ severity: 'error', path: [...at, key], message: 'anyOf needs a list of at least two policies', fix: 'anyOf: [ { apiKey: {} }, { jwt: { provider: corp } } ]' })
          return
        }
        visit(rawConfig as PolicyStep[], [...at, key], true)
        return
      }
      const definition = policies.get(key)
      if (!definition) {
        uncertain = true
        const guess = didYouMean(key, [...policies.keys(), 'anyOf'])
        issues.push({ severity: 'error', path: at, keyName: key, message: `unknown policy "${key}"${guess ? `; did you mean "${guess}"?` : ''}`, fix: `known policies: ${[...policies.keys()].join(', ')}, anyOf` })
        return
      }
      const policyConfig = rawConfig ?? {}
      step[key] = policyConfig
      const schemaIssues = validate(definition.schema, policyConfig, [...at, key])
      issues.push(...schemaIssues)
      if (schemaIssues.length > 0) { uncertain ||= definition.authenticates; return }
      if (definition.authenticates) authenticating++
      if (inAnyOf && !definition.authenticates) {
        issues.push({ severity: 'error', path: at, keyName: key, message: `"${key}" does not authenticate, so it cannot be an anyOf member`, fix: 'put it after the anyOf group' })
      }
      if (route.public === true && definition.authenticates) {
        issues.push({ severity: 'error', path: at, keyName: key, message: `route "${route.name}" is public: true, so the authenticating policy "${key}" would never be required`, fix: 'remove public: true, or remove the policy' })
      }
      if (route.public === true && definition.needsIdentity) {
        issues.push({ severity: 'error', path: at, keyName: key, message: `"${key}" is meaningless on a public route (nobody is authenticated)`, fix: 'remove public: true, or remove the policy' })
      }
      for (const issue of definition.check?.(policyConfig, { config, route: info }) ?? []) {
        issues.push({ ...issue, path: [...at, key, ...issue.path] })
      }
    })
  }
  visit(route.policies ?? [], ['routes', r, 'policies'], false)
  if (route.public !== true && authenticating === 0 && !uncertain) {
    issues.push({ severity: 'error', path: ['routes', r], message: `route "${route.name}" has no authenticating policy`, fix: 'add one (apiKey, jwt, hmac, basic, mtls...), or set public: true if it really is public' })
  }
  return issues
}

function sortIssues (issues: ConfigIssue[]): ConfigIssue[] {
  return issues.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.col ?? 0) - (b.col ?? 0))
}

/** `a: &x [*x]` parses into a cyclic value, which every later step would walk forever. */
function isRecursive (value: unknown, ancestors = new Set<object>()): boolean {
  if (value === null || typeof value !== 'object') return false
  if (ancestors.has(value)) return true
  ancestors.add(value)
  for (const child of Object.values(value)) if (isRecursive(child, ancestors)) return true
  ancestors.delete(value)
  return false
}

function deepFreeze<T> (value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const item of Object.values(value)) deepFreeze(item)
  }
  return value
}
