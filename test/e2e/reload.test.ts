/**
 * Hot reload (issue 8): a reload under continuous load fails no request; an invalid file is refused with its
 * positioned errors and the old configuration keeps serving; a change of the watched file reloads, never from a
 * half-written file; SIGHUP reloads a running `authgate start` process.
 */
import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { mkdtemp, open, rename, rm, writeFile } from 'node:fs/promises'
import net, { type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import test, { type ExecutionContext } from 'ava'
import { Agent, fetch as undiciFetch } from 'undici'
import { stringify } from 'yaml'
import { checkConfig } from '../../gateway/config/load.js'
import { hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { startGateway, withDefaults, type TestGateway } from '../helpers/gateway.js'
import { assertProblem, freePort, recordingUpstream, type RecordingUpstream } from './support.js'
import { killChildren, runCli, waitUntilServing } from '../helpers/child.js'
import { until } from '../helpers/until.js'


const sha256 = (text: string) => createHash('sha256').update(text).digest('hex')
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms))


/** The value of one sample on a Prometheus text page (0 when absent). */
function sample (page: string, name: string, labels: string): number {
  const line = page.split('\n').find((l) => l.startsWith(`${name}{${labels}}`))
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0
}

async function reloads (gw: TestGateway, result: 'success' | 'failure'): Promise<number> {
  const page = await (await fetch(`${gw.adminUrl}/metrics`)).text()
  return sample(page, 'authgate_config_reloads_total', `result="${result}"`)
}

async function readyz (adminUrl: string): Promise<{ status: string, config: { hash: string, loadedAt: string } }> {
  const res = await fetch(`${adminUrl}/readyz`)
  if (res.status !== 200) throw new Error(`/readyz answered ${res.status}`)
  return await res.json() as { status: string, config: { hash: string, loadedAt: string } }
}

/** Log entries (pino JSON lines) whose message starts with `prefix`. */
function logEntries (logs: string, prefix: string): Array<Record<string, unknown>> {
  return logs.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((e) => typeof e.msg === 'string' && e.msg.startsWith(prefix))
}

interface Key { id: string, key: string }

/**
 * Two configurations that differ where requests can see it: `a` forwards /v1/** to the upstream under /a and has
 * no /extra; `b` forwards under /b and adds the public route /extra before the keyed one.
 */
function variant (name: 'a' | 'b', upstream: RecordingUpstream, key: Key): Record<string, unknown> {
  const keyed = { name: 'keyed', match: { path: '/v1/**' }, upstream: 'app', policies: [{ apiKey: {} }] }
  return {
    upstreams: { app: { url: `${upstream.url}/${name}` } },
    apiKeys: [{ id: key.id, hash: hashApiKey(key.key), client: 'reload-client', scopes: [] }],
    routes: name === 'a' ? [keyed] : [{ name: 'extra', match: { path: '/extra' }, upstream: 'app', public: true }, keyed],
  }
}

interface Outcome { status: number, url: string, error?: string }

/**
 * Clients that send keyed requests back to back until stopped: `keepAlive` loops each on one keep-alive
 * connection, plus one loop that opens a new connection for every request. Every outcome is recorded.
 */
function load (base: string, key: string, keepAlive = 3): { outcomes: Outcome[], stop: () => Promise<void> } {
  const outcomes: Outcome[] = []
  let stopped = false
  const once = async (agent: Agent): Promise<void> => {
    try {
      const res = await undiciFetch(`${base}/v1/orders`, { headers: { 'x-api-key': key }, dispatcher: agent })
      const text = await res.text()
      let url = ''
      try { url = (JSON.parse(text) as { url?: string }).url ?? '' } catch {}
      outcomes.push({ status: res.status, url, ...(res.status === 200 ? {} : { error: text }) })
    } catch (error) {
      outcomes.push({ status: 0, url: '', error: String((error as Error).cause ?? error) })
    }
  }
  const shared = Array.from({ length: keepAlive }, () => new Agent({ keepAliveTimeout: 30_000 }))
  const runs = [
    ...shared.map(async (agent) => { while (!stopped) await once(agent) }),
    (async () => {
      while (!stopped) {
        const agent = new Agent({ pipelining: 0 })
        await once(agent)
        await agent.close()
      }
    })(),
  ]
  return {
    outcomes,
    async stop () {
      stopped = true
      await Promise.all(runs)
      await Promise.all(shared.map(async (a) => await a.close()))
    },
  }
}

function failures (outcomes: readonly Outcome[]): Outcome[] {
  return outcomes.filter((o) => o.status !== 200)
}

test('ten reloads under continuous keep-alive and fresh-connection load fail no request, and each new configuration takes effect at once', async (t) => {
  t.timeout(120_000)
  const upstream = await recordingUpstream()
  const key = newApiKey()
  const gw = await startGateway(variant('a', upstream, key))
  const traffic = load(gw.url, key.key)
  try {
    await until(() => traffic.outcomes.length >= 20, { timeoutMs: 15_000, message: 'the first requests' })
    const extra = await gw.fetch('/extra')
    await assertProblem(t, extra, 404, 'no_route')

    for (let i = 1; i <= 10; i++) {
      const next = i % 2 === 1 ? 'b' : 'a'
      const before = traffic.outcomes.length
      const result = await gw.reload(variant(next, upstream, key))
      t.deepEqual(result, { ok: true, changed: true }, `reload ${i}`)

      // The swap is done when reload() resolves: the very next request sees the new route set and upstream prefix.
      const added = await gw.fetch('/extra')
      if (next === 'b') {
        t.is(added.status, 200, `reload ${i}: /extra is served by configuration b`)
        t.is((await added.json() as { url: string }).url, '/b/extra')
      } else {
        await assertProblem(t, added, 404, 'no_route')
      }
      const keyed = await gw.fetch('/v1/orders', { headers: { 'x-api-key': key.key } })
      t.is(keyed.status, 200)
      t.is((await keyed.json() as { url: string }).url, `/${next}/v1/orders`)

      // Let the clients run across the swap before the next one.
      await until(() => traffic.outcomes.length >= before + 20, { timeoutMs: 15_000, message: `requests after reload ${i}` })
    }
  } finally {
    await traffic.stop()
  }
  try {
    const { outcomes } = traffic
    t.true(outcomes.length >= 220, `${outcomes.length} requests`)
    t.deepEqual(failures(outcomes), [], 'no request failed during the reloads')
    // Both generations served the load, and nothing else did.
    t.true(outcomes.some((o) => o.url === '/a/v1/orders'))
    t.true(outcomes.some((o) => o.url === '/b/v1/orders'))
    t.deepEqual(outcomes.filter((o) => o.url !== '/a/v1/orders' && o.url !== '/b/v1/orders'), [])
    t.is(await reloads(gw, 'success'), 10)
    t.is(await reloads(gw, 'failure'), 0)
  } finally {
    await gw.close()
    await upstream.close()
  }
})

/** gateway.yaml as text, so that positions are known: the policy name sits on line 20, column 9. */
function keyedYaml (upstream: RecordingUpstream, key: Key, prefix: string, policy = 'apiKey', upstreamLine = 'upstream: app'): string {
  return `version: 1
listeners:
  - name: local
    address: "127.0.0.1:0"
admin:
  address: "127.0.0.1:0"
upstreams:
  app:
    url: "${upstream.url}/${prefix}"
apiKeys:
  - id: ${key.id}
    hash: "${hashApiKey(key.key)}"
    client: reload-client
    scopes: []
routes:
  - name: keyed
    match: { path: "/v1/**" }
    ${upstreamLine}
    policies:
      - ${policy}: {}
`
}

async function rejectedReload (t: ExecutionContext, gw: TestGateway, text: string, where: { line: number, col: number, message: RegExp }, failuresBefore: number): Promise<void> {
  await writeFile(gw.configFile, text)
  const result = await gw.gateway.reload()
  if (result.ok) { t.fail('the invalid configuration was accepted'); return }
  const issue = result.issues.find((i) => i.severity === 'error' && i.line === where.line && i.col === where.col)
  t.truthy(issue, JSON.stringify(result.issues))
  t.regex(issue?.message ?? '', where.message)
  t.is(issue?.file, gw.configFile)
  // The log names the position, so an operator finds the mistake.
  const logged = logEntries(gw.rawLogs(), 'config reload rejected')
  t.true(logged.some((e) => e.line === where.line && e.col === where.col && e.file === gw.configFile && where.message.test(String(e.msg))),
    JSON.stringify(logged))
  t.is(await reloads(gw, 'failure'), failuresBefore + 1)
}

test('an invalid reload (YAML syntax, then an unknown policy) is refused with positioned errors while the old configuration keeps serving; a valid one then applies', async (t) => {
  const upstream = await recordingUpstream()
  const key = newApiKey()
  const gw = await startGateway({ routes: [{ name: 'placeholder', match: { path: '/x' }, upstream: 'demo', public: true }] })
  try {
    // Start from a known text, so the hash /readyz shows can be computed here.
    const original = keyedYaml(upstream, key, 'old')
    await writeFile(gw.configFile, original)
    t.deepEqual(await gw.gateway.reload(), { ok: true, changed: true })
    const served = async (): Promise<string> => {
      const res = await gw.fetch('/v1/orders', { headers: { 'x-api-key': key.key } })
      t.is(res.status, 200)
      return (await res.json() as { url: string }).url
    }
    t.is(await served(), '/old/v1/orders')
    t.is((await readyz(gw.adminUrl)).config.hash, sha256(original))
    const successes = await reloads(gw, 'success')

    await rejectedReload(t, gw, keyedYaml(upstream, key, 'new', 'apiKey', 'upstream: app: x'),
      { line: 18, col: 15, message: /YAML: Nested mappings are not allowed/ }, 0)
    t.is(await served(), '/old/v1/orders')
    t.is((await readyz(gw.adminUrl)).config.hash, sha256(original))

    await rejectedReload(t, gw, keyedYaml(upstream, key, 'new', 'apiKye'), { line: 20, col: 9, message: /apiKye/ }, 1)
    t.is(await served(), '/old/v1/orders')
    t.is((await readyz(gw.adminUrl)).config.hash, sha256(original))
    t.is(await reloads(gw, 'success'), successes)

    // The positive twin: the corrected file applies, and /readyz and the info metric show its hash.
    const fixed = keyedYaml(upstream, key, 'new')
    await writeFile(gw.configFile, fixed)
    t.deepEqual(await gw.gateway.reload(), { ok: true, changed: true })
    t.is(await served(), '/new/v1/orders')
    const ready = await readyz(gw.adminUrl)
    t.is(ready.config.hash, sha256(fixed))
    t.true(Math.abs(Date.parse(ready.config.loadedAt) - Date.now()) < 60_000)
    t.is(await reloads(gw, 'success'), successes + 1)
    t.is(await reloads(gw, 'failure'), 2)
    const page = await (await fetch(`${gw.adminUrl}/metrics`)).text()
    t.true(sample(page, 'authgate_config_info', `hash="${sha256(fixed).slice(0, 12)}"`) > 0, page)
    t.is(sample(page, 'authgate_config_info', `hash="${sha256(original).slice(0, 12)}"`), 0)
  } finally {
    await gw.close()
    await upstream.close()
  }
})

test('a watched config file reloads within about 2 s after an atomic rename and after an in-place write', async (t) => {
  t.timeout(60_000)
  const upstream = await recordingUpstream()
  const key = newApiKey()
  const gw = await startGateway(variant('a', upstream, key), { watch: true })
  try {
    await assertProblem(t, await gw.fetch('/extra'), 404, 'no_route')

    // As editors save: write a temporary file in the same folder, then rename it over the config.
    const temp = join(gw.dir, '.gateway.yaml.swp')
    await writeFile(temp, stringify(withDefaults(variant('b', upstream, key))))
    let started = Date.now()
    await rename(temp, gw.configFile)
    await until(async () => (await gw.fetch('/extra')).status === 200, { timeoutMs: 15_000, message: '/extra after the rename' })
    let elapsed = Date.now() - started
    t.true(elapsed < 4_000, `applied after ${elapsed} ms`)

    // In place (truncate, write): the route goes away again.
    started = Date.now()
    await writeFile(gw.configFile, stringify(withDefaults(variant('a', upstream, key))))
    await until(async () => (await gw.fetch('/extra')).status === 404, { timeoutMs: 15_000, message: '/extra gone after the in-place write' })
    elapsed = Date.now() - started
    t.true(elapsed < 4_000, `applied after ${elapsed} ms`)
    const keyed = await gw.fetch('/v1/orders', { headers: { 'x-api-key': key.key } })
    t.is((await keyed.json() as { url: string }).url, '/a/v1/orders')
  } finally {
    await gw.close()
    await upstream.close()
  }
})

test('a config file written in two parts 100 ms apart is applied only whole, never in its truncated form', async (t) => {
  t.timeout(60_000)
  const upstream = await recordingUpstream()
  const key = newApiKey()
  const old = withDefaults(variant('a', upstream, key))
  // The new file lists /extra before /keyed; cut just before /keyed, it is a valid configuration without /keyed.
  const next = withDefaults({ ...variant('b', upstream, key), upstreams: { app: { url: `${upstream.url}/a` } } })
  const text = stringify(next)
  const cut = text.indexOf('  - name: keyed')
  t.true(cut > 0)
  const firstPart = text.slice(0, cut)

  // The truncated form would be accepted if it were applied: that is what makes this test mean something.
  const scratch = await mkdtemp(join(tmpdir(), 'authgate-half-'))
  try {
    await writeFile(join(scratch, 'gateway.yaml'), firstPart)
    const truncated = checkConfig(join(scratch, 'gateway.yaml'))
    t.deepEqual(truncated.config?.doc.routes.map((r) => r.name), ['extra'], JSON.stringify(truncated.issues))
  } finally {
    await rm(scratch, { recursive: true, force: true })
  }

  const gw = await startGateway(old, { watch: true })
  const traffic = load(gw.url, key.key, 2)
  try {
    await until(() => traffic.outcomes.length >= 10, { timeoutMs: 15_000, message: 'the first requests' })
    const file = await open(gw.configFile, 'w')
    try {
      await file.write(firstPart)
      await file.sync()
      await delay(100)
      await file.write(text.slice(cut))
    } finally {
      await file.close()
    }
    // The whole new file applies: /extra appears; /keyed (absent from the truncated form) never stopped answering.
    await until(async () => (await gw.fetch('/extra')).status === 200, { timeoutMs: 15_000, message: '/extra after the write' })
    const before = traffic.outcomes.length
    await until(() => traffic.outcomes.length >= before + 10, { timeoutMs: 15_000, message: 'requests after the reload' })
  } finally {
    await traffic.stop()
  }
  try {
    t.deepEqual(failures(traffic.outcomes), [], 'the keyed route answered throughout')
    const applied = logEntries(gw.rawLogs(), 'config reloaded').map((e) => e.hash)
    t.true(applied.includes(sha256(text).slice(0, 12)), JSON.stringify(applied))
    t.false(applied.includes(sha256(firstPart).slice(0, 12)), 'the truncated file was never applied')
    t.is((await readyz(gw.adminUrl)).config.hash, sha256(text))
  } finally {
    await gw.close()
    await upstream.close()
  }
})

test('a reload asked for while another one runs is not lost: the file written in between is applied after it', async (t) => {
  const upstream = await recordingUpstream()
  const key = newApiKey()
  const gw = await startGateway(variant('a', upstream, key))
  try {
    const b = stringify(withDefaults(variant('b', upstream, key)))
    const a = stringify(withDefaults({ ...variant('a', upstream, key), realm: 'second' }))
    // The first reload reads the file at once; the second request comes while it is still being applied.
    writeFileSync(gw.configFile, b)
    const first = gw.gateway.reload()
    writeFileSync(gw.configFile, a)
    const second = gw.gateway.reload()
    t.deepEqual(await first, { ok: true, changed: true })
    t.deepEqual(await second, { ok: true, changed: true })
    t.is(gw.gateway.currentConfig.hash, sha256(a))
    t.is((await readyz(gw.adminUrl)).config.hash, sha256(a))
    await assertProblem(t, await gw.fetch('/extra'), 404, 'no_route')
    t.is(await reloads(gw, 'success'), 2)

    // The twin: reloads asked for one after the other each apply.
    writeFileSync(gw.configFile, b)
    t.deepEqual(await gw.gateway.reload(), { ok: true, changed: true })
    t.is((await gw.fetch('/extra')).status, 200)
  } finally {
    await gw.close()
    await upstream.close()
  }
})

test('a reload that adds a listener on a port already in use is refused while the old configuration keeps serving; with the port free it applies', async (t) => {
  const upstream = await recordingUpstream()
  const key = newApiKey()
  const busy = net.createServer()
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r))
  const port = (busy.address() as AddressInfo).port
  const gw = await startGateway(variant('a', upstream, key))
  try {
    const original = gw.gateway.currentConfig.hash
    const next = { ...variant('b', upstream, key), listeners: [{ name: 'local', address: '127.0.0.1:0' }, { name: 'second', address: `127.0.0.1:${port}` }] }
    const result = await gw.reload(next)
    t.false(result.ok)
    if (!result.ok) t.regex(result.issues.map((i) => i.message).join('\n'), /EADDRINUSE/)
    t.true(logEntries(gw.rawLogs(), 'config reload rejected').length > 0)
    t.is(await reloads(gw, 'failure'), 1)
    await assertProblem(t, await gw.fetch('/extra'), 404, 'no_route')
    t.is((await gw.fetch('/v1/orders', { headers: { 'x-api-key': key.key } })).status, 200)
    t.is((await readyz(gw.adminUrl)).config.hash, original)
    t.deepEqual(gw.gateway.listeners.map((l) => l.name), ['local'])

    // The twin: the port is free now, and the same file applies with both listeners.
    await new Promise((r) => busy.close(r))
    t.deepEqual(await gw.gateway.reload(), { ok: true, changed: true })
    t.deepEqual(gw.gateway.listeners.map((l) => l.name), ['local', 'second'])
    t.is((await fetch(`http://127.0.0.1:${port}/extra`)).status, 200)
    t.is((await gw.fetch('/extra')).status, 200)
  } finally {
    busy.close()
    await gw.close()
    await upstream.close()
  }
})

test('a listener renamed on the same port, or given a second listener, keeps answering on its port across the reload', async (t) => {
  const upstream = await recordingUpstream()
  const key = newApiKey()
  const [port, second] = [await freePort(), await freePort()]
  const gw = await startGateway({ ...variant('a', upstream, key), listeners: [{ name: 'local', address: `127.0.0.1:${port}` }] })
  try {
    const renamed = { ...variant('b', upstream, key), listeners: [{ name: 'renamed', address: `127.0.0.1:${port}` }] }
    t.deepEqual(await gw.reload(renamed), { ok: true, changed: true })
    t.deepEqual(gw.gateway.listeners, [{ name: 'renamed', url: `http://127.0.0.1:${port}` }])
    t.is((await fetch(`http://127.0.0.1:${port}/extra`)).status, 200)

    const both = { ...renamed, listeners: [...renamed.listeners, { name: 'second', address: `127.0.0.1:${second}` }] }
    t.deepEqual(await gw.reload(both), { ok: true, changed: true })
    t.is((await fetch(`http://127.0.0.1:${port}/extra`)).status, 200)
    t.is((await fetch(`http://127.0.0.1:${second}/extra`)).status, 200)
  } finally {
    await gw.close()
    await upstream.close()
  }
})

// ---- a real `authgate start` process ----

test.after.always(killChildren)


test('SIGHUP makes a running authgate process reload: the same file gets a new load time, a changed file its new hash', async (t) => {
  t.timeout(120_000)
  const upstream = await recordingUpstream()
  const key = newApiKey()
  const [port, adminPort] = [await freePort(), await freePort()]
  const dir = await mkdtemp(join(tmpdir(), 'authgate-sighup-'))
  const file = join(dir, 'gateway.yaml')
  const adminUrl = `http://127.0.0.1:${adminPort}`
  const config = (name: 'a' | 'b') => stringify({
    ...withDefaults(variant(name, upstream, key)),
    listeners: [{ name: 'local', address: `127.0.0.1:${port}` }],
    admin: { address: `127.0.0.1:${adminPort}` },
  })
  await writeFile(file, config('a'))
  const child = runCli(['start', '-c', file])
  try {
    await waitUntilServing(child, `${adminUrl}/healthz`)
    const first = await readyz(adminUrl)
    t.is(first.config.hash, sha256(config('a')))
    t.is((await fetch(`http://127.0.0.1:${port}/extra`)).status, 404)

    // Nothing on disk changed, so no file watcher fires: only the signal can give a new load time.
    child.process.kill('SIGHUP')
    const again = await until(async () => { const r = await readyz(adminUrl); return r.config.loadedAt !== first.config.loadedAt ? r : undefined }, { timeoutMs: 15_000, message: 'a new load time after SIGHUP' })
    t.is(again.config.hash, first.config.hash)
    t.true(Date.parse(again.config.loadedAt) > Date.parse(first.config.loadedAt))

    // A changed file, then SIGHUP: the new hash and the new route.
    await writeFile(file, config('b'))
    child.process.kill('SIGHUP')
    await until(async () => (await readyz(adminUrl)).config.hash === sha256(config('b')), { timeoutMs: 15_000, message: 'the new hash after SIGHUP' })
    const res = await fetch(`http://127.0.0.1:${port}/extra`)
    t.is(res.status, 200)
    t.is((await res.json() as { url: string }).url, '/b/extra')
    t.is(child.process.exitCode, null, 'still running')
  } finally {
    child.process.kill('SIGKILL')
    await child.exited
    await upstream.close()
    await rm(dir, { recursive: true, force: true })
  }
})

test('a reload applies new request limits to listeners that stay open: a head that passed before is 431 after', async (t) => {
  const base = { routes: [{ name: 'open', match: { path: '/**' }, upstream: 'demo', public: true }] }
  const gw = await startGateway(base)
  t.teardown(() => gw.close())
  const big = { 'x-padding': 'p'.repeat(4096) }
  t.is((await gw.fetch('/x', { headers: big })).status, 200)
  const result = await gw.reload({ ...base, limits: { maxHeaderBytes: '2KiB' } })
  t.true(result.ok)
  const res = await gw.fetch('/x', { headers: big })
  t.is(res.status, 431)
  t.is(((await res.json()) as { error: string }).error, 'headers_too_large')
  t.is((await gw.fetch('/x')).status, 200)
})
