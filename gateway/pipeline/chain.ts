import { Rejection, type Challenge } from '../errors.js'
import type { Identity, Outcome, PolicyInstance, RequestContext } from '../../policies/types.js'

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

// Control characters, characters above U+00FF, which no header value can carry (undici refuses them: a 502), and
// whitespace at either end, which upstream parsers trim (" admin " would be read as "admin"). One test per value.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f]|[^\u0000-\u00ff]|^[ \u0085\u00a0]|[ \u0085\u00a0]$/

/**
 * Runs steps in order (logical AND). `anyOf` is order-free (DESIGN "anyOf, order-free"): every member is asked, in
 * listed order; a member whose credential is absent is skipped, and any other refusal (401, 400, 429...) rejects,
 * the first in listed order, even when another member passed: never fall through to a weaker method. The identity
 * comes from the first member that passed; every member that passed is listed in `methods`.
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
      if (apply(result, step.key, outcome, step.authenticates, true)) authenticated = true
      continue
    }
    // Sequential rather than concurrent: deterministic, and each present credential costs its verification anyway.
    // Members see the identity of the steps before the group only: nothing of the group is applied until all answered.
    const members = step.members
    const outcomes: Outcome[] = new Array(members.length)
    let asked = 0
    let sharedRefused = false
    while (asked < members.length) {
      const member = members[asked]!
      const outcome = await member.instance.evaluate(ctx)
      outcomes[asked++] = outcome
      if (!(outcome instanceof Rejection) || credentialAbsent(outcome, ctx)) continue
      // A refusal no other member can overrule decides the group, unless an earlier shared one may yet be overruled.
      if (member.instance.credential === undefined && !sharedRefused) break
      sharedRefused = true
    }
    let first = -1
    let firstMissing: Rejection | undefined
    let missingHeaders: Record<string, string> | undefined
    for (let i = 0; i < asked; i++) {
      const outcome = outcomes[i]!
      if (!(outcome instanceof Rejection)) { if (first < 0) first = i; continue }
      if (credentialAbsent(outcome, ctx)) {
        firstMissing ??= outcome
        // What absent members answer with (a session's Location to its login, a stale cookie cleared) is kept.
        for (const name in outcome.headers) (missingHeaders ??= {})[name] = outcome.headers[name]!
        continue
      }
      if (acceptedByAnother(members, outcomes, asked, i)) continue
      return rejected(result, outcome, members[i]!.instance, members[i]!.key)
    }
    if (first < 0) {
      return rejected(result, Rejection.unauthenticated('missing_credentials', 'credentials required', firstMissing?.challenge ?? { scheme: 'Bearer', params: {} }, missingHeaders), undefined, 'anyOf')
    }
    // Two credentials that both pass but prove different callers (a key of one client, a password of another user):
    // no member's answer is the request's; which one an upstream would act on is ambiguous, so the request is refused.
    const subject = (outcomes[first] as Passed).identity?.subject
    for (let i = first + 1; i < asked; i++) {
      const other = outcomes[i]!
      if (other instanceof Rejection || subject === undefined) continue
      if (other.identity?.subject !== undefined && other.identity.subject !== subject) {
        return rejected(result, Rejection.badRequest('the credentials of this request name different callers: send one'), members[i]!.instance, members[i]!.key)
      }
    }
    for (let i = first; i < asked; i++) {
      const outcome = outcomes[i]!
      if (!(outcome instanceof Rejection) && apply(result, members[i]!.key, outcome, true, i === first)) authenticated = true
    }
  }

  if (authenticated && !headerSafe(identity)) {
    return rejected(result, Rejection.unauthenticated('invalid_credentials', 'identity contains control characters, leading or trailing whitespace, or characters a header cannot carry', { scheme: 'Bearer', params: {} }), undefined, undefined)
  }
  return result
}

/**
 * Whether the credential that member `i` refused was accepted by another member reading the same one (two JWT
 * providers, or jwt and introspection, for one bearer token): then it is a valid credential of another issuer.
 */
function acceptedByAnother (members: Extract<Step, { kind: 'anyOf' }>['members'], outcomes: readonly Outcome[], asked: number, i: number): boolean {
  const credential = members[i]!.instance.credential
  if (credential === undefined) return false
  for (let j = 0; j < asked; j++) {
    if (j !== i && members[j]!.instance.credential === credential && !(outcomes[j] instanceof Rejection)) return true
  }
  return false
}

const NO_CLAIMS: Identity['claims'] = Object.freeze({})

type Passed = Exclude<Awaited<ReturnType<PolicyInstance['evaluate']>>, Rejection>

/**
 * Merges a passed step into the result; true when the step authenticated the caller. Without `withIdentity` (an anyOf
 * member after the first that passed) only its headers and its method are taken.
 */
function apply (result: ChainResult, key: string, outcome: Passed, authenticates: boolean, withIdentity: boolean): boolean {
  if (outcome.responseHeaders) Object.assign(result.responseHeaders, outcome.responseHeaders)
  if (outcome.upstreamHeaders) Object.assign(result.upstreamHeaders, outcome.upstreamHeaders)
  const identity = result.identity
  const update = outcome.identity
  if (update && withIdentity) {
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

/** Every identity value that becomes a header can be carried by one, and reads the same after an upstream trims it. */
function headerSafe (identity: Identity): boolean {
  if (UNSAFE.test(identity.subject) || UNSAFE.test(identity.client) || UNSAFE.test(identity.tier ?? '')) return false
  for (const scope of identity.scopes) if (UNSAFE.test(scope)) return false
  return true
}

/**
 * An anyOf member's rejection that means "this credential was not sent": the member is skipped. No client
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
