import { Rejection, type Challenge } from './errors.js'
import type { Identity, PolicyInstance, RequestContext } from '../policies/types.js'

/** A compiled step of a route's chain. */
export type Step =
  | { readonly kind: 'policy', readonly key: string, readonly instance: PolicyInstance, readonly authenticates: boolean }
  | { readonly kind: 'anyOf', readonly members: ReadonlyArray<{ readonly key: string, readonly instance: PolicyInstance }> }

export interface ChainResult {
  readonly identity: Identity
  readonly responseHeaders: Record<string, string>
  readonly upstreamHeaders: Record<string, string>
}

export interface ChainRejection {
  readonly rejection: Rejection
  /** The instance that rejected (its challenge is replaced by the rejection's own), and its policy key. */
  readonly by: PolicyInstance | undefined
  readonly byKey: string | undefined
  readonly responseHeaders: Record<string, string>
  readonly identity: Partial<Identity>
}

/** The context a chain runs with: the request plus the identity that grows as steps pass. */
export interface ChainContext extends RequestContext { identity: Partial<Identity> }

// Control characters, and characters above U+00FF, which no header value can carry (undici refuses them: a 502).
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]|[^\u0000-\u00ff]/

/**
 * Runs steps in order (logical AND). In `anyOf`, a member whose credential is absent is skipped; a member
 * whose credential is present but invalid rejects at once: never fall through to a weaker method.
 */
export async function runChain (steps: readonly Step[], ctx: ChainContext): Promise<ChainResult | ChainRejection> {
  const identity: Identity = { subject: '', client: '', methods: [], scopes: [], claims: NO_CLAIMS }
  ctx.identity = identity
  const result = { identity, responseHeaders: {} as Record<string, string>, upstreamHeaders: {} as Record<string, string> }
  let authenticated = false

  for (const step of steps) {
    if (step.kind === 'policy') {
      const outcome = await step.instance.evaluate(ctx)
      if (outcome instanceof Rejection) return rejected(result, outcome, step.instance, step.key)
      if (apply(result, step.key, outcome, step.authenticates)) authenticated = true
      continue
    }
    let passed = false
    let firstMissing: { rejection: Rejection, by: PolicyInstance } | undefined
    for (const member of step.members) {
      const outcome = await member.instance.evaluate(ctx)
      if (outcome instanceof Rejection) {
        if (credentialAbsent(outcome, ctx)) { firstMissing ??= { rejection: outcome, by: member.instance }; continue }
        return rejected(result, outcome, member.instance, member.key)
      }
      if (apply(result, member.key, outcome, true)) authenticated = true
      passed = true
      break
    }
    if (!passed) {
      return rejected(result, Rejection.unauthenticated('missing_credentials', 'credentials required', firstMissing?.rejection.challenge ?? { scheme: 'Bearer', params: {} }), undefined, 'anyOf')
    }
  }

  if (authenticated && !headerSafe(identity)) {
    return rejected(result, Rejection.unauthenticated('invalid_credentials', 'identity contains control characters or characters a header cannot carry', { scheme: 'Bearer', params: {} }), undefined, undefined)
  }
  return result
}

const NO_CLAIMS: Identity['claims'] = Object.freeze({})

type Passed = Exclude<Awaited<ReturnType<PolicyInstance['evaluate']>>, Rejection>

/** Merges a passed step into the result; true when the step authenticated the caller. */
function apply (result: ChainResult, key: string, outcome: Passed, authenticates: boolean): boolean {
  if (outcome.responseHeaders) Object.assign(result.responseHeaders, outcome.responseHeaders)
  if (outcome.upstreamHeaders) Object.assign(result.upstreamHeaders, outcome.upstreamHeaders)
  const identity = result.identity
  const update = outcome.identity
  if (update) {
    // Later steps are the more specific credential: they win for each value they provide.
    if (update.subject !== undefined) identity.subject = update.subject
    if (update.client !== undefined) identity.client = update.client
    if (update.scopes !== undefined) identity.scopes = update.scopes
    if (update.tier !== undefined) identity.tier = update.tier
    // The first step's claims are taken as they are (a JWT's payload is frozen): no copy per request.
    if (update.claims !== undefined) identity.claims = identity.claims === NO_CLAIMS ? update.claims : { ...identity.claims, ...update.claims }
    if (update.cert !== undefined) identity.cert = update.cert
  }
  if (outcome.authenticated ?? (authenticates && update !== undefined)) {
    identity.methods.push(key)
    return true
  }
  return false
}

function rejected (result: ChainResult, rejection: Rejection, by: PolicyInstance | undefined, byKey: string | undefined): ChainRejection {
  return { rejection, by, byKey, responseHeaders: result.responseHeaders, identity: result.identity }
}

/** Every identity value that becomes a header can be carried by one. */
function headerSafe (identity: Identity): boolean {
  if (CONTROL.test(identity.subject) || CONTROL.test(identity.client) || CONTROL.test(identity.tier ?? '')) return false
  for (const scope of identity.scopes) if (CONTROL.test(scope)) return false
  return true
}

/**
 * An anyOf member's rejection that means "this credential was not sent": skipped, the next member is tried. No client
 * certificate at all counts too; an untrusted one was sent and is refused.
 */
export function credentialAbsent (rejection: Rejection, ctx: RequestContext): boolean {
  return rejection.code === 'missing_credentials' ||
    (rejection.code === 'client_certificate_required' && ctx.peerCert === undefined && !ctx.peerCertRejected)
}

/** One challenge per authenticating method of the route, the rejecting method's own (with error params) in its place. */
export function challengesFor (steps: readonly Step[], rejection: ChainRejection): Challenge[] {
  const out: Challenge[] = []
  const add = (instance: PolicyInstance) => {
    if (!instance.challenge) return
    const own = rejection.by === instance ? rejection.rejection.challenge : undefined
    const challenge = own ?? instance.challenge
    if (!out.some((c) => c.scheme === challenge.scheme && sameParams(c.params, challenge.params))) out.push(challenge)
  }
  for (const step of steps) {
    if (step.kind === 'policy') add(step.instance)
    else for (const member of step.members) add(member.instance)
  }
  if (out.length === 0 && rejection.rejection.challenge) out.push(rejection.rejection.challenge)
  return out
}

function sameParams (a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const keys = Object.keys(a)
  return keys.length === Object.keys(b).length && keys.every((k) => a[k] === b[k])
}

/** RFC 9110 §11.6.1 challenge; parameters as quoted-strings (§5.6.4). */
export function formatChallenge ({ scheme, params }: Challenge): string {
  const quoted = Object.entries(params).map(([name, value]) => `${name}="${value.replace(/[\\"]/g, '\\$&')}"`)
  return quoted.length === 0 ? scheme : `${scheme} ${quoted.join(', ')}`
}
