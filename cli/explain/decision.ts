/**
 * `authgate explain -c FILE METHOD URL [-H 'Name: value']...`: what the gateway would do with one request, without
 * serving it. The real code decides: the same normalization, route table, edge checks, policy chain (signatures
 * and tokens actually verified) and upstream header rewriting: decide(), the one decision every front door uses. Store lookups
 * are read-only: nothing is written, no rate-limit token is spent, no nonce is remembered.
 *
 * This file is the decision: `explainRequest` runs the request path's own functions on a synthetic request and
 * records what each step decided. The command line (command.ts), the synthetic request (request.ts), the report's
 * text form (report.ts) and the read-only store (read-only-store.ts) live beside it.
 */
import type { IncomingMessage } from 'node:http'
import { Writable } from 'node:stream'
import type { ListenerConfig } from '../../gateway/config/types.js'
import { describeOriginal, endpointOf, type Described, type Dialect } from '../../gateway/decision-mode/original-request.js'
import { decisionTrust } from '../../gateway/decision-mode/trust.js'
import { isTrusted } from '../../gateway/net.js'
import type { RequestView } from '../../gateway/pipeline/request-view.js'
import type { Problem } from '../../gateway/problem.js'
import { credentialAbsent, formatChallenge, type Step } from '../../gateway/pipeline/chain.js'
import type { LoadedConfig } from '../../gateway/config/types.js'
import { parseDuration } from '../../gateway/config/units.js'
import { GatewayError, Rejection } from '../../gateway/errors.js'
import { configuredCredentialHeaders } from '../../gateway/lint.js'
import { ALWAYS_REDACTED_HEADERS, createLogger } from '../../gateway/log.js'
import { normalizePath } from '../../gateway/router/index.js'
import { Generation, type CompiledRoute } from '../../gateway/generation.js'
import { decide, type Decision, type ListenerRef } from '../../gateway/pipeline/decide.js'
import { createStore } from '../../gateway/store/index.js'
import type { PolicyInstance, Outcome, RequestContext } from '../../policies/types.js'
import { ReadOnlyStore } from './read-only-store.js'
import type { DecisionAnswer, ExplainOptions, ExplainReport, StepReport } from './report.js'
import { ExplainInputError, pickListener, presentCertificate, splitUrl, syntheticRequest } from './request.js'
import { routeMisses } from './route-misses.js'

/** The report for one request against a loaded configuration. The store is opened read-only and closed after. */
export async function explainRequest (config: LoadedConfig, method: string, url: string, headers: Array<[string, string]>,
  options: ExplainOptions = {}): Promise<ExplainReport> {
  const doc = config.doc
  const target = splitUrl(url)
  const listenerConfig = options.decide === undefined ? pickListener(doc.listeners, target, options.listener)
    : pickDecisionListener(doc.listeners, options.listener)
  let listener: ListenerRef = { name: listenerConfig.name, scheme: listenerConfig.tls ? 'https' : 'http' }
  const notes: string[] = []
  if (target.scheme !== undefined && target.scheme !== listener.scheme) {
    notes.push(`the URL says ${target.scheme}, but listener "${listener.name}" is ${listener.scheme}`)
  }
  const rawHeaders: string[] = []
  for (const [name, value] of headers) rawHeaders.push(name, value)
  if (!headers.some(([name]) => name.toLowerCase() === 'host') && target.authority !== undefined) rawHeaders.unshift('Host', target.authority)
  if (options.body !== undefined && !headers.some(([name]) => /^(content-length|transfer-encoding)$/i.test(name))) {
    rawHeaders.push('Content-Length', String(options.body.length))
  }
  let remoteAddress = options.remoteAddress ?? '127.0.0.1'
  const received = syntheticRequest(method, target.target, rawHeaders, remoteAddress, options.body)
  if (options.certFile !== undefined) presentCertificate(received, listenerConfig, config.baseDir, options.certFile, notes)

  const now = options.now ?? Date.now
  // Decision mode: the request given is the proxy's; the one decided is the original it describes.
  let req: RequestView = received
  let asked: DecisionAsked | undefined
  if (options.decide !== undefined) {
    const described = describeDecisionRequest(options.decide, received, listenerConfig, config.baseDir, remoteAddress, now)
    if ('refused' in described) {
      return {
        request: { method, target: target.target, host: received.headers.host ?? '', listener: listener.name, scheme: listener.scheme, remoteAddress },
        path: { ok: false, reason: 'the decision request was refused before the original request was read' },
        steps: [],
        decision: { forwarded: false, status: described.refused.status, code: described.refused.code, detail: described.refused.detail },
        answer: answerOf(options.decide, described.refused, undefined),
        skippedWrites: [],
        notes,
      }
    }
    req = described.view
    listener = { name: listener.name, scheme: described.scheme }
    remoteAddress = described.view.socket.remoteAddress
    asked = { dialect: options.decide }
  }
  const originalMethod = req.method ?? method
  const originalTarget = req.url ?? target.target

  const normalized = normalizePath(originalTarget)
  const base = {
    request: { method: originalMethod, target: originalTarget, host: req.headers.host ?? '', listener: listener.name, scheme: listener.scheme, remoteAddress },
    path: normalized.ok ? { ok: true as const, normalized: normalized.path, query: normalized.rawQuery } : { ok: false as const, reason: normalized.reason },
  }

  // A running gateway (the console) lends its own store: explain reads what that gateway sees, and leaves it open.
  const store = new ReadOnlyStore(options.store ?? createStore({
    redis: doc.store.redis,
    prefix: doc.store.prefix,
    timeoutMs: parseDuration(doc.store.timeout),
  }))
  const finish = (report: Omit<ExplainReport, 'skippedWrites' | 'notes'>): ExplainReport => ({
    ...report,
    skippedWrites: [...store.skipped],
    notes: store.kind === 'memory' && store.reads > 0 && options.store === undefined
      ? [...notes, 'the store is in-process memory here: what a running gateway keeps in its memory (keys from authgate keys create, counters) is not visible']
      : notes,
  })
  const log = createLogger({ level: 'warn', destination: discard() })
  let runtime: Generation | undefined
  try {
    runtime = await Generation.build(config, { store, log, now })
    const reports = instrumentRoutes(runtime)
    let decision: Decision
    try {
      decision = await decide(runtime, listener, req, 'explain', { now, ...(asked !== undefined ? { answerOnly: true } : {}) })
    } catch (error) {
      if (!(error instanceof GatewayError)) throw error
      const route = runtime.table.match({ host: req.headers.host ?? '', path: normalized.ok ? normalized.path : '', method: originalMethod, listener: listener.name }).route
      return finish({
        ...base,
        ...(route ? { route: { name: route.name, upstream: route.upstream.name, public: route.public } } : {}),
        steps: route ? reports.get(route)!.list() : [],
        decision: { forwarded: false, status: error.status, code: error.code, detail: error.message },
        ...(asked !== undefined ? { answer: answerOf(asked.dialect, { status: error.status, code: error.code, detail: error.message }, undefined) } : {}),
      })
    }
    if (!decision.allowed && decision.route === undefined) {
      const refused = decision.problem
      return finish({
        ...base,
        ...(refused.code === 'no_route' && normalized.ok ? { misses: routeMisses(runtime.table.routes, req.headers.host ?? '', normalized.path, originalMethod, listener.name) } : {}),
        steps: [],
        decision: { forwarded: false, status: refused.status, code: refused.code, detail: refused.detail },
        ...(asked !== undefined ? { answer: answerOf(asked.dialect, refused, undefined) } : {}),
      })
    }
    const route = decision.route!
    const routeReport = { name: route.name, upstream: route.upstream.name, public: route.public }
    if (route.public) notes.push(`route "${route.name}" is public: true, so no credentials are required`)
    const preflight = route.preflightPublic && originalMethod === 'OPTIONS' && req.headers.origin !== undefined &&
      req.headers['access-control-request-method'] !== undefined && options.body === undefined
    if (preflight) notes.push('a CORS preflight on a route with cors.preflight: public passes without credentials (its rate limits by ip, route or header still apply)')
    const steps = reports.get(route)!.list()

    if (!decision.allowed) {
      const refused = decision.problem
      const responseHeaders = refused.headers ?? {}
      return finish({
        ...base,
        route: routeReport,
        steps,
        decision: {
          forwarded: false,
          status: refused.status,
          code: refused.code,
          detail: refused.detail,
          ...(refused.challenges && refused.challenges.length > 0 ? { wwwAuthenticate: refused.challenges.map(formatChallenge) } : {}),
          ...(Object.keys(responseHeaders).length > 0 ? { responseHeaders: { ...responseHeaders } } : {}),
        },
        ...(asked !== undefined ? { answer: answerOf(asked.dialect, refused, undefined) } : {}),
      })
    }

    if (asked !== undefined) {
      const headers: Record<string, string | string[]> = { ...decision.headers, ...decision.result?.responseHeaders }
      headers['x-request-id'] = '(a new request id)'
      if (decision.result && decision.result.identity.methods.length > 0 && doc.identity.signed) {
        notes.push(`the answer also carries ${doc.identity.signed.header}: a signed identity token (not shown)`)
      }
      return finish({
        ...base,
        route: routeReport,
        steps,
        decision: { forwarded: false, allowed: true },
        answer: answerOf(asked.dialect, undefined, redactHeaders(headers, credentialNames(config))),
      })
    }

    const { result } = decision
    const forwarded = decision.headers
    forwarded['x-request-id'] = '(a new request id)'
    if (result && result.identity.methods.length > 0 && doc.identity.signed) {
      notes.push(`the upstream also receives ${doc.identity.signed.header}: a signed identity token (not shown)`)
    }
    return finish({
      ...base,
      route: routeReport,
      steps,
      decision: {
        forwarded: true,
        ...(result && Object.keys(result.responseHeaders).length > 0 ? { responseHeaders: result.responseHeaders } : {}),
      },
      upstream: {
        name: route.upstream.name,
        url: route.upstream.echo ? '(built-in echo)' : route.upstream.url ?? '',
        target: route.upstream.basePath + decision.target,
        headers: redactHeaders(forwarded, credentialNames(config)),
      },
    })
  } finally {
    await runtime?.close()
    if (options.store === undefined) await store.close()
  }
}

// --- the chain, observed ---------------------------------------------------------------------------------------

/** Wraps each policy instance so that what it decided is recorded; the chain itself runs unchanged. */
/**
 * Every route's steps wrapped so that each policy's verdict is recorded, for the route decide() picks. The runtime is
 * explain's own (built for this one request), so its routes are changed in place.
 */
function instrumentRoutes (runtime: Generation): Map<CompiledRoute, { list (): StepReport[] }> {
  const out = new Map<CompiledRoute, { list (): StepReport[] }>()
  for (const route of runtime.table.routes) {
    const { steps, reports, wrapped } = instrument(route.steps)
    const preflightSteps = route.preflightSteps.map((step) => step.kind === 'policy' ? { ...step, instance: wrapped.get(step.instance)! } : step)
    Object.assign(route, { steps, preflightSteps })
    out.set(route, reports)
  }
  return out
}

function instrument (original: readonly Step[]) {
  const wrapped = new Map<PolicyInstance, PolicyInstance>()
  const entries: StepReport[] = []
  const record = (index: number, outcome: Outcome, ctx: RequestContext) => {
    const entry = entries[index]!
    if (outcome instanceof Rejection) {
      const skipped = entry.anyOf !== undefined && credentialAbsent(outcome, ctx)
      entries[index] = { ...entry, verdict: skipped ? 'skip' : 'reject', status: outcome.status, code: outcome.code, detail: outcome.detail }
    } else {
      const identity = outcome.identity
      entries[index] = {
        ...entry,
        verdict: 'pass',
        ...(identity && (identity.subject !== undefined || identity.scopes !== undefined || identity.client !== undefined || identity.tier !== undefined)
          ? { identity: { ...(identity.subject !== undefined ? { subject: identity.subject } : {}), ...(identity.client !== undefined ? { client: identity.client } : {}), ...(identity.scopes !== undefined ? { scopes: [...identity.scopes] } : {}), ...(identity.tier !== undefined ? { tier: identity.tier } : {}) } }
          : {}),
      }
    }
  }
  const wrap = (key: string, instance: PolicyInstance, group?: number): PolicyInstance => {
    const index = entries.length
    entries.push({ policy: key, verdict: 'not run', ...(group !== undefined ? { anyOf: group } : {}) })
    const traced: PolicyInstance = {
      ...(instance.challenge ? { challenge: instance.challenge } : {}),
      ...(instance.credentialHeaders ? { credentialHeaders: instance.credentialHeaders } : {}),
      ...(instance.credential !== undefined ? { credential: instance.credential } : {}),
      ...(instance.readsBody !== undefined ? { readsBody: instance.readsBody } : {}),
      async evaluate (ctx) {
        const outcome = await instance.evaluate(ctx)
        record(index, outcome, ctx)
        return outcome
      },
    }
    wrapped.set(instance, traced)
    return traced
  }
  const steps: Step[] = original.map((step, s) => step.kind === 'policy'
    ? { ...step, instance: wrap(step.key, step.instance) }
    : { kind: 'anyOf', members: step.members.map((m) => ({ key: m.key, instance: wrap(m.key, m.instance, s) })) })
  return {
    steps,
    wrapped,
    reports: { list: (): StepReport[] => entries.map((e) => ({ ...e })) },
  }
}

// --- output hygiene --------------------------------------------------------------------------------------------

function credentialNames (config: LoadedConfig): Set<string> {
  return new Set([...ALWAYS_REDACTED_HEADERS, ...configuredCredentialHeaders(config.doc)])
}

/** Credentials the upstream would receive (passthrough) are shown as present, never printed. */
function redactHeaders (headers: Record<string, string | string[]>, names: ReadonlySet<string>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(headers)) out[name] = names.has(name.toLowerCase()) ? '[redacted]' : value
  return out
}

function discard (): Writable & { write (chunk: string): boolean } {
  return new Writable({ write (_chunk, _encoding, done) { done() } })
}

// --- decision mode ---------------------------------------------------------------------------------------------

interface DecisionAsked { readonly dialect: Dialect }

/** `--decide`: the listener named, or the first decision listener. */
function pickDecisionListener (listeners: readonly ListenerConfig[], name: string | undefined): ListenerConfig {
  const deciding = listeners.filter((l) => l.mode === 'decide')
  const found = name === undefined ? deciding[0] : deciding.find((l) => l.name === name)
  if (found === undefined) {
    throw new ExplainInputError(name === undefined ? 'the configuration has no decision listener (mode: decide)' : `no decision listener "${name}" (decision listeners: ${deciding.map((l) => l.name).join(', ') || 'none'})`)
  }
  return found
}

/** The decision listener's own checks, then the original request described (decision-mode/original-request.ts). */
function describeDecisionRequest (dialect: Dialect, received: IncomingMessage, listener: ListenerConfig, baseDir: string, remoteAddress: string,
  now: () => number): Described | { refused: Problem } {
  const trust = decisionTrust(listener, baseDir, now)
  if (!isTrusted(trust.proxies, remoteAddress)) {
    return { refused: Rejection.forbidden('forbidden', `${remoteAddress} is not in the trustProxies of decision listener "${listener.name}"`) }
  }
  const endpoint = endpointOf(received.url ?? '')
  if (endpoint === undefined) throw new ExplainInputError('with --decide, the URL is the decision request\'s: /nginx, /forward or /envoy/<path>')
  if (endpoint.dialect !== dialect) throw new ExplainInputError(`--decide ${dialect}, but ${received.url} is the ${endpoint.dialect} endpoint`)
  const described = describeOriginal(endpoint, received, remoteAddress, trust.certificates)
  return described instanceof Rejection ? { refused: described } : described
}

/** What the proxy receives: on /nginx only 200, 401 or 403, with X-Authgate-Status (decision-mode/handler.ts). */
function answerOf (dialect: Dialect, refused: Problem | undefined, headers: Record<string, string | string[]> | undefined): DecisionAnswer {
  if (refused === undefined) return { dialect, status: 200, headers: headers ?? {} }
  const mapped = dialect === 'nginx' && refused.status !== 401 && refused.status !== 403
  const answerHeaders: Record<string, string | string[]> = { ...refused.headers }
  if (dialect === 'nginx') answerHeaders['x-authgate-status'] = String(refused.status)
  if (refused.challenges && refused.challenges.length > 0) answerHeaders['www-authenticate'] = refused.challenges.map(formatChallenge)
  return { dialect, status: mapped ? 403 : refused.status, headers: answerHeaders }
}
