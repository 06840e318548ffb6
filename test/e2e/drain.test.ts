/**
 * Graceful shutdown (issue 8): closing stops accepting at once, lets a request in flight finish up to the deadline
 * and cuts it past the deadline; SIGTERM does the same for a running process and exits 0; `workers: 2` serves,
 * reloads both workers on SIGHUP and exits 0 on SIGTERM.
 */
import { createHash } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import test from 'ava'
import { stringify } from 'yaml'
import { startGateway } from '../helpers/gateway.js'
import { freePort, probe, recordingUpstream, type RecordingUpstream } from './support.js'
import { killChildren, runCli, waitUntilServing, type Child } from '../helpers/child.js'
import { until } from '../helpers/until.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'


const sha256 = (text: string) => createHash('sha256').update(text).digest('hex')


/** A 64 KiB body whose every byte is known, so a cut answer cannot pass for a whole one. */
const BODY = Buffer.alloc(64 * 1024, 'abcdefghijklmnopqrstuvwxyz0123456789\n').toString()

/**
 * An upstream that answers /slow after `slowMs` (the time of that answer is recorded), /hold never, and anything
 * else at once.
 */
async function slowUpstream (slowMs = 1_500): Promise<RecordingUpstream & { answeredAt: () => number | undefined }> {
  let answeredAt: number | undefined
  const timers = new Set<NodeJS.Timeout>()
  const upstream = await recordingUpstream((req, res) => {
    req.resume()
    const answer = () => {
      if (req.url?.startsWith('/slow')) answeredAt = Date.now()
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(BODY) })
      res.end(BODY)
    }
    if (req.url?.startsWith('/slow')) timers.add(setTimeout(answer, slowMs))
    else if (!req.url?.startsWith('/hold')) answer()
  })
  const close = upstream.close.bind(upstream)
  return Object.assign(upstream, {
    answeredAt: () => answeredAt,
    close: async () => { for (const timer of timers) clearTimeout(timer); await close() },
  })
}

/** A GET on a connection of its own; resolves with the status and whole body, or with the connection error. */
function get (url: string, headers: Record<string, string> = {}): Promise<{ status: number, body: string, endedAt: number } | { error: string }> {
  return new Promise((resolvePromise) => {
    const req = http.get(url, { agent: false, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), endedAt: Date.now() }))
      res.on('error', (error) => resolvePromise({ error: (error as NodeJS.ErrnoException).code ?? error.message }))
      res.on('aborted', () => resolvePromise({ error: 'aborted' }))
    })
    req.on('error', (error: NodeJS.ErrnoException) => resolvePromise({ error: error.code ?? error.message }))
  })
}

/** 'connected', or the error code of a TCP connection attempt. */
function connect (url: string): Promise<string> {
  const { hostname, port } = new URL(url)
  return new Promise((resolvePromise) => {
    const socket = net.connect({ host: hostname, port: Number(port) })
    socket.once('connect', () => { socket.destroy(); resolvePromise('connected') })
    socket.once('error', (error: NodeJS.ErrnoException) => resolvePromise(error.code ?? error.message))
  })
}

function slowConfig (upstream: RecordingUpstream): Record<string, unknown> {
  return {
    upstreams: { slow: { url: upstream.url } },
    routes: [{ name: 'slow', match: { path: '/**' }, upstream: 'slow', public: true }],
  }
}

test('close() lets a request in flight finish with its whole body, refuses new connections at once, and resolves after that request', async (t) => {
  const upstream = await slowUpstream()
  const gw = await startGateway(slowConfig(upstream))
  try {
    t.is(await connect(gw.url), 'connected')
    t.is((await fetch(`${gw.adminUrl}/readyz`)).status, 200)
    const id = probe()
    const inFlight = get(`${gw.url}/slow`, { 'x-probe': id })
    await upstream.arrival(id)

    let closedAt: number | undefined
    const closing = gw.gateway.close(5_000).then(() => { closedAt = Date.now() })
    // Not accepting any more while the slow request is still running.
    t.is(await connect(gw.url), 'ECONNREFUSED')
    t.is(upstream.answeredAt(), undefined, 'the slow request is still in flight')
    // Balancers see the drain: /readyz is 503 "draining" while the request finishes.
    const ready = await fetch(`${gw.adminUrl}/readyz`)
    t.is(ready.status, 503)
    t.like(await ready.json(), { status: 'draining' })

    const res = await inFlight
    if (!('status' in res)) { t.fail(`the in-flight request failed: ${res.error}`); return }
    t.is(res.status, 200)
    t.is(res.body.length, BODY.length)
    t.true(res.body === BODY, 'the whole body arrived')
    await closing
    t.true(closedAt! >= upstream.answeredAt()!, 'close() resolved only after the upstream answered')
    t.true(closedAt! - upstream.answeredAt()! < 2_000, `close() resolved ${closedAt! - upstream.answeredAt()!} ms after the answer`)
  } finally {
    await gw.close()
    await upstream.close()
  }
})

test('close() with a 200 ms deadline cuts a slower request and resolves within about a second', async (t) => {
  const upstream = await slowUpstream()
  const gw = await startGateway(slowConfig(upstream))
  try {
    // The twin first: with nothing slow in flight, the same gateway answers.
    const quick = await get(`${gw.url}/quick`)
    t.is('status' in quick && quick.status, 200)

    const id = probe()
    const inFlight = get(`${gw.url}/slow`, { 'x-probe': id })
    const seen = await upstream.arrival(id)
    const started = Date.now()
    await gw.gateway.close(200)
    const elapsed = Date.now() - started
    t.true(elapsed >= 150, `close() resolved after ${elapsed} ms, before the deadline`)
    t.true(elapsed < 1_500, `close() resolved after ${elapsed} ms`)

    const res = await inFlight
    t.true('error' in res, `the client saw a connection error, not ${JSON.stringify(res).slice(0, 100)}`)
    t.is(upstream.answeredAt(), undefined, 'cut before the upstream answered')
    // The upstream request was abandoned too: its connection from the gateway closes.
    await seen.settled
    t.is(await connect(gw.url), 'ECONNREFUSED')
  } finally {
    await gw.close()
    await upstream.close()
  }
})

// ---- a real `authgate start` process ----

test.after.always(killChildren)


/** Resolves with the exit code, or fails when the process is still running after `ms`. */
async function exitWithin (child: Child, ms: number): Promise<number | string> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`still running ${ms} ms after the signal:\n${child.output()}`)), ms)
  })
  try {
    return await Promise.race([child.exited, late])
  } finally {
    clearTimeout(timer)
  }
}

async function childConfig (config: Record<string, unknown>): Promise<{ dir: string, file: string, text: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-drain-'))
  const file = join(dir, 'gateway.yaml')
  const text = stringify(config)
  await writeFile(file, text)
  return { dir, file, text }
}

test('SIGTERM with a request held past shutdownTimeout (300ms) cuts it and still exits 0 within a few seconds', async (t) => {
  t.timeout(120_000)
  const upstream = await slowUpstream()
  const [port, adminPort] = [await freePort(), await freePort()]
  const { dir, file } = await childConfig({
    version: 1,
    listeners: [{ name: 'local', address: `127.0.0.1:${port}` }],
    admin: { address: `127.0.0.1:${adminPort}` },
    shutdownTimeout: '300ms',
    ...slowConfig(upstream),
  })
  const child = runCli(['start', '-c', file])
  try {
    await waitUntilServing(child, `http://127.0.0.1:${adminPort}/healthz`)
    const quick = await get(`http://127.0.0.1:${port}/quick`)
    t.is('status' in quick && quick.status, 200)

    const id = probe()
    const held = get(`http://127.0.0.1:${port}/hold`, { 'x-probe': id })
    await upstream.arrival(id)
    const started = Date.now()
    child.process.kill('SIGTERM')
    const res = await held
    t.true('error' in res, `the held request was cut, not ${JSON.stringify(res).slice(0, 100)}`)
    t.true(Date.now() - started >= 250, 'not before the deadline')
    t.is(await exitWithin(child, 10_000), 0, child.output())
    t.regex(child.output(), /draining in-flight requests/)
  } finally {
    child.process.kill('SIGKILL')
    await upstream.close()
    await rm(dir, { recursive: true, force: true })
  }
})

/** How many gateways (workers) of this process logged that they started. */
function started (child: Child): number {
  return child.output().split('"msg":"authgate started"').length - 1
}

/** /readyz over a new connection each time, so that the primary hands it to the next worker. */
async function readyz (adminUrl: string): Promise<{ hash: string, loadedAt: string }> {
  const res = await get(`${adminUrl}/readyz`)
  if (!('status' in res) || res.status !== 200) throw new Error(`/readyz: ${JSON.stringify(res).slice(0, 200)}`)
  return (JSON.parse(res.body) as { config: { hash: string, loadedAt: string } }).config
}

/** True when `count` /readyz answers in a row (so from every worker) satisfy `check`. */
async function allWorkers (adminUrl: string, check: (config: { hash: string, loadedAt: string }) => boolean, count = 8): Promise<boolean> {
  try {
    for (let i = 0; i < count; i++) if (!check(await readyz(adminUrl))) return false
    return true
  } catch {
    return false // not ready yet (503 while a worker's store connects): asked again
  }
}

test('workers: 2 serves requests, reloads every worker on SIGHUP to the primary, and exits 0 on SIGTERM', async (t) => {
  t.timeout(180_000)
  const upstream = await slowUpstream()
  const [port, adminPort] = [await freePort(), await freePort()]
  // Workers need a shared store (`check` refuses workers > 1 with the in-process one).
  const redis = await startRedis()
  const base = {
    version: 1,
    workers: 2,
    store: { redis: redis.url, prefix: uniquePrefix('drain-workers') },
    listeners: [{ name: 'local', address: `127.0.0.1:${port}` }],
    admin: { address: `127.0.0.1:${adminPort}` },
    upstreams: { app: { url: upstream.url } },
    routes: [{ name: 'app', match: { path: '/v1/**' }, upstream: 'app', public: true }],
  }
  const { dir, file, text } = await childConfig(base)
  const adminUrl = `http://127.0.0.1:${adminPort}`
  const child = runCli(['start', '-c', file])
  try {
    await waitUntilServing(child, `${adminUrl}/healthz`)
    await until(() => started(child) === 2, { timeoutMs: 90_000, message: 'both workers started' })
    // Each worker's store connects in the background: /readyz is 503 until it has.
    await until(() => allWorkers(adminUrl, (c) => c.hash === sha256(text)), { timeoutMs: 15_000, message: 'every worker ready on the file\'s hash' })
    for (let i = 0; i < 10; i++) {
      const res = await get(`http://127.0.0.1:${port}/v1/quick`)
      t.is('status' in res && res.status, 200)
    }
    const before = new Set<string>()
    for (let i = 0; i < 8; i++) before.add((await readyz(adminUrl)).loadedAt)
    t.true(before.size >= 1 && before.size <= 2, [...before].join(', '))

    // The file has not changed: a new load time on every worker comes from the signal alone.
    child.process.kill('SIGHUP')
    await until(() => allWorkers(adminUrl, (c) => !before.has(c.loadedAt) && c.hash === sha256(text)), { timeoutMs: 15_000, message: 'every worker reloaded after SIGHUP' })

    // A changed file, then SIGHUP: every worker serves it.
    const next = stringify({ ...base, routes: [{ name: 'extra', match: { path: '/extra' }, upstream: 'app', public: true }, ...base.routes] })
    await writeFile(file, next)
    child.process.kill('SIGHUP')
    await until(() => allWorkers(adminUrl, (c) => c.hash === sha256(next)), { timeoutMs: 15_000, message: 'every worker on the new hash' })
    for (let i = 0; i < 6; i++) {
      const res = await get(`http://127.0.0.1:${port}/extra`)
      t.is('status' in res && res.status, 200)
    }

    child.process.kill('SIGTERM')
    t.is(await exitWithin(child, 15_000), 0, child.output())
    t.is(started(child), 2, 'no worker was replaced')
    t.is(await connect(`http://127.0.0.1:${port}`), 'ECONNREFUSED')
  } finally {
    child.process.kill('SIGKILL')
    await upstream.close()
    await redis.stop()
    await rm(dir, { recursive: true, force: true })
  }
})

test('workers: 2 told to stop while a worker is still starting exits 0 all the same', async (t) => {
  t.timeout(180_000)
  const [port, adminPort] = [await freePort(), await freePort()]
  const redis = await startRedis()
  const { dir, file } = await childConfig({
    version: 1,
    workers: 2,
    store: { redis: redis.url, prefix: uniquePrefix('drain-workers') },
    listeners: [{ name: 'local', address: `127.0.0.1:${port}` }],
    admin: { address: `127.0.0.1:${adminPort}` },
    upstreams: { demo: { echo: true } },
    routes: [{ name: 'echo', match: { path: '/**' }, upstream: 'demo', public: true }],
  })
  const child = runCli(['start', '-c', file])
  try {
    // SIGTERM as soon as the first worker serves: the other is then usually still loading.
    await until(() => started(child) >= 1 || child.process.exitCode !== null, { timeoutMs: 90_000, message: 'a worker started' })
    child.process.kill('SIGTERM')
    t.is(await exitWithin(child, 30_000), 0, child.output())
    t.is(await connect(`http://127.0.0.1:${port}`), 'ECONNREFUSED')
  } finally {
    child.process.kill('SIGKILL')
    await redis.stop()
    await rm(dir, { recursive: true, force: true })
  }
})
