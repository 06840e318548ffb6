/**
 * `authgate explain -c FILE METHOD URL [-H 'Name: value']...`: what the gateway would do with one request, without
 * serving it. The real code decides: the same normalization, route table, edge checks (server.ts `prepare`), policy
 * chain (signatures and tokens actually verified) and upstream header rewriting (`upstreamHeaders`). Store lookups
 * are read-only: nothing is written, no rate-limit token is spent, no nonce is remembered.
 *
 * This file is the decision: `explainRequest` runs the request path's own functions on a synthetic request and
 * records what each step decided. The command line (command.ts), the synthetic request (request.ts), the report's
 * text form (report.ts) and the read-only store (read-only-store.ts) live beside it.
 */
import { Writable } from 'node:stream'
import { challengesFor, credentialAbsent, formatChallenge, runChain, type ChainResult, type Step } from '../../gateway/chain.js'
import type { LoadedConfig } from '../../gateway/config/types.js'
import { parseDuration } from '../../gateway/config/units.js'
import { GatewayError, Rejection } from '../../gateway/errors.js'
import { PayloadTooLargeError } from '../../gateway/context.js'
import { configuredCredentialHeaders } from '../../gateway/lint.js'
import { ALWAYS_REDACTED_HEADERS, createLogger } from '../../gateway/log.js'
import { normalizePath } from '../../gateway/router/index.js'
import { Runtime } from '../../gateway/runtime.js'
import { forwardTarget, prepare, upstreamHeaders, type ListenerRef } from '../../gateway/server.js'
import { createStore } from '../../gateway/store/index.js'
import type { PolicyInstance, Outcome, RequestContext } from '../../policies/types.js'
import { ReadOnlyStore } from './read-only-store.js'
import type { ExplainOptions, ExplainReport, StepReport } from './report.js'
import { pickListener, presentCertificate, splitUrl, syntheticRequest } from './request.js'
import { routeMisses } from './route-misses.js'

/** The report for one request against a loaded configuration. The store is opened read-only and closed after. */
export async function explainRequest (config: LoadedConfig, method: string, url: string, headers: Array<[string, string]>,
  options: ExplainOptions = {}): Promise<ExplainReport> {
  const doc = config.doc
  const target = splitUrl(url)
  const listenerConfig = pickListener(doc.listeners, target, options.listener)
  const listener: ListenerRef = { name: listenerConfig.name, scheme: listenerConfig.tls ? 'https' : 'http' }
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
  const remoteAddress = options.remoteAddress ?? '127.0.0.1'
  const req = syntheticRequest(method, target.target, rawHeaders, remoteAddress, options.body)
  if (options.certFile !== undefined) presentCertificate(req, listenerConfig, config.baseDir, options.certFile, notes)

  const normalized = normalizePath(target.target)
  const base = {
    request: { method, target: target.target, host: req.headers.host ?? '', listener: listener.name, scheme: listener.scheme, remoteAddress },
    path: normalized.ok ? { ok: true as const, normalized: normalized.path, query: normalized.rawQuery } : { ok: false as const, reason: normalized.reason },
  }

  const store = new ReadOnlyStore(createStore({
    redis: doc.store.redis,
    prefix: doc.store.prefix,
    timeoutMs: parseDuration(doc.store.timeout),
  }))
  const finish = (report: Omit<ExplainReport, 'skippedWrites' | 'notes'>): ExplainReport => ({
    ...report,
    skippedWrites: [...store.skipped],
    notes: store.kind === 'memory' && store.reads > 0
      ? [...notes, 'the store is in-process memory here: what a running gateway keeps in its memory (keys from authgate keys create, counters) is not visible']
      : notes,
  })
  const now = options.now ?? Date.now
  const log = createLogger({ level: 'warn', destination: discard() })
  let runtime: Runtime | undefined
  try {
    runtime = await Runtime.build(config, { store, log, now })
    const prepared = prepare(runtime, listener, req, 'explain')
    if (prepared instanceof Rejection) {
      return finish({
        ...base,
        ...(prepared.code === 'no_route' && normalized.ok ? { misses: routeMisses(runtime.table.routes, req.headers.host ?? '', normalized.path, method, listener.name) } : {}),
        steps: [],
        decision: { forwarded: false, status: prepared.status, code: prepared.code, detail: prepared.detail },
      })
    }
    const { route, ctx, hasBody } = prepared
    const routeReport = { name: route.name, upstream: route.upstream.name, public: route.public }
    const reject = (status: number, code: string, detail: string, steps: StepReport[], extra: { wwwAuthenticate?: string[], responseHeaders?: Record<string, string> } = {}): ExplainReport => finish({
      ...base,
      route: routeReport,
      steps,
      decision: { forwarded: false, status, code, detail, ...extra },
    })

    const declared = Number(req.headers['content-length'] ?? 0)
    if (declared > route.maxBodyBytes) {
      const r = Rejection.payloadTooLarge(route.maxBodyBytes)
      return reject(r.status, r.code, r.detail, [])
    }
    const preflight = route.preflightPublic && method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined
    if (route.public) notes.push(`route "${route.name}" is public: true, so no credentials are required`)
    if (preflight) notes.push('a CORS preflight on a route with cors.preflight: public passes without credentials')

    const { steps, reports } = instrument(route.steps)
    let result: ChainResult | undefined
    if ((!route.public && !preflight) || (route.public && route.steps.length > 0)) {
      try {
        if (route.readsBody && hasBody) await ctx.body()
        const outcome = await runChain(steps, ctx)
        if ('rejection' in outcome) {
          const r = outcome.rejection
          const challenges = r.status === 401 && !route.public ? challengesFor(steps, outcome) : (r.status === 403 && r.challenge ? [r.challenge] : [])
          const responseHeaders = { ...outcome.responseHeaders, ...r.headers }
          return reject(r.status, r.code, r.detail, reports.list(), {
            ...(challenges.length > 0 ? { wwwAuthenticate: challenges.map(formatChallenge) } : {}),
            ...(Object.keys(responseHeaders).length > 0 ? { responseHeaders } : {}),
          })
        }
        result = outcome
      } catch (error) {
        if (error instanceof PayloadTooLargeError) {
          const r = Rejection.payloadTooLarge(error.limitBytes)
          return reject(r.status, r.code, r.detail, reports.list())
        }
        if (error instanceof GatewayError) return reject(error.status, error.code, error.message, reports.list())
        throw error
      }
    }

    const forwarded = upstreamHeaders(runtime, route, req, ctx, result)
    forwarded['x-request-id'] = '(a new request id)'
    if (options.body !== undefined && route.readsBody && hasBody) forwarded['content-length'] = String(options.body.length)
    if (result && result.identity.methods.length > 0 && doc.identity.signed) {
      notes.push(`the upstream also receives ${doc.identity.signed.header}: a signed identity token (not shown)`)
    }
    return finish({
      ...base,
      route: routeReport,
      steps: reports.list(),
      decision: {
        forwarded: true,
        ...(result && Object.keys(result.responseHeaders).length > 0 ? { responseHeaders: result.responseHeaders } : {}),
      },
      upstream: {
        name: route.upstream.name,
        url: route.upstream.echo ? '(built-in echo)' : route.upstream.url ?? '',
        target: route.upstream.basePath + forwardTarget(route, ctx.path, ctx.rawQuery),
        headers: redactHeaders(forwarded, credentialNames(config)),
      },
    })
  } finally {
    await runtime?.close()
    await store.close()
  }
}

// --- the chain, observed ---------------------------------------------------------------------------------------

/** Wraps each policy instance so that what it decided is recorded; the chain itself runs unchanged. */
function instrument (original: readonly Step[]) {
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
    return {
      ...(instance.challenge ? { challenge: instance.challenge } : {}),
      ...(instance.credentialHeaders ? { credentialHeaders: instance.credentialHeaders } : {}),
      ...(instance.readsBody !== undefined ? { readsBody: instance.readsBody } : {}),
      async evaluate (ctx) {
        const outcome = await instance.evaluate(ctx)
        record(index, outcome, ctx)
        return outcome
      },
    }
  }
  const steps: Step[] = original.map((step, s) => step.kind === 'policy'
    ? { ...step, instance: wrap(step.key, step.instance) }
    : { kind: 'anyOf', members: step.members.map((m) => ({ key: m.key, instance: wrap(m.key, m.instance, s) })) })
  return {
    steps,
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
