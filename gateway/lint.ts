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
  return { name: listener.name, address: listener.address, tls: listener.tls !== undefined, exposed: isExposed(listener.address) }
}

type Rule = (doc: GatewayDocument) => LintIssue[]

const RULES: readonly Rule[] = [
  publicPrivatePath,
  passthroughPlainHttp,
  credentialHeaderStripped,
  adminExposedWithoutToken,
  bodyLimitTooLarge,
  methodRestrictedPaths,
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
function plainRemoteUpstream (doc: GatewayDocument, name: string): string | undefined {
  const url = doc.upstreams[name]?.url
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

function credentialHeaderStripped (doc: GatewayDocument): LintIssue[] {
  const identity = doc.identity
  const owned = new Map<string, string>()
  for (const [field, name] of Object.entries(identity.headers)) owned.set(name.toLowerCase(), `identity.headers.${field}`)
  if (identity.signed) owned.set(identity.signed.header.toLowerCase(), 'identity.signed.header')
  for (const name of identity.stripInbound) owned.set(name.toLowerCase(), 'identity.stripInbound')
  owned.set('x-forwarded-client-cert', 'the mtls certificate header')
  owned.set('x-auth-identity', 'the signed identity header')
  const issues: LintIssue[] = []
  doc.routes.forEach((route, r) => {
    for (const step of stepsOf(route, r)) {
      for (const header of credentialHeaders(step, doc)) {
        const by = owned.get(header.name.toLowerCase())
        if (by === undefined) continue
        issues.push(finding('credential-header-stripped', 'error', header.path,
          `the ${step.key} header ${header.name} is also ${by}, which the gateway strips from every request before any policy runs: every request would be refused`,
          'use another header name for the credential'))
      }
    }
  })
  return issues
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
