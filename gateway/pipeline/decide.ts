import { BodyTooLargeError } from '../body.js'
import { runChain, type ChainResult, type Step } from './chain.js'
import { Rejection } from '../errors.js'
import { methodsValue, scopesValue } from '../identity.js'
import { isTrusted, unmapAddress } from '../net.js'
import { chainProblem, type Problem } from '../problem.js'
import { HttpRequestContext } from '../request-context.js'
import type { CompiledRoute, Generation } from '../generation.js'
import { clientAddress } from './client-address.js'
import { checkEdge } from './edge.js'
import { forwardTarget, UNTRUSTED_FORWARDING, upstreamHeaders } from './forward-headers.js'
import type { RequestView } from './request-view.js'

export type { RequestView } from './request-view.js'

/** The listener a request arrived on. */
export interface ListenerRef {
  readonly name: string
  readonly scheme: 'http' | 'https'
}

/** The answer is no: the problem to send, and what the access line and metrics say about it. */
export interface Refusal {
  readonly allowed: false
  readonly problem: Problem
  /** Undefined when no route was chosen (edge checks, no_route). */
  readonly route: CompiledRoute | undefined
  /** The policy key of the refusing step ('anyOf', 'chain'), or undefined for a refusal before the chain. */
  readonly refusedBy: string | undefined
  /** Who the caller was shown to be before the refusal (a 403 after authentication), if anyone. */
  readonly subject: string | undefined
}

/** The answer is yes: where to, as whom, with which headers and body. */
export interface Forward {
  readonly allowed: true
  readonly route: CompiledRoute
  readonly ctx: HttpRequestContext
  /** The chain's result; undefined on a route that ran no step. */
  readonly result: ChainResult | undefined
  /** The upstream's request headers: identity set, credentials and hop-by-hop removed. */
  readonly headers: Record<string, string | string[]>
  /** Path and query for the upstream (before its base path). */
  readonly target: string
  readonly hasBody: boolean
  /** The body, when a policy read it; undefined: stream the client's. */
  readonly body: Buffer | undefined
}

export type Decision = Refusal | Forward

/** What a decision needs beyond the request: fixed per front door. */
export interface DecideEnv {
  readonly now: () => number
  /**
   * Decision mode: nothing is forwarded, so the allow answer's headers are only what the proxy copies upstream (every
   * identity header, empty when the identity has no such value, and what the policies add), not the request's own.
   */
  readonly answerOnly?: boolean
  /** Adds the signed identity (X-Auth-Identity) for an authenticated request. */
  upstreamIdentity? (result: ChainResult, route: CompiledRoute, headers: Record<string, string | string[]>): Promise<void> | void
}

/** Told once, before the first byte of the body is read (HTTP/1.1 answers Expect: 100-continue then). */
export interface BodyWaiter { bodyWanted (): void }

/**
 * The gateway's one decision, for every front door (proxy, WebSocket, explain; decision mode and HTTP/2 next):
 * edge checks -> normalize + route -> limits -> the chain -> the upstream request. Refusals are values; faults (a
 * store that is down) are thrown and become problems through faultProblem().
 */
export async function decide (generation: Generation, listener: ListenerRef, req: RequestView, requestId: string,
  env: DecideEnv, waiter?: BodyWaiter): Promise<Decision> {
  const edge = checkEdge(req)
  if (edge instanceof Rejection) return refuse(edge, undefined)
  const match = generation.table.match({ host: edge.host, path: edge.path, method: edge.method, listener: listener.name })
  const route = match.route
  if (!route) return refuse(Rejection.noRoute(), undefined)
  if (edge.headerCount > route.maxHeaderCount || edge.headerBytes > route.maxHeaderBytes) {
    return refuse(Rejection.headersTooLarge(), route)
  }

  const peerAddress = unmapAddress(req.socket?.remoteAddress ?? '')
  const trustedPeer = generation.trustsAnyProxy && isTrusted(generation.trustProxies, peerAddress)
  removeGatewayOwned(generation, req, trustedPeer, edge.forwardedFamily)
  const remoteAddress = trustedPeer ? clientAddress(generation.trustProxies, peerAddress, req.headers['x-forwarded-for'] as string | undefined) : peerAddress
  const ctx = new HttpRequestContext(req, requestId, edge.method, edge.path, req.url ?? '', edge.rawQuery, listener.scheme,
    edge.host, remoteAddress, peerAddress, listener.name, route.name, route.upstream.name, route.maxBodyBytes, env.now)

  const declared = req.headers['content-length']
  const hasBody = req.hasBody ?? (req.headers['transfer-encoding'] !== undefined || (declared !== undefined && declared !== '0'))
  if (hasBody && Number(declared ?? 0) > route.maxBodyBytes) return refuse(Rejection.payloadTooLarge(route.maxBodyBytes), route)

  const steps = stepsFor(route, req, edge.method, hasBody)
  if (req.bodyWithheld !== undefined && route.readsBody && steps === route.steps) return withheldBody(route, req.bodyWithheld)
  let result: ChainResult | undefined
  if (steps.length > 0) {
    let outcome
    try {
      if (route.readsBody && hasBody && steps === route.steps) { waiter?.bodyWanted(); await ctx.body() }
      outcome = await runChain(steps, ctx)
    } catch (error) {
      if (error instanceof BodyTooLargeError) return refuse(Rejection.payloadTooLarge(error.limitBytes), route)
      throw error
    }
    if ('rejection' in outcome) {
      return {
        allowed: false,
        problem: chainProblem(steps, outcome),
        route,
        refusedBy: outcome.byKey ?? 'chain',
        subject: outcome.identity.subject || undefined,
      }
    }
    result = outcome
  }

  const headers = env.answerOnly === true
    ? answerHeaders(generation, result)
    : upstreamHeaders(generation, route, req, { peerAddress, scheme: listener.scheme, authority: edge.host, trustedPeer }, result)
  headers['x-request-id'] = requestId
  // Awaited only when needed: `await undefined` would still cost a turn of the microtask queue.
  if (result !== undefined && result.identity.methods.length > 0 && env.upstreamIdentity) await env.upstreamIdentity(result, route, headers)
  const body = ctx.bufferedBody ? await ctx.bufferedBody : undefined
  if (body && env.answerOnly !== true) headers['content-length'] = String(body.length)
  return { allowed: true, route, ctx, result, headers, target: forwardTarget(route, edge.path, edge.rawQuery), hasBody, body }
}

/**
 * Decision mode, a route whose chain reads the body (hmac) and a proxy that sent none, or only part of it: no
 * signature over it can be checked, and saying why beats a digest mismatch.
 */
function withheldBody (route: CompiledRoute, withheld: 'absent' | 'partial'): Refusal {
  const reader = route.steps.flatMap((s) => s.kind === 'policy' ? [s] : s.members).find((m) => m.instance.readsBody === true)
  const detail = withheld === 'absent' ? 'the proxy sent no body' : 'the proxy sent only part of the body'
  const rejection = Rejection.unauthenticated('invalid_signature', detail, reader?.instance.challenge ?? { scheme: 'Signature', params: {} })
  const refused = { rejection, by: reader?.instance, byKey: reader?.key, responseHeaders: {}, identity: {} }
  return { allowed: false, problem: chainProblem(route.steps, refused), route, refusedBy: reader?.key ?? 'chain', subject: undefined }
}

/** The allow answer's headers in decision mode: the policies' upstream headers and every identity header, always. */
function answerHeaders (generation: Generation, result: ChainResult | undefined): Record<string, string | string[]> {
  const names = generation.identity
  const identity = result?.identity
  const known = identity !== undefined && identity.methods.length > 0
  const headers: Record<string, string | string[]> = result === undefined ? {} : { ...result.upstreamHeaders }
  // Present even when empty: a proxy's copy directive then always overwrites what the client sent (Caddy 2.6 copies
  // a literal placeholder when the header is absent).
  headers[names.subject] = known ? identity.subject : ''
  headers[names.client] = known ? identity.client : ''
  headers[names.methods] = known ? methodsValue(identity.methods) : ''
  headers[names.scopes] = known ? scopesValue(identity.scopes) : ''
  headers[names.tier] = known ? identity.tier ?? '' : ''
  // The signed identity too (set after this when someone was authenticated): Caddy 2.6 would copy its placeholder.
  if (names.signed !== undefined) headers[names.signed] = ''
  return headers
}

function refuse (rejection: Rejection, route: CompiledRoute | undefined): Refusal {
  return { allowed: false, problem: rejection, route, refusedBy: undefined, subject: undefined }
}

const NO_STEPS: readonly Step[] = []

/**
 * The steps this request runs: all of them, but on a `cors.preflight: public` route a CORS preflight (OPTIONS with
 * Origin and Access-Control-Request-Method, and no body) runs only the steps that need no caller (rate limits by ip,
 * route or header): a preflight is not a way around them, and a request that is no preflight runs the whole chain.
 */
function stepsFor (route: CompiledRoute, req: RequestView, method: string, hasBody: boolean): readonly Step[] {
  if (!route.preflightPublic || method !== 'OPTIONS' || hasBody) return route.steps
  if (req.headers.origin === undefined || req.headers['access-control-request-method'] === undefined) return route.steps
  return route.preflightSteps.length > 0 ? route.preflightSteps : NO_STEPS
}

/**
 * Identity headers (every name, any case: Node lower-cases them) are removed on every route before any policy
 * runs, and so are the forwarding headers of a peer that is not a trusted proxy: policies, rate-limit keys and logs
 * see only what the gateway vouches for. A header is deleted only when present, so the usual request costs lookups.
 */
function removeGatewayOwned (generation: Generation, req: RequestView, trustedPeer: boolean, forwardedFamily: boolean): void {
  const headers = req.headers
  const owned = generation.identity.stripList
  for (let i = 0; i < owned.length; i++) if (headers[owned[i]!] !== undefined) delete headers[owned[i]!]
  if (trustedPeer) return
  for (const name of UNTRUSTED_FORWARDING) if (headers[name] !== undefined) delete headers[name]
  if (forwardedFamily) for (const name in headers) if (name.startsWith('x-forwarded-')) delete headers[name]
}
