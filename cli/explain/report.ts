/** What explain reports: the types of its JSON form, and its text form. */

export interface ExplainOptions {
  readonly body?: Buffer
  readonly listener?: string
  readonly remoteAddress?: string
  /** PEM client certificate file, presented on a TLS listener. */
  readonly certFile?: string
  readonly json?: boolean
  /** The request is a decision request to this endpoint family (decision mode). */
  readonly decide?: 'nginx' | 'forward' | 'envoy'
  readonly env?: NodeJS.ProcessEnv
  /** Clock for policies (tests). */
  readonly now?: () => number
  /** The store of a running gateway (the console), read through the read-only store and not closed; default: a
   * connection of its own to the configured store. */
  readonly store?: import('../../gateway/store/types.js').Store
}

/** The answer a decision listener sends the proxy: status as sent, and the headers the proxy copies. */
export interface DecisionAnswer {
  readonly dialect: 'nginx' | 'forward' | 'envoy'
  readonly status: number
  readonly headers: Record<string, string | string[]>
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
    /** Decision mode: the request may pass (nothing is forwarded by authgate itself). */
    readonly allowed?: boolean
    readonly status?: number
    readonly code?: string
    readonly detail?: string
    readonly wwwAuthenticate?: readonly string[]
    readonly responseHeaders?: Readonly<Record<string, string>>
  }
  readonly upstream?: { name: string, url: string, target: string, headers: Record<string, string | string[]> }
  /** Decision mode: what the proxy receives. */
  readonly answer?: DecisionAnswer
  /** Writes the real request would make (rate-limit tokens, nonces), skipped here. */
  readonly skippedWrites: readonly string[]
  readonly notes: readonly string[]
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
  } else if (d.allowed === true) {
    lines.push('decision  allowed')
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
  if (report.answer) {
    lines.push(`answer    ${report.answer.status} to the proxy (/${report.answer.dialect === 'envoy' ? 'envoy/...' : report.answer.dialect})`)
    for (const [name, value] of Object.entries(report.answer.headers).sort(([a], [b]) => a.localeCompare(b))) {
      lines.push(`          ${name}: ${[value].flat().join(', ')}`)
    }
  }
  if (report.skippedWrites.length > 0) lines.push(`skipped   store writes (explain is read-only): ${report.skippedWrites.join(', ')}`)
  for (const note of report.notes) lines.push(`note      ${note}`)
  return `${lines.join('\n')}\n`
}
