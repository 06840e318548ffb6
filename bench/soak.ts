/**
 * Soak: a mixed load for a long time, watching the gateway's memory, event loop and open handles.
 *
 *   node --import tsx bench/soak.ts                       # 10 minutes (the default)
 *   node --import tsx bench/soak.ts --duration 60         # the 60-second mode
 *   node --import tsx bench/soak.ts --duration 25 --interval 2 --json   # what test/faults/soak.test.ts runs
 *
 * Options: --duration S (default 600), --interval S between samples (default 5), --warmup S (default a quarter of
 * the duration, 5..60), --concurrency N closed-loop clients (default 16), --rps N (cap; default none),
 * --in-process (gateway in this process instead of a child: its figures then include the load generator),
 * --json (print the summary as one JSON object), --max-growth PCT (default 10).
 *
 * The gateway runs in a child process (fork, IPC) from source, with an `info` access log written to /dev/null and the
 * in-process memory store. Routes: public (to a node:http upstream in this process), API key + rate limit (echo),
 * and the load mixes public 30%, good key 30%, bad keys 15% (random well-formed keys: each one new, which is what
 * fills caches of refusals), unmatched paths 10% (404) and refused paths 15% (400); 10% of the requests open a new
 * connection. Every `--interval` the child reports RSS, heap (after a forced GC), event-loop delay (p50/p99/max from
 * perf_hooks.monitorEventLoopDelay) and process.getActiveResourcesInfo().
 *
 * Exit 1 when, after the warm-up, RSS grows by more than --max-growth percent, when open handles keep growing, or
 * when any request got an unexpected answer (a 5xx, a wrong status, a connection error).
 */
import { fork, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import http, { type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { pino } from 'pino'
import { Agent, request } from 'undici'
import { stringify } from 'yaml'
import { Gateway } from '../gateway/gateway.js'
import { Metrics } from '../gateway/metrics.js'
import { hashApiKey, newApiKey, newKeySecret } from '../policies/api-key/format.js'

export interface Sample {
  /** Seconds since the load started. */
  t: number
  rssMB: number
  heapUsedMB: number
  heapTotalMB: number
  externalMB: number
  loopDelayP50Ms: number
  loopDelayP99Ms: number
  loopDelayMaxMs: number
  handles: number
  handleTypes: Record<string, number>
  requests: number
}

export interface Summary {
  ok: boolean
  durationS: number
  warmupS: number
  requests: number
  requestsPerSecond: number
  unexpected: number
  unexpectedExamples: string[]
  statuses: Record<string, number>
  rss: { baseMB: number, endMB: number, growthPct: number, maxMB: number }
  heapUsed: { baseMB: number, endMB: number }
  handles: { base: number, end: number, max: number, growing: boolean }
  loopDelay: { p99MaxMs: number, maxMs: number }
  failures: string[]
  samples: Sample[]
}

interface Options {
  durationS: number
  intervalS: number
  warmupS: number
  concurrency: number
  rps: number | undefined
  inProcess: boolean
  json: boolean
  maxGrowthPct: number
}

function parseOptions (argv: readonly string[]): Options {
  const value = (name: string): string | undefined => {
    const i = argv.indexOf(name)
    return i === -1 ? undefined : argv[i + 1]
  }
  const number = (name: string, fallback: number): number => {
    const text = value(name)
    if (text === undefined) return fallback
    const n = Number(text)
    if (!Number.isFinite(n) || n <= 0) throw new RangeError(`${name} needs a positive number, not ${JSON.stringify(text)}`)
    return n
  }
  const durationS = number('--duration', 600)
  if (durationS > 24 * 3600) throw new RangeError('--duration is at most 86400 seconds')
  return {
    durationS,
    intervalS: number('--interval', 5),
    warmupS: number('--warmup', Math.min(60, Math.max(5, durationS / 4))),
    concurrency: Math.floor(number('--concurrency', 16)),
    rps: value('--rps') === undefined ? undefined : number('--rps', 1),
    inProcess: argv.includes('--in-process'),
    json: argv.includes('--json'),
    maxGrowthPct: number('--max-growth', 10),
  }
}

// The gateway side: started in a child process (or here with --in-process), it reports samples.

interface GatewayHandle {
  url: string
  sample (): Sample
  close (): Promise<void>
}

async function startSoakGateway (upstreamUrl: string, staticKey: { id: string, key: string }): Promise<GatewayHandle> {
  const dir = mkdtempSync(join(tmpdir(), 'authgate-soak-'))
  const configFile = join(dir, 'gateway.yaml')
  writeFileSync(configFile, stringify({
    version: 1,
    listeners: [{ name: 'local', address: '127.0.0.1:0' }],
    upstreams: { app: { url: upstreamUrl, timeout: '10s', connections: 32 }, demo: { echo: true } },
    apiKeys: [{ id: staticKey.id, hash: hashApiKey(staticKey.key), client: 'soak-client', scopes: ['read'] }],
    routes: [
      { name: 'public', match: { path: '/public/**' }, upstream: 'app', public: true },
      { name: 'keyed', match: { path: '/v1/**' }, upstream: 'demo', policies: [{ apiKey: {} }, { rateLimit: { by: 'client', limit: '1000000/sec' } }] },
    ],
  }))
  const log = pino({ level: 'info', base: undefined }, pino.destination({ dest: '/dev/null', sync: false }))
  const gateway = await Gateway.start({ configFile, log, metrics: new Metrics({ defaultMetrics: false }) })
  const loop = monitorEventLoopDelay({ resolution: 10 })
  loop.enable()
  const started = performance.now()
  return {
    url: gateway.listeners[0]!.url,
    sample () {
      const gc = (globalThis as { gc?: () => void }).gc
      gc?.()
      const memory = process.memoryUsage()
      const types: Record<string, number> = {}
      const resources = process.getActiveResourcesInfo()
      for (const type of resources) types[type] = (types[type] ?? 0) + 1
      const mb = (bytes: number) => Math.round(bytes / 1024 / 1024 * 10) / 10
      const ms = (ns: number) => Math.round(ns / 1e6 * 100) / 100
      const sample: Sample = {
        t: Math.round((performance.now() - started) / 100) / 10,
        rssMB: mb(memory.rss),
        heapUsedMB: mb(memory.heapUsed),
        heapTotalMB: mb(memory.heapTotal),
        externalMB: mb(memory.external),
        loopDelayP50Ms: ms(loop.percentile(50)),
        loopDelayP99Ms: ms(loop.percentile(99)),
        loopDelayMaxMs: ms(loop.max),
        handles: resources.length,
        handleTypes: types,
        requests: 0,
      }
      loop.reset()
      return sample
    },
    async close () {
      loop.disable()
      await gateway.close(2000)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

type FromParent = { type: 'start', upstreamUrl: string, staticKey: { id: string, key: string } } | { type: 'sample' } | { type: 'stop' }
type FromChild = { type: 'ready', url: string } | { type: 'sample', sample: Sample } | { type: 'stopped' }

async function childMain (): Promise<void> {
  let handle: GatewayHandle | undefined
  process.on('message', (message: FromParent) => {
    void (async () => {
      if (message.type === 'start') {
        handle = await startSoakGateway(message.upstreamUrl, message.staticKey)
        process.send!({ type: 'ready', url: handle.url } satisfies FromChild)
      } else if (message.type === 'sample' && handle) {
        process.send!({ type: 'sample', sample: handle.sample() } satisfies FromChild)
      } else if (message.type === 'stop') {
        await handle?.close()
        process.send!({ type: 'stopped' } satisfies FromChild, () => process.exit(0))
      }
    })()
  })
  // The parent going away ends the child too.
  process.on('disconnect', () => process.exit(0))
}

/** The gateway in a child process, driven over IPC. */
async function forkGateway (upstreamUrl: string, staticKey: { id: string, key: string }): Promise<GatewayHandle & { child: ChildProcess, sampleAsync (): Promise<Sample> }> {
  const child = fork(fileURLToPath(import.meta.url), ['--child'], { execArgv: ['--import', 'tsx', '--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const waiters: Array<{ resolve: (message: FromChild) => void, reject: (error: Error) => void }> = []
  child.on('message', (message: FromChild) => waiters.shift()?.resolve(message))
  child.once('exit', (code) => { for (const w of waiters.splice(0)) w.reject(new Error(`the gateway process exited (${String(code)})`)) })
  const next = () => new Promise<FromChild>((resolve, reject) => { waiters.push({ resolve, reject }) })
  const readyMessage = next()
  child.send({ type: 'start', upstreamUrl, staticKey } satisfies FromParent)
  const ready = await readyMessage
  if (ready.type !== 'ready') throw new Error('the gateway process did not start')
  return {
    child,
    url: ready.url,
    sample () { throw new Error('use sampleAsync') },
    async sampleAsync () {
      const answer = next()
      child.send({ type: 'sample' } satisfies FromParent)
      const message = await answer
      if (message.type !== 'sample') throw new Error('unexpected message from the gateway process')
      return message.sample
    },
    async close () {
      const stopped = next().catch(() => ({ type: 'stopped' as const }))
      child.send({ type: 'stop' } satisfies FromParent)
      await Promise.race([stopped, new Promise((resolve) => setTimeout(resolve, 10_000))])
      if (child.exitCode === null) child.kill('SIGKILL')
    },
  }
}

// The load side.

async function startUpstream (): Promise<{ server: Server, url: string }> {
  const body = JSON.stringify({ ok: true, filler: 'x'.repeat(512) })
  const server = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      res.end(body)
    })
  })
  server.keepAliveTimeout = 30_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
}

interface Kind { name: string, weight: number, expect: number, make (): { path: string, headers: Record<string, string> } }

function kinds (staticKey: string): Kind[] {
  return [
    { name: 'public', weight: 30, expect: 200, make: () => ({ path: `/public/item/${randomBytes(3).toString('hex')}`, headers: {} }) },
    { name: 'good-key', weight: 30, expect: 200, make: () => ({ path: '/v1/orders', headers: { 'x-api-key': staticKey } }) },
    // A new well-formed key each time: what a credential-stuffing client sends, and what fills refusal caches.
    { name: 'bad-key', weight: 15, expect: 401, make: () => ({ path: '/v1/orders', headers: { 'x-api-key': `agk_${randomBytes(8).toString('hex')}_${newKeySecret()}` } }) },
    { name: 'no-route', weight: 10, expect: 404, make: () => ({ path: `/nowhere/${randomBytes(3).toString('hex')}`, headers: {} }) },
    // Refused at the edge: a `;` in the path, or a header name with `_` (a WHATWG URL would resolve %2e%2e first).
    { name: 'bad-path', weight: 15, expect: 400, make: () => Math.random() < 0.5 ? { path: `/public/a;jsessionid=${randomBytes(2).toString('hex')}`, headers: {} } : { path: '/public/x', headers: { x_auth_subject: 'root' } } },
  ]
}

export async function runSoak (options: Options, report: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): Promise<Summary> {
  const staticKey = newApiKey()
  const upstream = await startUpstream()
  const forked = options.inProcess ? undefined : await forkGateway(upstream.url, staticKey)
  const local = options.inProcess ? await startSoakGateway(upstream.url, staticKey) : undefined
  const gatewayUrl = forked?.url ?? local!.url
  const sample = async () => forked ? await forked.sampleAsync() : local!.sample()

  const mix = kinds(staticKey.key)
  const totalWeight = mix.reduce((sum, k) => sum + k.weight, 0)
  const pick = () => {
    let r = Math.random() * totalWeight
    for (const kind of mix) { r -= kind.weight; if (r < 0) return kind }
    return mix[0]!
  }
  const agent = new Agent({ connections: options.concurrency, keepAliveTimeout: 10_000 })
  const statuses: Record<string, number> = {}
  const unexpectedExamples: string[] = []
  let unexpected = 0
  let requests = 0
  const started = performance.now()
  const deadline = started + options.durationS * 1000
  const interval = options.rps ? 1000 * options.concurrency / options.rps : 0

  const worker = async () => {
    while (performance.now() < deadline) {
      const kind = pick()
      const { path, headers } = kind.make()
      const began = performance.now()
      let status = 0
      try {
        const res = await request(gatewayUrl + path, { headers, dispatcher: agent, reset: Math.random() < 0.1, headersTimeout: 10_000, bodyTimeout: 10_000 })
        status = res.statusCode
        await res.body.dump()
      } catch (error) {
        if (unexpectedExamples.length < 10) unexpectedExamples.push(`${kind.name}: ${(error as Error).message}`)
      }
      requests++
      statuses[String(status)] = (statuses[String(status)] ?? 0) + 1
      if (status !== kind.expect) {
        unexpected++
        if (unexpectedExamples.length < 10 && status !== 0) unexpectedExamples.push(`${kind.name}: ${status} (expected ${kind.expect})`)
      }
      if (interval > 0) {
        const wait = interval - (performance.now() - began)
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
      }
    }
  }

  const samples: Sample[] = []
  let lastRequests = 0
  const sampler = setInterval(() => {
    void sample().then((s) => {
      s.t = Math.round((performance.now() - started) / 100) / 10
      s.requests = requests
      samples.push(s)
      const rps = Math.round((requests - lastRequests) / options.intervalS)
      lastRequests = requests
      report(`t=${String(s.t).padStart(5)}s rss=${s.rssMB}MB heapUsed=${s.heapUsedMB}MB loop p99=${s.loopDelayP99Ms}ms max=${s.loopDelayMaxMs}ms handles=${s.handles} requests=${requests} (${rps}/s)`)
    }).catch(() => {})
  }, options.intervalS * 1000)

  await Promise.all(Array.from({ length: options.concurrency }, worker))
  clearInterval(sampler)
  await new Promise((resolve) => setTimeout(resolve, 100))
  await agent.close()
  if (forked) await forked.close()
  else await local!.close()
  upstream.server.closeAllConnections()
  await new Promise((resolve) => upstream.server.close(resolve))

  return judge(options, samples, { requests, unexpected, unexpectedExamples, statuses, elapsedS: (performance.now() - started) / 1000 })
}

/** The verdict: RSS growth after warm-up, handle growth, unexpected answers. */
export function judge (options: Options, samples: readonly Sample[], load: { requests: number, unexpected: number, unexpectedExamples: string[], statuses: Record<string, number>, elapsedS: number }): Summary {
  const failures: string[] = []
  const after = samples.filter((s) => s.t >= options.warmupS)
  const median = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b)
    return sorted.length === 0 ? 0 : sorted[Math.floor(sorted.length / 2)]!
  }
  // Base: the first samples after warm-up; end: the last ones (two of each, or one when few were taken).
  const n = after.length >= 6 ? 2 : 1
  const base = after.slice(0, n)
  const end = after.slice(-n)
  const baseRss = median(base.map((s) => s.rssMB))
  const endRss = median(end.map((s) => s.rssMB))
  const growthPct = baseRss > 0 ? Math.round((endRss - baseRss) / baseRss * 1000) / 10 : 0
  const baseHandles = median(base.map((s) => s.handles))
  const endHandles = median(end.map((s) => s.handles))
  // "Keep growing": up at every post-warm-up sample, or well above where it started.
  const steps = after.slice(1).map((s, i) => s.handles - after[i]!.handles)
  const monotonic = after.length >= 4 && steps.every((d) => d > 0)
  const growing = (monotonic && endHandles > baseHandles + 5) || endHandles > baseHandles * 1.5 + 10

  if (after.length < 2) failures.push(`only ${after.length} samples after the ${options.warmupS} s warm-up: run longer or sample more often`)
  if (growthPct > options.maxGrowthPct) failures.push(`RSS grew ${growthPct}% after warm-up (${baseRss} MB -> ${endRss} MB), more than ${options.maxGrowthPct}%`)
  if (growing) failures.push(`open handles keep growing (${baseHandles} -> ${endHandles})`)
  if (load.unexpected > 0) failures.push(`${load.unexpected} requests got an unexpected answer, e.g. ${load.unexpectedExamples.slice(0, 3).join('; ')}`)
  if (load.requests === 0) failures.push('no request was made')

  return {
    ok: failures.length === 0,
    durationS: Math.round(load.elapsedS * 10) / 10,
    warmupS: options.warmupS,
    requests: load.requests,
    requestsPerSecond: Math.round(load.requests / load.elapsedS),
    unexpected: load.unexpected,
    unexpectedExamples: load.unexpectedExamples,
    statuses: load.statuses,
    rss: { baseMB: baseRss, endMB: endRss, growthPct, maxMB: Math.max(0, ...samples.map((s) => s.rssMB)) },
    heapUsed: { baseMB: median(base.map((s) => s.heapUsedMB)), endMB: median(end.map((s) => s.heapUsedMB)) },
    handles: { base: baseHandles, end: endHandles, max: Math.max(0, ...samples.map((s) => s.handles)), growing },
    loopDelay: { p99MaxMs: Math.max(0, ...samples.map((s) => s.loopDelayP99Ms)), maxMs: Math.max(0, ...samples.map((s) => s.loopDelayMaxMs)) },
    failures,
    samples: [...samples],
  }
}

async function main (argv: readonly string[]): Promise<number> {
  if (argv.includes('--child')) { await childMain(); return -1 }
  const options = parseOptions(argv)
  process.stderr.write(`soak: ${options.durationS} s, warm-up ${options.warmupS} s, sample every ${options.intervalS} s, ${options.concurrency} clients, gateway ${options.inProcess ? 'in this process' : 'in a child process'}\n`)
  const summary = await runSoak(options)
  if (options.json) {
    process.stdout.write(`${JSON.stringify(summary)}\n`)
  } else {
    process.stdout.write([
      `requests: ${summary.requests} (${summary.requestsPerSecond}/s) ${JSON.stringify(summary.statuses)}`,
      `RSS after warm-up: ${summary.rss.baseMB} MB -> ${summary.rss.endMB} MB (${summary.rss.growthPct}%), max ${summary.rss.maxMB} MB`,
      `heap used: ${summary.heapUsed.baseMB} MB -> ${summary.heapUsed.endMB} MB`,
      `open handles: ${summary.handles.base} -> ${summary.handles.end} (max ${summary.handles.max})`,
      `event-loop delay: worst p99 ${summary.loopDelay.p99MaxMs} ms, max ${summary.loopDelay.maxMs} ms`,
      summary.ok ? 'PASS' : `FAIL\n  ${summary.failures.join('\n  ')}`,
    ].join('\n') + '\n')
  }
  return summary.ok ? 0 : 1
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2)).then((code) => {
    if (code >= 0) process.exit(code)
  }, (error: unknown) => {
    process.stderr.write(`soak: ${(error as Error).stack ?? String(error)}\n`)
    process.exit(2)
  })
}
