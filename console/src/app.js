// The authgate console (shared/design/console.md): Preact + htm, uPlot; bundled by console/build.mjs.
// Talks only to its own origin: /console/session, /console/api/*, and the admin API's /admin/keys with the session.
import { h, render } from 'preact'
import { useCallback, useEffect, useRef, useState } from 'preact/hooks'
import htm from 'htm'
import uPlot from 'uplot'

const html = htm.bind(h)

class ApiError extends Error {
  constructor (status, body) {
    super(body?.detail ?? `HTTP ${status}`)
    this.status = status
    this.body = body
  }
}

let onSignedOut = () => {}

/** A call to this origin; every call that changes state carries the console's header (the browser adds Origin). */
async function api (path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' }
  if (method !== 'GET' && method !== 'HEAD') headers['X-Authgate-Console'] = '1'
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  const res = await fetch(path, { method, headers, credentials: 'same-origin', cache: 'no-store', body: body === undefined ? undefined : JSON.stringify(body) })
  const text = await res.text()
  let data = null
  try { data = text ? JSON.parse(text) : null } catch { data = null }
  if (res.status === 401 && path !== '/console/session') onSignedOut()
  if (!res.ok) throw new ApiError(res.status, data)
  return data
}

const PAGES = [
  ['overview', 'Overview'],
  ['routes', 'Routes'],
  ['keys', 'Keys'],
  ['traffic', 'Traffic'],
  ['explain', 'Explain'],
]

function pageFromHash () {
  const name = location.hash.replace(/^#\/?/, '')
  return PAGES.some(([p]) => p === name) ? name : 'overview'
}

function useAsync (load, deps) {
  const [state, setState] = useState({ loading: true })
  const reload = useCallback(() => {
    let live = true
    load().then((data) => { if (live) setState({ data }) }, (error) => { if (live) setState({ error }) })
    return () => { live = false }
  }, deps)
  useEffect(reload, [reload])
  return [state, reload]
}

function Failure ({ error }) {
  return html`<p class="error" role="alert">${error.message}</p>`
}

function fmtTime (iso) {
  return iso ? new Date(iso).toLocaleString() : '—'
}

function fmtDuration (seconds) {
  const d = Math.floor(seconds / 86400); const hh = Math.floor(seconds % 86400 / 3600); const m = Math.floor(seconds % 3600 / 60); const s = seconds % 60
  return [d && `${d}d`, (d || hh) && `${hh}h`, (d || hh || m) && `${m}m`, `${s}s`].filter(Boolean).join(' ')
}

// --- sign-in ---------------------------------------------------------------------------------------------------

function SignIn ({ onSignedIn }) {
  const [error, setError] = useState(null)
  const [busy, setBusy] = useState(false)
  const submit = async (event) => {
    event.preventDefault()
    const input = event.currentTarget.elements.token
    const token = input.value
    setBusy(true)
    setError(null)
    try {
      await api('/console/session', { method: 'POST', body: { token } })
      input.value = '' // the token is not kept: the session cookie (HttpOnly) replaces it
      onSignedIn()
    } catch (e) {
      setError(e.message)
    } finally {
      setBusy(false)
    }
  }
  return html`
    <main class="signin" id="main">
      <h1>authgate console</h1>
      <form onSubmit=${submit} class="card">
        <p>Sign in with the admin token (<code>admin.token</code>). It is exchanged for a session of 8 hours and is not kept by this page.</p>
        <label for="token">Admin token</label>
        <input id="token" name="token" type="password" autocomplete="off" required spellcheck="false" />
        <button type="submit" disabled=${busy}>Sign in</button>
        ${error && html`<p class="error" role="alert">${error}</p>`}
      </form>
    </main>`
}

// --- overview --------------------------------------------------------------------------------------------------

function Overview () {
  const [state] = useAsync(() => api('/console/api/overview'), [])
  if (state.error) return html`<${Failure} error=${state.error} />`
  if (!state.data) return html`<p>Loading…</p>`
  const o = state.data
  return html`
    <section aria-labelledby="h-gateway" class="card">
      <h2 id="h-gateway">Gateway</h2>
      <dl class="facts">
        <dt>Version</dt><dd data-testid="version">${o.version}</dd>
        <dt>Uptime</dt><dd>${fmtDuration(o.uptimeSeconds)}</dd>
        <dt>Workers</dt><dd data-testid="workers">${o.workers.reporting} reporting (configured: ${String(o.workers.configured)})</dd>
      </dl>
    </section>
    <section aria-labelledby="h-config" class="card">
      <h2 id="h-config">Configuration</h2>
      <dl class="facts">
        <dt>File</dt><dd><code>${o.config.file}</code></dd>
        <dt>Hash</dt><dd><code>${o.config.hash.slice(0, 12)}</code></dd>
        <dt>Loaded</dt><dd>${fmtTime(o.config.loadedAt)}</dd>
        <dt>Last reload</dt>
        <dd>${o.lastReload ? html`${fmtTime(o.lastReload.at)}: <strong class=${o.lastReload.ok ? 'ok' : 'bad'}>${o.lastReload.ok ? 'applied' : 'refused'}</strong>` : 'none since start'}</dd>
      </dl>
      ${o.lastReload && !o.lastReload.ok && html`
        <ul class="issues">${o.lastReload.errors.map((e) => html`<li><code>${e.where}</code> ${e.message}${e.fix ? html` — fix: <code>${e.fix}</code>` : ''}</li>`)}</ul>`}
    </section>
    <section aria-labelledby="h-listeners" class="card">
      <h2 id="h-listeners">Listeners</h2>
      <div class="scroll"><table>
        <thead><tr><th scope="col">Name</th><th scope="col">Address</th><th scope="col">TLS</th><th scope="col">Client certificate</th><th scope="col">Mode</th></tr></thead>
        <tbody>${o.listeners.map((l) => html`<tr><td>${l.name}</td><td><code>${l.url ?? l.address}</code></td><td>${l.tls ? 'yes' : 'no'}</td><td>${l.clientCertificate}</td><td>${l.mode}</td></tr>`)}</tbody>
      </table></div>
    </section>
    <section aria-labelledby="h-store" class="card">
      <h2 id="h-store">Store</h2>
      <dl class="facts">
        <dt>Kind</dt><dd>${o.store.kind === 'redis' ? 'Redis' : 'memory (this process)'}</dd>
        <dt>Reachable</dt><dd><strong class=${o.store.reachable ? 'ok' : 'bad'}>${o.store.reachable ? 'yes' : 'no'}</strong></dd>
        <dt>Latency</dt><dd>${o.store.latencyMs === null ? '—' : `${o.store.latencyMs} ms`}</dd>
      </dl>
    </section>`
}

// --- routes ----------------------------------------------------------------------------------------------------

function Chain ({ chain, isPublic }) {
  if (chain.length === 0) return html`<p class="chain">${isPublic ? 'no policy (public)' : 'no policy'}</p>`
  return html`<ol class="chain" aria-label="policy chain">${chain.map((step) => html`
    <li class="step">${step.anyOf
      ? html`<span class="box group">anyOf(${step.anyOf.map((m, i) => html`${i > 0 ? html`<span class="or"> | </span>` : ''}<span class="member" title=${m.summary}>${m.summary}</span>`)})</span>`
      : html`<span class="box">${step.summary}</span>`}</li>`)}</ol>`
}

function Routes () {
  const [state] = useAsync(() => api('/console/api/routes'), [])
  if (state.error) return html`<${Failure} error=${state.error} />`
  if (!state.data) return html`<p>Loading…</p>`
  const { file, routes, warnings } = state.data
  return html`
    <p>Read-only: the routes of <code>${file}</code>, in match order. Edit the file to change them.</p>
    ${warnings.length > 0 && html`<ul class="issues">${warnings.map((w) => html`<li><code>${w.where}</code> ${w.message}</li>`)}</ul>`}
    <ol class="routes">${routes.map((r) => html`
      <li class="card route" data-route=${r.name}>
        <h2>${r.name} ${r.public && html`<span class="badge">public</span>`}</h2>
        <dl class="facts">
          <dt>Host</dt><dd>${r.host === null ? 'any' : [].concat(r.host).join(', ')}</dd>
          <dt>Path</dt><dd><code>${r.path}</code></dd>
          <dt>Methods</dt><dd>${r.methods === null ? 'any' : r.methods.join(', ')}</dd>
          <dt>Listener</dt><dd>${r.listener === null ? 'any' : [].concat(r.listener).join(', ')}</dd>
          <dt>Upstream</dt><dd>${r.upstream ?? '(decisions only)'}</dd>
        </dl>
        <${Chain} chain=${r.chain} isPublic=${r.public} />
        ${r.warnings.length > 0 && html`<ul class="issues">${r.warnings.map((w) => html`<li><code>${w.where}</code> ${w.message}</li>`)}</ul>`}
      </li>`)}</ol>`
}

// --- keys ------------------------------------------------------------------------------------------------------

function keyState (k) {
  if (k.revoked) return 'revoked'
  if (k.expiresAt && Date.parse(k.expiresAt) <= Date.now()) return 'expired'
  return 'active'
}

function ShownOnce ({ created, onDone }) {
  const [copied, setCopied] = useState(false)
  const copy = async () => {
    try { await navigator.clipboard.writeText(created.key); setCopied(true) } catch { setCopied(false) }
  }
  return html`
    <section class="card once" aria-labelledby="h-once" role="region">
      <h2 id="h-once">New key for ${created.client}${created.replaces ? ` (replaces ${created.replaces})` : ''}</h2>
      <p>This key is shown once: copy it now. authgate keeps only its hash.</p>
      <p><label for="new-key">Key</label><input id="new-key" readonly value=${created.key} data-testid="new-key" class="mono" /></p>
      <p>
        <button type="button" onClick=${copy}>${copied ? 'Copied' : 'Copy'}</button>
        <button type="button" onClick=${onDone}>Done, hide it</button>
      </p>
    </section>`
}

function Keys () {
  const [state, reload] = useAsync(() => api('/admin/keys'), [])
  const [query, setQuery] = useState('')
  const [filter, setFilter] = useState('all')
  const [created, setCreated] = useState(null)
  const [confirming, setConfirming] = useState(null)
  const [error, setError] = useState(null)
  const create = async (event) => {
    event.preventDefault()
    const form = event.currentTarget
    const f = form.elements
    const body = { client: f.client.value }
    if (f.scopes.value.trim()) body.scopes = f.scopes.value.split(/[\s,]+/).filter(Boolean)
    if (f.tier.value.trim()) body.tier = f.tier.value.trim()
    if (f.expiresIn.value.trim()) body.expiresIn = f.expiresIn.value.trim()
    setError(null)
    try {
      setCreated(await api('/admin/keys', { method: 'POST', body }))
      form.reset()
      reload()
    } catch (e) { setError(e.message) }
  }
  const revoke = async (id) => {
    setError(null)
    try { await api(`/admin/keys/${encodeURIComponent(id)}`, { method: 'DELETE' }); setConfirming(null); reload() } catch (e) { setError(e.message) }
  }
  const rotate = async (id, grace) => {
    setError(null)
    try { setCreated(await api(`/admin/keys/${encodeURIComponent(id)}/rotate`, { method: 'POST', body: grace ? { grace } : {} })); setConfirming(null); reload() } catch (e) { setError(e.message) }
  }
  const keys = (state.data ?? []).filter((k) => {
    const q = query.trim().toLowerCase()
    if (q && !k.id.toLowerCase().includes(q) && !k.client.toLowerCase().includes(q)) return false
    return filter === 'all' || keyState(k) === filter
  })
  return html`
    ${created && html`<${ShownOnce} created=${created} onDone=${() => setCreated(null)} />`}
    <section class="card" aria-labelledby="h-create">
      <h2 id="h-create">Create a key</h2>
      <form onSubmit=${create} class="grid">
        <label for="k-client">Client</label><input id="k-client" name="client" required maxlength="200" />
        <label for="k-scopes">Scopes (space or comma separated)</label><input id="k-scopes" name="scopes" />
        <label for="k-tier">Rate-limit tier</label><input id="k-tier" name="tier" />
        <label for="k-expires">Expires in (e.g. 90d, 12h; empty: never)</label><input id="k-expires" name="expiresIn" />
        <span></span><button type="submit">Create key</button>
      </form>
    </section>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    <section class="card" aria-labelledby="h-keys">
      <h2 id="h-keys">Keys</h2>
      <div class="toolbar">
        <label for="k-search">Search by id or client</label><input id="k-search" type="search" value=${query} onInput=${(e) => setQuery(e.currentTarget.value)} />
        <label for="k-filter">Show</label>
        <select id="k-filter" value=${filter} onChange=${(e) => setFilter(e.currentTarget.value)}>
          <option value="all">all</option><option value="active">active</option><option value="revoked">revoked</option><option value="expired">expired</option>
        </select>
      </div>
      ${state.error ? html`<${Failure} error=${state.error} />` : html`
      <div class="scroll"><table>
        <thead><tr><th scope="col">Id</th><th scope="col">Client</th><th scope="col">Scopes</th><th scope="col">Tier</th><th scope="col">State</th><th scope="col">Expires</th><th scope="col">Last used</th><th scope="col">Actions</th></tr></thead>
        <tbody>${keys.map((k) => html`
          <tr data-key=${k.id}>
            <td><code>${k.id}</code></td><td>${k.client}</td><td>${k.scopes.join(' ')}</td><td>${k.tier ?? ''}</td>
            <td><span class=${`state ${keyState(k)}`}>${keyState(k)}</span></td>
            <td>${k.expiresAt ? fmtTime(k.expiresAt) : 'never'}</td><td>${fmtTime(k.lastUsedAt)}</td>
            <td>${k.source === 'config' ? html`<span class="muted">static (gateway.yaml)</span>`
              : k.revoked ? '' : confirming?.id === k.id ? html`
                ${confirming.action === 'revoke' ? html`
                  <button type="button" class="danger" onClick=${() => revoke(k.id)}>Confirm revoke</button>`
                : html`
                  <label for=${`grace-${k.id}`}>Grace</label><input id=${`grace-${k.id}`} size="5" defaultValue="1h" class="short" />
                  <button type="button" onClick=${(e) => rotate(k.id, e.currentTarget.parentElement.querySelector('input').value.trim())}>Confirm rotate</button>`}
                <button type="button" onClick=${() => setConfirming(null)}>Cancel</button>`
              : html`
                <button type="button" onClick=${() => setConfirming({ id: k.id, action: 'revoke' })} aria-label=${`Revoke ${k.id}`}>Revoke</button>
                <button type="button" onClick=${() => setConfirming({ id: k.id, action: 'rotate' })} aria-label=${`Rotate ${k.id}`}>Rotate</button>`}
            </td>
          </tr>`)}</tbody>
      </table></div>
      ${keys.length === 0 && html`<p>No key${query || filter !== 'all' ? ' matches' : ''}.</p>`}`}
    </section>`
}

// --- traffic ---------------------------------------------------------------------------------------------------

const COLORS = ['#1b6ac9', '#2f8f3a', '#b35c00', '#b3261e', '#6f42c1', '#00838f', '#8d6e00', '#c2185b']
const STATUS_COLORS = { '2xx': '#2f8f3a', '3xx': '#1b6ac9', '4xx': '#b35c00', '5xx': '#b3261e', '1xx': '#6f42c1' }

function Chart ({ title, times, series, unit }) {
  const box = useRef(null)
  const plot = useRef(null)
  const names = series.map((s) => s.label).join('\u0000')
  useEffect(() => {
    const width = () => Math.max(280, (box.current?.clientWidth ?? 600) - 8)
    const opts = {
      width: width(),
      height: 200,
      scales: { x: { time: true } },
      axes: [{}, { size: 72, values: (u, ticks) => ticks.map((v) => unit === 's' ? `${+(v * 1000).toPrecision(3)} ms` : String(v)) }],
      series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: s.color ?? COLORS[i % COLORS.length], width: 2, spanGaps: false }))],
    }
    plot.current = new uPlot(opts, [times, ...series.map((s) => s.values)], box.current)
    const observer = new ResizeObserver(() => plot.current?.setSize({ width: width(), height: 200 }))
    observer.observe(box.current)
    return () => { observer.disconnect(); plot.current?.destroy(); plot.current = null }
  }, [names])
  useEffect(() => { plot.current?.setData([times, ...series.map((s) => s.values)]) })
  return html`<figure class="chart"><figcaption>${title}</figcaption><div ref=${box} role="img" aria-label=${title}></div></figure>`
}

function Traffic () {
  const [data, setData] = useState(null)
  const [error, setError] = useState(null)
  useEffect(() => {
    let live = true
    let timer
    const load = async () => {
      try { const d = await api('/console/api/traffic'); if (live) { setData(d); setError(null) } } catch (e) { if (live) setError(e) }
      if (live) timer = setTimeout(load, 2000)
    }
    load()
    return () => { live = false; clearTimeout(timer) }
  }, [])
  if (!data) return error ? html`<${Failure} error=${error} />` : html`<p>Loading…</p>`
  const t = data.totals
  const routes = Object.keys(data.latency).sort()
  const codes = Object.keys(data.authFailures).sort()
  return html`
    ${error && html`<${Failure} error=${error} />`}
    <section class="card" aria-labelledby="h-totals">
      <h2 id="h-totals">Last 15 minutes</h2>
      <p class="muted">Summed over ${data.workers} worker${data.workers === 1 ? '' : 's'}; refreshed every 2 s.</p>
      <dl class="counters">
        <div><dt>Requests</dt><dd data-testid="total-requests">${t.requests}</dd></div>
        ${Object.keys(data.rps).sort().map((cls) => html`<div><dt>${cls}</dt><dd data-testid=${`total-${cls}`}>${t.byStatus[cls] ?? 0}</dd></div>`)}
        <div><dt>Auth failures</dt><dd data-testid="total-auth-failures">${Object.values(t.authFailures).reduce((a, b) => a + b, 0)}</dd></div>
        <div><dt>Rate limited</dt><dd data-testid="total-rate-limited">${t.rateLimited}</dd></div>
      </dl>
    </section>
    <section class="card charts" aria-label="charts">
      <${Chart} title="Requests per second by status class" times=${data.times}
        series=${Object.keys(data.rps).sort().map((cls) => ({ label: cls, color: STATUS_COLORS[cls], values: data.rps[cls] }))} />
      ${routes.length > 0 && html`<${Chart} title="Latency per route (p50, p99)" unit="s" times=${data.times}
        series=${routes.flatMap((r, i) => [
          { label: `${r} p50`, color: COLORS[i % COLORS.length], values: data.latency[r].p50 },
          { label: `${r} p99`, color: COLORS[(i + 3) % COLORS.length], values: data.latency[r].p99 },
        ])} />`}
      <${Chart} title="Authentication failures by code (per 2 s)" times=${data.times}
        series=${codes.length > 0 ? codes.map((c, i) => ({ label: c, color: COLORS[i % COLORS.length], values: data.authFailures[c] })) : [{ label: 'none', values: data.times.map(() => 0) }]} />
      <${Chart} title="Rate-limited requests (per 2 s)" times=${data.times} series=${[{ label: 'rate limited', color: '#b35c00', values: data.rateLimited }]} />
    </section>
    ${Object.keys(t.authFailures).length > 0 && html`
    <section class="card" aria-labelledby="h-codes">
      <h2 id="h-codes">Authentication failures by code</h2>
      <table><thead><tr><th scope="col">Code</th><th scope="col">Count</th></tr></thead>
      <tbody>${Object.entries(t.authFailures).map(([code, n]) => html`<tr><td><code>${code}</code></td><td>${n}</td></tr>`)}</tbody></table>
    </section>`}`
}

// --- explain ---------------------------------------------------------------------------------------------------

const VERDICT_TEXT = { pass: 'passed', reject: 'refused', skip: 'skipped', 'not run': 'not run' }

function Report ({ report }) {
  const d = report.decision
  const verdict = d.forwarded ? 'forwarded to the upstream' : d.allowed ? 'allowed' : `refused: ${d.status} ${d.code}`
  return html`
    <section class="card" aria-labelledby="h-report" data-testid="report">
      <h2 id="h-report">Decision: <span class=${d.forwarded || d.allowed ? 'ok' : 'bad'} data-testid="verdict">${verdict}</span></h2>
      ${d.detail && html`<p>${d.detail}</p>`}
      <dl class="facts">
        <dt>Request</dt><dd><code>${report.request.method} ${report.request.target}</code> on listener ${report.request.listener} (${report.request.scheme})</dd>
        <dt>Path</dt><dd>${report.path.ok ? html`<code>${report.path.normalized}</code>` : `refused: ${report.path.reason}`}</dd>
        <dt>Route</dt><dd data-testid="route">${report.route ? html`${report.route.name} → ${report.route.upstream}${report.route.public ? ' (public)' : ''}` : 'none'}</dd>
      </dl>
      ${report.misses && report.misses.length > 0 && html`
        <h3>Why no route matched</h3>
        <ul>${report.misses.map((m) => html`<li><strong>${m.route}</strong>: ${m.reason}</li>`)}</ul>`}
      ${report.steps.length > 0 && html`
        <h3>Steps</h3>
        <ol class="steps">${report.steps.map((s) => html`
          <li class=${`verdict-${s.verdict.replace(' ', '-')}`} data-verdict=${s.verdict}>
            <strong>${s.anyOf !== undefined ? `anyOf #${s.anyOf + 1}: ` : ''}${s.policy}</strong> — ${VERDICT_TEXT[s.verdict] ?? s.verdict}
            ${s.status ? ` (${s.status} ${s.code})` : ''}${s.detail ? `: ${s.detail}` : ''}
            ${s.identity?.subject ? html` <span class="muted">as ${s.identity.subject}</span>` : ''}
          </li>`)}</ol>`}
      ${report.upstream && html`
        <h3>Upstream request</h3>
        <p><code>${report.upstream.name}</code> ${report.upstream.url} <code>${report.upstream.target}</code></p>`}
      ${report.notes.length > 0 && html`<h3>Notes</h3><ul>${report.notes.map((n) => html`<li>${n}</li>`)}</ul>`}
      ${report.skippedWrites.length > 0 && html`<p class="muted">Not written (explain is read-only): ${report.skippedWrites.join(', ')}</p>`}
    </section>`
}

function Explain () {
  const [report, setReport] = useState(null)
  const [error, setError] = useState(null)
  const [busy, setBusy] = useState(false)
  const submit = async (event) => {
    event.preventDefault()
    const f = event.currentTarget.elements
    setBusy(true)
    setError(null)
    try {
      setReport(await api('/console/api/explain', { method: 'POST', body: { method: f.method.value, url: f.url.value, headers: f.headers.value, listener: f.listener.value } }))
    } catch (e) { setReport(null); setError(e.message) } finally { setBusy(false) }
  }
  return html`
    <section class="card" aria-labelledby="h-explain">
      <h2 id="h-explain">Explain a request</h2>
      <p>What the gateway would do with this request, decided by its own code. Nothing is forwarded, no rate limit is spent.</p>
      <form onSubmit=${submit} class="grid">
        <label for="x-method">Method</label>
        <select id="x-method" name="method">${['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'].map((m) => html`<option>${m}</option>`)}</select>
        <label for="x-url">URL (/path or http(s)://host/path)</label><input id="x-url" name="url" required defaultValue="/" spellcheck="false" />
        <label for="x-headers">Headers (one "Name: value" per line)</label><textarea id="x-headers" name="headers" rows="4" spellcheck="false"></textarea>
        <label for="x-listener">Listener (empty: from the URL)</label><input id="x-listener" name="listener" />
        <span></span><button type="submit" disabled=${busy}>Explain</button>
      </form>
    </section>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${report && html`<${Report} report=${report} />`}`
}

// --- the shell -------------------------------------------------------------------------------------------------

function App () {
  const [signedIn, setSignedIn] = useState(null)
  const [page, setPage] = useState(pageFromHash())
  useEffect(() => {
    onSignedOut = () => setSignedIn(false)
    api('/console/session').then(() => setSignedIn(true), () => setSignedIn(false))
    const onHash = () => setPage(pageFromHash())
    addEventListener('hashchange', onHash)
    return () => removeEventListener('hashchange', onHash)
  }, [])
  useEffect(() => {
    const title = PAGES.find(([p]) => p === page)?.[1]
    document.title = signedIn ? `${title} · authgate console` : 'Sign in · authgate console'
  }, [page, signedIn])
  if (signedIn === null) return html`<main id="main"><p>Loading…</p></main>`
  if (!signedIn) return html`<${SignIn} onSignedIn=${() => setSignedIn(true)} />`
  const signOut = async () => {
    try { await api('/console/session', { method: 'DELETE' }) } finally { setSignedIn(false) }
  }
  const Page = { overview: Overview, routes: Routes, keys: Keys, traffic: Traffic, explain: Explain }[page]
  const title = PAGES.find(([p]) => p === page)[1]
  return html`
    <header class="top">
      <span class="brand">authgate</span>
      <nav aria-label="console pages"><ul>${PAGES.map(([p, label]) => html`
        <li><a href=${`#/${p}`} aria-current=${p === page ? 'page' : undefined}>${label}</a></li>`)}</ul></nav>
      <button type="button" class="signout" onClick=${signOut}>Sign out</button>
    </header>
    <main id="main">
      <h1>${title}</h1>
      <${Page} key=${page} />
    </main>`
}

render(html`<${App} />`, document.getElementById('app'))
