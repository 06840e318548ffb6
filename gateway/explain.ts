/**
 * `authgate explain -c FILE METHOD URL [-H 'Name: value']...`: what the gateway would do with one request, without
 * serving it. The real code decides: the same normalization, route table, edge checks (server.ts `prepare`), policy
 * chain (signatures and tokens actually verified) and upstream header rewriting (`upstreamHeaders`). Store lookups
 * are read-only: nothing is written, no rate-limit token is spent, no nonce is remembered.
 */
import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { IncomingMessage } from 'node:http'
import { Socket } from 'node:net'
import { resolve } from 'node:path'
import { Writable } from 'node:stream'
import type { CommandIo } from '../certs/cli.js'
import { challengesFor, credentialAbsent, formatChallenge, runChain, type ChainResult, type Step } from './chain.js'
import { checkConfig } from './config/load.js'
import type { ListenerConfig, LoadedConfig } from './config/types.js'
import { parseDuration } from './config/units.js'
import { formatIssues, GatewayError, Rejection } from './errors.js'
import { PayloadTooLargeError } from './context.js'
import { configuredCredentialHeaders } from './lint.js'
import { ALWAYS_REDACTED_HEADERS, createLogger } from './log.js'
import { parseAddress } from './net.js'
import { compileRoutes, normalizePath, type RouteSpec } from './router/index.js'
import { Runtime } from './runtime.js'
import { forwardTarget, prepare, upstreamHeaders, type ListenerRef } from './server.js'
import { createStore, evaluateGcra } from './store/index.js'
import type { GcraCheck, GcraResult, Store } from './store/types.js'
import type { PolicyInstance, Outcome, RequestContext } from '../policies/types.js'

export const EXPLAIN_USAGE = `usage: authgate explain [-c gateway.yaml] METHOD URL [-H 'Name: value']... [options]

  URL                 /path?query, or http(s)://host[:port]/path?query (sets Host and picks a listener)
  -H 'Name: value'    a request header (repeatable)
  -d, --data TEXT     a request body; @FILE reads it from a file
  --listener NAME     the listener the request arrives on (default: from the URL's scheme and port)
  --remote ADDRESS    the client's address (default 127.0.0.1)
  --cert FILE         a client certificate (PEM) presented on a TLS listener, verified against its clientCA
  --json              print the report as JSON
`

export interface ExplainOptions {
  readonly body?: Buffer
  readonly listener?: string
  readonly remoteAddress?: string
  /** PEM client certificate file, presented on a TLS listener. */
  readonly certFile?: string
  readonly json?: boolean
  readonly env?: NodeJS.ProcessEnv
  /** Clock for policies (tests). */
  readonly now?: () => number
}

export type StepVerdict = 'pass' | 'reject' | 'skip' | 'not run'

export interface StepReport {
  readonly policy: string
  /** Set for members of an anyOf group: the group's position in the chain. */
  readonly anyOf?: number
  readonly verdict: StepVerdict
  readonly status?: number
  readonly code?: string
  readonly detail?: string
  readonly identity?: { subject?: string, client?: string, scopes?: string[], tier?: string }
}

export interface RouteMiss {
  readonly route: string
  readonly reason: string
}

export interface ExplainReport {
  readonly request: { method: string, target: string, host: string, listener: string, scheme: 'http' | 'https', remoteAddress: string }
  readonly path: { ok: true, normalized: string, query: string } | { ok: false, reason: string }
  readonly route?: { name: string, upstream: string, public: boolean }
  /** When no route matched: the routes whose path matched, and what else did not. */
  readonly misses?: readonly RouteMiss[]
  readonly steps: readonly StepReport[]
  readonly decision: {
    readonly forwarded: boolean
    readonly status?: number
    readonly code?: string
    readonly detail?: string
    readonly wwwAuthenticate?: readonly string[]
    readonly responseHeaders?: Readonly<Record<string, string>>
  }
  readonly upstream?: { name: string, url: string, target: string, headers: Record<string, string | string[]> }
  /** Writes the real request would make (rate-limit tokens, nonces), skipped here. */
  readonly skippedWrites: readonly string[]
  readonly notes: readonly string[]
}

/** Parses the command line and prints the report; exit 0 when the report was made, 1 on a config error, 2 on usage. */
export async function explainCommand (args: string[], io: CommandIo): Promise<number> {
  const { parseArgs, flag, UsageError } = await import('./cli.js')
  const parsed = parseArgs(args, { booleans: ['json'], values: ['c', 'config', 'H', 'header', 'd', 'data', 'listener', 'remote', 'cert'] })
  if (parsed.positional.length !== 2) throw new UsageError('explain needs METHOD and URL, e.g. authgate explain GET /v1/orders -H "X-API-Key: ..."')
  const [method, url] = parsed.positional as [string, string]
  const headers: Array<[string, string]> = []
  for (const line of [...(parsed.flags.get('H') ?? []), ...(parsed.flags.get('header') ?? [])]) {
    const colon = line.indexOf(':')
    if (colon <= 0) throw new UsageError(`-H needs 'Name: value', got "${line.slice(0, 40)}"`)
    headers.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()])
  }
  const data = flag(parsed, 'd', 'data')
  const file = flag(parsed, 'c', 'config') ?? process.env.AUTHGATE_CONFIG ?? 'gateway.yaml'
  const listener = flag(parsed, 'listener')
  const remote = flag(parsed, 'remote')
  const cert = flag(parsed, 'cert')
  return await explain(file, method, url, headers, io, {
    ...(data !== undefined ? { body: data.startsWith('@') ? readFileSync(data.slice(1)) : Buffer.from(data, 'utf8') } : {}),
    ...(listener !== undefined ? { listener } : {}),
    ...(remote !== undefined ? { remoteAddress: remote } : {}),
    ...(cert !== undefined ? { certFile: cert } : {}),
    json: parsed.flags.has('json'),
  })
}

/** Loads the configuration, explains one request, prints the report (text or --json). */
export async function explain (configFile: string, method: string, url: string, headers: Array<[string, string]>,
  io: CommandIo, options: ExplainOptions = {}): Promise<number> {
  const { issues, config } = checkConfig(configFile, { ...(options.env ? { env: options.env } : {}) })
  if (!config) {
    io.stderr.write(`${formatIssues(issues.filter((i) => i.severity === 'error'))}\n`)
    return 1
  }
  let report: ExplainReport
  try {
    report = await explainRequest(config, method, url, headers, options)
  } catch (error) {
    if (error instanceof ExplainInputError) {
      io.stderr.write(`authgate explain: ${error.message}\n`)
      return 2
    }
    throw error
  }
  io.stdout.write(options.json === true ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report))
  return 0
}

/** A mistake in what explain was asked (no such listener, unreadable URL). */
export class ExplainInputError extends Error {}

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

/** The text form: one section per stage, the decision last. */
export function formatReport (report: ExplainReport): string {
  const lines: string[] = []
  const r = report.request
  lines.push(`request   ${r.method} ${r.target}${r.host ? `  (Host: ${r.host})` : ''}  on listener "${r.listener}" (${r.scheme}) from ${r.remoteAddress}`)
  lines.push(report.path.ok
    ? `path      ${report.path.normalized}${report.path.query ? `?${report.path.query}` : ''}`
    : `path      refused: ${report.path.reason}`)
  if (report.route) {
    lines.push(`route     "${report.route.name}" -> upstream "${report.route.upstream}"${report.route.public ? ' (public)' : ''}`)
  } else if (report.path.ok) {
    lines.push('route     none')
    for (const miss of report.misses ?? []) lines.push(`            "${miss.route}": ${miss.reason}`)
    if ((report.misses ?? []).length === 0 && report.decision.code === 'no_route') lines.push('            no route has a path pattern that matches')
  }
  if (report.steps.length > 0) {
    lines.push('chain')
    for (const step of report.steps) {
      const name = step.anyOf !== undefined ? `anyOf[${step.anyOf}].${step.policy}` : step.policy
      let text = `  ${name.padEnd(22)} ${step.verdict}`
      if (step.code) text += `: ${step.status} ${step.code}`
      if (step.detail) text += ` (${step.detail})`
      if (step.identity) {
        const id = step.identity
        const parts = [id.subject !== undefined ? `subject=${id.subject}` : '', id.client !== undefined ? `client=${id.client}` : '',
          id.scopes !== undefined ? `scopes=${id.scopes.join(' ')}` : '', id.tier !== undefined ? `tier=${id.tier}` : ''].filter(Boolean)
        if (parts.length > 0) text += `  ${parts.join(' ')}`
      }
      lines.push(text)
    }
  }
  const d = report.decision
  if (d.forwarded) {
    lines.push('decision  forwarded to the upstream')
  } else {
    lines.push(`decision  ${d.status} ${d.code}: ${d.detail}`)
    for (const challenge of d.wwwAuthenticate ?? []) lines.push(`          WWW-Authenticate: ${challenge}`)
  }
  for (const [name, value] of Object.entries(d.responseHeaders ?? {})) lines.push(`          ${name}: ${value}`)
  if (report.upstream) {
    lines.push(`upstream  ${report.upstream.name} ${report.upstream.url}  ${report.request.method} ${report.upstream.target}`)
    for (const [name, value] of Object.entries(report.upstream.headers).sort(([a], [b]) => a.localeCompare(b))) {
      lines.push(`          ${name}: ${[value].flat().join(', ')}`)
    }
  }
  if (report.skippedWrites.length > 0) lines.push(`skipped   store writes (explain is read-only): ${report.skippedWrites.join(', ')}`)
  for (const note of report.notes) lines.push(`note      ${note}`)
  return `${lines.join('\n')}\n`
}

// --- the request -----------------------------------------------------------------------------------------------

interface SplitUrl { scheme?: 'http' | 'https', authority?: string, target: string }

/** Keeps the target exactly as typed: `new URL` would resolve dot segments that the gateway must refuse. */
function splitUrl (url: string): SplitUrl {
  const absolute = /^(https?):\/\/([^/?#]*)(.*)$/i.exec(url)
  if (absolute) {
    const rest = absolute[3]!
    return { scheme: absolute[1]!.toLowerCase() as 'http' | 'https', authority: absolute[2]!, target: rest === '' || rest.startsWith('?') ? `/${rest}` : rest }
  }
  if (!url.startsWith('/')) throw new ExplainInputError(`URL must be /path or http(s)://host/path, got "${url.slice(0, 60)}"`)
  return { target: url }
}

function pickListener (listeners: readonly ListenerConfig[], url: SplitUrl, name: string | undefined): ListenerConfig {
  if (name !== undefined) {
    const found = listeners.find((l) => l.name === name)
    if (!found) throw new ExplainInputError(`no listener "${name}" (listeners: ${listeners.map((l) => l.name).join(', ')})`)
    return found
  }
  const port = url.authority !== undefined ? /:(\d+)$/.exec(url.authority)?.[1] : undefined
  const ofScheme = url.scheme === undefined ? listeners : listeners.filter((l) => (l.tls !== undefined) === (url.scheme === 'https'))
  const byPort = port === undefined ? undefined : ofScheme.find((l) => String(parseAddress(l.address).port) === port)
  return byPort ?? ofScheme[0] ?? listeners[0]!
}

/** An IncomingMessage as the HTTP parser would make it, on an unconnected socket; the body, if any, is queued. */
function syntheticRequest (method: string, target: string, rawHeaders: string[], remoteAddress: string, body: Buffer | undefined): IncomingMessage {
  const socket = new Socket()
  Object.defineProperty(socket, 'remoteAddress', { value: remoteAddress })
  const req = new IncomingMessage(socket)
  req.method = method
  req.url = target
  req.httpVersion = '1.1'
  // What the HTTP parser calls: headers and headersDistinct are then computed from rawHeaders on first read.
  ;(req as unknown as { _addHeaderLines (headers: string[], n: number): void })._addHeaderLines(rawHeaders, rawHeaders.length)
  if (body !== undefined && body.length > 0) req.push(body)
  req.push(null)
  req.complete = true
  return req
}

/** Verifies the certificate against the listener's clientCA, as the TLS layer would, and attaches it to the socket. */
function presentCertificate (req: IncomingMessage, listener: ListenerConfig, baseDir: string, file: string, notes: string[]): void {
  if (listener.tls?.clientCA === undefined) {
    notes.push(`listener "${listener.name}" does not ask for client certificates (no tls.clientCA): --cert is ignored`)
    return
  }
  let cert: X509Certificate
  let cas: X509Certificate[]
  try {
    cert = new X509Certificate(readFileSync(file))
    cas = splitPem(readFileSync(resolve(baseDir, listener.tls.clientCA), 'utf8')).map((pem) => new X509Certificate(pem))
  } catch (error) {
    throw new ExplainInputError(`cannot read the certificate or the listener's clientCA: ${(error as Error).message}`)
  }
  const now = Date.now()
  const current = Date.parse(cert.validFrom) <= now && now <= Date.parse(cert.validTo)
  const issued = cas.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey))
  const authorized = current && issued
  if (!authorized) notes.push(`the certificate ${!issued ? 'is not issued by the listener\'s clientCA' : 'is expired or not yet valid'}: the TLS layer would not verify it`)
  const socket = req.socket as Socket & { authorized?: boolean, getPeerCertificate?: (detailed?: boolean) => object }
  socket.authorized = authorized
  socket.getPeerCertificate = () => ({ raw: cert.raw, subject: {}, issuer: {}, fingerprint256: cert.fingerprint256, valid_from: cert.validFrom, valid_to: cert.validTo })
}

function splitPem (text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
}

// --- why no route ----------------------------------------------------------------------------------------------

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

// --- the read-only store ---------------------------------------------------------------------------------------

/**
 * Reads go to the real store; writes are skipped and recorded. `setIfAbsent` answers as SET NX would without
 * setting (a nonce already stored is a replay), `rateLimit` evaluates GCRA on the stored state without spending,
 * `increment` and `reserve` report the count the request would reach.
 */
export class ReadOnlyStore implements Store {
  readonly skipped: string[] = []
  /** Lookups made, to tell whether the store mattered to the decision. */
  reads = 0

  constructor (private readonly inner: Store) {}

  get kind () { return this.inner.kind }
  get healthy () { return this.inner.healthy }

  get (key: string) { this.reads++; return this.inner.get(key) }
  getHash (key: string) { this.reads++; return this.inner.getHash(key) }
  members (key: string) { this.reads++; return this.inner.members(key) }
  ping () { return this.inner.ping() }
  subscribe (channel: string, handler: (message: string) => void) { return this.inner.subscribe(channel, handler) }
  close () { return this.inner.close() }

  async set (_key: string, _value: string, _ttlMs?: number) { this.note('set') }
  async delete (_key: string) { this.note('delete') }
  async setHash (_key: string, _fields: Readonly<Record<string, string>>, _ttlMs?: number) { this.note('setHash') }
  async addToSet (_key: string, _member: string) { this.note('addToSet') }
  async removeFromSet (_key: string, _member: string) { this.note('removeFromSet') }
  async publish (_channel: string, _message: string) { this.note('publish') }

  async setIfAbsent (key: string, _value: string, _ttlMs: number): Promise<boolean> {
    this.note('setIfAbsent (replay nonce)')
    return (await this.inner.get(key)) === null
  }

  async increment (key: string, windowMs: number): Promise<{ count: number, resetMs: number }> {
    this.note('increment (attempt counter)')
    const current = Number(await this.inner.get(key))
    return { count: (Number.isFinite(current) ? current : 0) + 1, resetMs: windowMs }
  }

  async reserve (key: string, limit: number, windowMs: number): Promise<{ granted: boolean, count: number, resetMs: number }> {
    this.note('reserve (attempt counter)')
    const stored = Number(await this.inner.get(key))
    const current = Number.isFinite(stored) ? stored : 0
    return current >= limit ? { granted: false, count: current, resetMs: windowMs } : { granted: true, count: current + 1, resetMs: windowMs }
  }

  async release (_key: string) { this.note('release (attempt counter)') }

  async rateLimit (checks: readonly GcraCheck[]): Promise<GcraResult[]> {
    this.note('rateLimit (token not spent)')
    const now = Date.now()
    const results: GcraResult[] = []
    for (const check of checks) {
      const stored = await this.inner.get(check.key)
      const tat = stored === null ? undefined : Number(stored)
      results.push(evaluateGcra(tat !== undefined && Number.isFinite(tat) ? tat : undefined, now, check).result)
    }
    return results
  }

  private note (what: string): void {
    if (!this.skipped.includes(what)) this.skipped.push(what)
  }
}
