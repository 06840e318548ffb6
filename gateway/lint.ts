/**
 * `authgate check` as a security linter: the classic authentication mistakes that a schema cannot see, each a rule
 * with an id (`[public-private-path]`, ESLint style, at the end of the message). Warnings leave `check` at exit 0;
 * errors make it exit 1. Rules read the validated document (interpolated, defaults applied) and never open files.
 *
 * Rules about one policy are that policy's (`lint` in its definition: `jwt-exp-not-required`,
 * `basic-insecure-exposed`, `store-allow-without-limit`, `ip-limit-without-trust-proxies`), and so are the credential
 * headers the rules here check (`credentialHeaders`): this file asks the registry for both.
 *
 * Some classic mistakes are reported by their owners, not here, so that each finding appears once:
 * - a JWT provider without `audience`, an HS secret shorter than its hash, HS and asymmetric algorithms in one
 *   provider: the `jwtProviders` section's check (policies/jwt/section.ts);
 * - a route that an earlier route shadows: the config loader (shadowedRoutes);
 * - `basic` reachable on a plain-HTTP listener without `allowInsecure`: the basic policy's check;
 * - an admin API without a token under NODE_ENV=production: gateway/config/production.ts.
 */
import { isIP } from 'node:net'
import { policies } from '../policies/index.js'
import type { CredentialHeader, LintListener, PolicyOccurrence } from '../policies/types.js'
import type { GatewayDocument, ListenerConfig, PolicyStep, RouteConfig } from './config/types.js'
import type { PathIssue } from './config/validate.js'
import { parseSize } from './config/units.js'
import { isLoopbackHost, parseAddress } from './net.js'
import { methodRestrictedPaths } from './router/method-lint.js'

/** A lint finding: a PathIssue that also names its rule. */
export interface LintIssue extends PathIssue {
  readonly rule: LintRule
}

/** A finding's rule id: a core rule's (below), or one a policy's `lint` declares (`basic-insecure-exposed`). */
export type LintRule = CoreRule | (string & {})

type CoreRule =
  | 'public-private-path'
  | 'passthrough-plain-http'
  | 'credential-header-stripped'
  | 'admin-exposed-without-token'
  | 'body-limit-too-large'
  | 'method-restricted-path'
  | 'workers-without-shared-store'
  | 'trust-proxies-too-broad'
  | 'decision-listener-plain-http'
  | 'rate-limit-reserved-header'

/** Path segments that name something nobody outside should reach without credentials. */
const PRIVATE_SEGMENTS = new Set(['admin', 'internal', 'private', 'debug', 'actuator', 'metrics', 'management', '.env', '.git'])

/** Above this, one request can hold a lot of memory or bandwidth: 100 MiB. */
export const LARGE_BODY_BYTES = 100 * 1024 * 1024

/** Every rule's findings for one validated document. Paths point into the document (the loader positions them). */
export function lintConfig (doc: GatewayDocument): LintIssue[] {
  const issues: LintIssue[] = policyRules(doc)
  for (const rule of RULES) issues.push(...rule(doc))
  return issues
}

/** The rules policies declare (`lint`), each given every occurrence of its policy. */
function policyRules (doc: GatewayDocument): LintIssue[] {
  const occurrences = new Map<string, PolicyOccurrence[]>()
  doc.routes.forEach((route, r) => {
    const listeners = listenersOf(doc, route).map(lintListener)
    for (const step of stepsOf(route, r)) {
      const list = occurrences.get(step.key) ?? []
      list.push({ config: step.config, path: step.path, route: { name: route.name, index: r, listeners } })
      occurrences.set(step.key, list)
    }
  })
  const listeners = doc.listeners.map(lintListener)
  const issues: LintIssue[] = []
  for (const policy of policies.values()) {
    for (const found of policy.lint?.({ doc, occurrences: occurrences.get(policy.key) ?? [], listeners }) ?? []) {
      issues.push({ rule: found.rule, severity: found.severity, path: [...found.path], message: `${found.message} [${found.rule}]`, fix: found.fix })
    }
  }
  return issues
}

function lintListener (listener: ListenerConfig): LintListener {
  return { name: listener.name, address: listener.address, tls: listener.tls !== undefined, exposed: isExposed(listener.address), mode: listener.mode ?? 'forward' }
}

type Rule = (doc: GatewayDocument) => LintIssue[]

const RULES: readonly Rule[] = [
  publicPrivatePath,
  passthroughPlainHttp,
  credentialHeaderStripped,
  adminExposedWithoutToken,
  bodyLimitTooLarge,
  methodRestrictedPaths,
  workersWithoutSharedStore,
  trustProxiesTooBroad,
  decisionListenerPlainHttp,
  rateLimitReservedHeader,
]

function finding (rule: CoreRule, severity: 'error' | 'warning', path: Array<string | number>, message: string, fix: string, keyName?: string): LintIssue {
  return { rule, severity, path, message: `${message} [${rule}]`, fix, ...(keyName !== undefined ? { keyName } : {}) }
}

/** One policy occurrence in a route's chain, anyOf members included. */
interface StepRef {
  readonly key: string
  readonly config: Record<string, unknown>
  /** Path of the policy's block: [..., 'policies', i, key] or [..., 'anyOf', j, key]. */
  readonly path: Array<string | number>
}

export function stepsOf (route: RouteConfig, r: number): StepRef[] {
  const out: StepRef[] = []
  const visit = (steps: readonly PolicyStep[], base: Array<string | number>) => {
    steps.forEach((step, s) => {
      const entries = Object.entries(step ?? {})
      if (entries.length !== 1) return
      const [key, value] = entries[0]!
      if (key === 'anyOf' && Array.isArray(value)) { visit(value as PolicyStep[], [...base, s, 'anyOf']); return }
      out.push({ key, config: (value ?? {}) as Record<string, unknown>, path: [...base, s, key] })
    })
  }
  visit(route.policies ?? [], ['routes', r, 'policies'])
  return out
}

/** The listeners a route is reachable on. */
function listenersOf (doc: GatewayDocument, route: RouteConfig): ListenerConfig[] {
  const names = route.match.listener === undefined ? undefined : new Set([route.match.listener].flat())
  return doc.listeners.filter((l) => names === undefined || names.has(l.name))
}

/** Whether the listener accepts connections from other machines (0.0.0.0, ::, a public or private address). */
function isExposed (address: string): boolean {
  try {
    return !isLoopbackHost(parseAddress(address).host)
  } catch {
    return true
  }
}

function publicPrivatePath (doc: GatewayDocument): LintIssue[] {
  const issues: LintIssue[] = []
  doc.routes.forEach((route, r) => {
    if (route.public !== true) return
    const segment = route.match.path.split('/').find((s) => PRIVATE_SEGMENTS.has(s.toLowerCase()))
    if (segment === undefined) return
    issues.push(finding('public-private-path', 'warning', ['routes', r, 'public'],
      `route "${route.name}" is public: true, but its path ${route.match.path} looks private ("${segment}"): anyone can reach it without credentials`,
      'remove public: true and add an authenticating policy (mtls, basic, jwt...), or rename the path if it really is public'))
  })
  return issues
}

/** The upstream's URL when it is plain http:// to another machine. */
function plainRemoteUpstream (doc: GatewayDocument, name: string | undefined): string | undefined {
  const url = name === undefined ? undefined : doc.upstreams[name]?.url
  if (url === undefined) return undefined
  try {
    const parsed = new URL(url)
    return parsed.protocol === 'http:' && !isLoopbackHost(parsed.hostname) ? url : undefined
  } catch {
    return undefined
  }
}

function passthroughPlainHttp (doc: GatewayDocument): LintIssue[] {
  const issues: LintIssue[] = []
  doc.routes.forEach((route, r) => {
    const url = plainRemoteUpstream(doc, route.upstream)
    if (url === undefined) return
    for (const step of stepsOf(route, r)) {
      if (step.config.passthrough !== true) continue
      issues.push(finding('passthrough-plain-http', 'warning', [...step.path, 'passthrough'],
        `route "${route.name}" forwards the client's bearer token to ${url} over plain HTTP: anyone on that network path can read and replay it`,
        `use an https:// URL for upstream "${route.upstream}", or remove passthrough: true (the upstream gets the verified identity headers instead)`))
    }
  })
  return issues
}

/** Credential headers a policy reads (its definition's `credentialHeaders`), with the path of the option that names them. */
function credentialHeaders (step: StepRef, doc: GatewayDocument): Array<Omit<CredentialHeader, 'path'> & { path: Array<string | number> }> {
  const declared = policies.get(step.key)?.credentialHeaders?.(step.config, doc) ?? []
  return declared.map((header) => ({ name: header.name, path: [...step.path, ...header.path], secret: header.secret }))
}

/** Gateway-owned headers (lower-case) -> what owns them: stripped from every request before any policy runs. */
function ownedHeaders (doc: GatewayDocument): Map<string, string> {
  const identity = doc.identity
  const owned = new Map<string, string>()
  for (const [field, name] of Object.entries(identity.headers)) owned.set(name.toLowerCase(), `identity.headers.${field}`)
  if (identity.signed) owned.set(identity.signed.header.toLowerCase(), 'identity.signed.header')
  for (const name of identity.stripInbound) owned.set(name.toLowerCase(), 'identity.stripInbound')
  owned.set('x-forwarded-client-cert', 'the mtls certificate header')
  owned.set('x-auth-identity', 'the signed identity header')
  return owned
}

/** Forwarding headers that any client can send (DESIGN.md "What policies see"), besides every `X-Forwarded-*`. */
const FORWARDING_HEADERS = new Set(['forwarded', 'x-real-ip', 'x-client-ip', 'true-client-ip', 'x-original-forwarded-for', 'cf-connecting-ip', 'fastly-client-ip'])

/** Whether `name` (any case) is a forwarding header that policies never read from an untrusted peer. */
export function isForwardingHeader (name: string): boolean {
  const lower = name.toLowerCase()
  return lower.startsWith('x-forwarded-') || FORWARDING_HEADERS.has(lower)
}

function credentialHeaderStripped (doc: GatewayDocument): LintIssue[] {
  const owned = ownedHeaders(doc)
  const issues: LintIssue[] = []
  doc.routes.forEach((route, r) => {
    for (const step of stepsOf(route, r)) {
      for (const header of credentialHeaders(step, doc)) {
        const by = owned.get(header.name.toLowerCase())
        if (by !== undefined) {
          issues.push(finding('credential-header-stripped', 'error', header.path,
            `the ${step.key} header ${header.name} is also ${by}, which the gateway strips from every request before any policy runs: every request would be refused`,
            'use another header name for the credential'))
        } else if (isForwardingHeader(header.name)) {
          issues.push(finding('credential-header-stripped', 'error', header.path,
            `the ${step.key} header ${header.name} is a forwarding header, which the gateway removes before any policy runs unless a trusted proxy sent it: requests would be refused`,
            'use another header name for the credential'))
        }
      }
    }
  })
  return issues
}

/** Whether the store is Redis (an empty URL, e.g. an unset `${env:REDIS_URL:-}`, is the in-process store). */
function usesRedis (doc: GatewayDocument): boolean {
  const redis = doc.store.redis
  return typeof redis === 'string' ? redis !== '' : redis !== undefined
}

function adminExposedWithoutToken (doc: GatewayDocument): LintIssue[] {
  const admin = doc.admin
  if (admin === undefined || !isExposed(admin.address) || (admin.token !== undefined && admin.token !== '')) return []
  return [finding('admin-exposed-without-token', 'warning', ['admin', 'address'],
    `the admin listener ${admin.address} is reachable from other machines and has no token: /metrics and /readyz are open to them and the key API stays locked`,
    'set admin.token: ${env:AUTHGATE_ADMIN_TOKEN}, or bind the admin listener to 127.0.0.1')]
}

function bodyLimitTooLarge (doc: GatewayDocument): LintIssue[] {
  const issues: LintIssue[] = []
  const check = (value: string | number | undefined, path: Array<string | number>, where: string) => {
    if (value === undefined) return
    let bytes: number
    try { bytes = parseSize(value) } catch { return }
    if (bytes <= LARGE_BODY_BYTES) return
    issues.push(finding('body-limit-too-large', 'warning', path,
      `${where} maxBodyBytes is ${value}: a few slow clients can tie up that much bandwidth each, and routes that verify signatures buffer the whole body in memory`,
      'keep it at 100MiB or less (the default is 1MiB); raise it only on the upload route that needs it, under routes[].limits'))
  }
  check(doc.limits.maxBodyBytes, ['limits', 'maxBodyBytes'], 'the global')
  doc.routes.forEach((route, r) => check(route.limits?.maxBodyBytes, ['routes', r, 'limits', 'maxBodyBytes'], `route "${route.name}"'s`))
  return issues
}

function workersWithoutSharedStore (doc: GatewayDocument): LintIssue[] {
  const workers = doc.workers ?? 1
  if (workers === 1 || usesRedis(doc)) return []
  const what = workers === 'auto' ? 'auto (one process per core)' : String(workers)
  return [finding('workers-without-shared-store', 'error', ['workers'],
    `${what} workers with the in-process store each keep their own replay nonces, rate-limit counters, failed-attempt lockouts and admin-created keys: one signature is accepted once per worker, a limit lets each worker's share through, and a key created on one worker is unknown to the others`,
    'set store.redis (e.g. redis: ${env:REDIS_URL}) so every worker shares one store, or use workers: 1')]
}

/** The address as a 128-bit number (IPv4-mapped and embedded IPv4 tails included); undefined if it does not parse. */
function ipv6Bits (address: string): bigint | undefined {
  const text = address.replace(/%.*$/, '') // a zone id names an interface, not bits
  const halves = text.split('::')
  if (halves.length > 2) return undefined
  const groupsOf = (part: string): number[] | undefined => {
    if (part === '') return []
    const out: number[] = []
    for (const group of part.split(':')) {
      if (group.includes('.')) {
        if (isIP(group) !== 4) return undefined
        const [a, b, c, d] = group.split('.').map(Number) as [number, number, number, number]
        out.push((a << 8) | b, (c << 8) | d)
      } else if (/^[0-9a-fA-F]{1,4}$/.test(group)) {
        out.push(parseInt(group, 16))
      } else {
        return undefined
      }
    }
    return out
  }
  const head = groupsOf(halves[0]!)
  const tail = halves.length === 2 ? groupsOf(halves[1]!) : []
  if (head === undefined || tail === undefined) return undefined
  const missing = 8 - head.length - tail.length
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined
  return [...head, ...new Array<number>(missing).fill(0), ...tail].reduce((bits, group) => (bits << 16n) | BigInt(group), 0n)
}

/** `::ffff:0:0/96`: IPv4 addresses seen on a dual-stack socket (isTrusted checks IPv4 peers against it too). */
const IPV4_MAPPED = 0xffffn << 32n

/** Why a trustProxies entry is too broad (its IPv4 or IPv6 prefix, as "/N of IPv4"), or undefined when it is not. */
function tooBroad (cidr: string): string | undefined {
  const [address = '', prefixText] = cidr.split('/')
  const family = isIP(address.replace(/%.*$/, ''))
  const max = family === 6 ? 128 : 32
  const prefix = prefixText === undefined ? max : Number(prefixText)
  if (family === 0 || !Number.isInteger(prefix) || prefix < 0 || prefix > max) return undefined // parseCidrs reports it
  if (family === 4) return prefix < 8 ? `an IPv4 /${prefix}` : undefined
  const bits = ipv6Bits(address)
  if (bits === undefined) return prefix < 32 ? `an IPv6 /${prefix}` : undefined
  // A range that holds IPv4-mapped addresses trusts the IPv4 addresses they map (::ffff:0:0/96 is all of IPv4).
  const allOfIpv4 = prefix <= 96 && bits >> BigInt(128 - prefix) === IPV4_MAPPED >> BigInt(128 - prefix)
  if (prefix < 32) return `an IPv6 /${prefix}${allOfIpv4 ? ' and all of IPv4 (as IPv4-mapped addresses)' : ''}`
  if (allOfIpv4) return 'all of IPv4 (as IPv4-mapped addresses, ::ffff:0:0/96)'
  if (prefix > 96 && bits >> 32n === 0xffffn && prefix - 96 < 8) return `an IPv4 /${prefix - 96} (as IPv4-mapped addresses)`
  return undefined
}

function trustProxiesTooBroad (doc: GatewayDocument): LintIssue[] {
  const issues: LintIssue[] = []
  doc.trustProxies.forEach((cidr, i) => {
    const what = tooBroad(cidr)
    if (what === undefined) return
    issues.push(finding('trust-proxies-too-broad', 'error', ['trustProxies', i],
      `trustProxies entry ${cidr} trusts ${what}: any client in it can set X-Forwarded-For and pick the address that rate limits, lockouts and logs see`,
      'list only your load balancers\' addresses or subnets (e.g. 10.0.0.0/8, 192.0.2.7, 2001:db8::/48): IPv4 /8 or longer, IPv6 /32 or longer'))
  })
  doc.listeners.forEach((listener, l) => listener.trustProxies?.forEach((cidr, i) => {
    const what = tooBroad(cidr)
    if (what === undefined || listener.mode !== 'decide') return
    issues.push(finding('trust-proxies-too-broad', 'error', ['listeners', l, 'trustProxies', i],
      `decision listener "${listener.name}" trusts ${what} (${cidr}): any client in it can ask for a decision on a request it describes itself, with the identity its answer names`,
      'list only the addresses of the proxies that ask (e.g. 10.0.3.0/24, 192.0.2.7): IPv4 /8 or longer, IPv6 /32 or longer'))
  }))
  return issues
}

/** A decision listener other machines reach over plain HTTP: every credential the proxies pass on crosses the network in clear. */
function decisionListenerPlainHttp (doc: GatewayDocument): LintIssue[] {
  const issues: LintIssue[] = []
  doc.listeners.forEach((listener, l) => {
    if (listener.mode !== 'decide' || listener.tls !== undefined || !isExposed(listener.address)) return
    issues.push(finding('decision-listener-plain-http', 'warning', ['listeners', l, 'address'],
      `decision listener "${listener.name}" listens on ${listener.address} without TLS: the credentials each proxy passes on (API keys, tokens, passwords) cross the network in clear text`,
      'bind it to 127.0.0.1 (authgate beside the proxy), or give it tls: (the proxy may present a client certificate to it)'))
  })
  return issues
}

/** The `by` values of a rateLimit step: a string, or a list when the policy accepts several keys. */
function byValues (config: Record<string, unknown>): string[] {
  return [config.by].flat().filter((by): by is string => typeof by === 'string')
}

function rateLimitReservedHeader (doc: GatewayDocument): LintIssue[] {
  const owned = ownedHeaders(doc)
  const issues: LintIssue[] = []
  doc.routes.forEach((route, r) => {
    for (const step of stepsOf(route, r)) {
      if (step.key !== 'rateLimit') continue
      for (const by of byValues(step.config)) {
        if (!by.startsWith('header:')) continue
        const name = by.slice('header:'.length)
        const owner = owned.get(name.toLowerCase())
        const what = owner !== undefined ? `a gateway-owned header (${owner})` : isForwardingHeader(name) ? 'a forwarding header any client can send' : undefined
        if (what === undefined) continue
        issues.push(finding('rate-limit-reserved-header', 'error', [...step.path, 'by'],
          `route "${route.name}" limits by the ${name} header, ${what}: the client chooses the value it is counted under (a new one per request escapes the limit), and the gateway removes the header before policies run`,
          'limit by client, subject or claim:NAME for a verified identity, or by ip for the address (with trustProxies listing your load balancers)'))
      }
    }
  })
  return issues
}

/**
 * Header names whose values must never reach a log beyond the built-in list (log.ts ALWAYS_REDACTED_HEADERS): every
 * configured API-key and signature header. For `createLogger({ redactHeaders })`.
 */
export function configuredCredentialHeaders (doc: GatewayDocument): string[] {
  const names = new Set<string>()
  doc.routes.forEach((route, r) => {
    for (const step of stepsOf(route, r)) {
      for (const header of credentialHeaders(step, doc)) if (header.secret) names.add(header.name.toLowerCase())
    }
  })
  return [...names]
}
