// Micro-benchmark: what one access-log line costs. redactTarget and escapeControl; pino with the gateway's
// redaction paths and without; and the destination: CPU of the whole process (all threads: pino's async
// destination writes from libuv's thread pool) per line written to /dev/null.
// Run: node --import tsx bench/micro/logging.ts
import { pino } from 'pino'
import { createLogger, escapeControl, redactTarget } from '../../gateway/log.js'
import { AccessLog } from '../../gateway/access-log.js'
import { bench, section } from './harness.js'

section('redaction')
const plain = '/v1/orders/12345/items'
const withQuery = '/v1/orders/12345/items?expand=lines&limit=10&page=2'
const withSecret = '/v1/orders?access_token=eyJhbGciOi.abc.def&limit=10'
bench('redactTarget: path only', 1_000_000, () => redactTarget(plain))
bench('redactTarget: path + 3 query parameters', 1_000_000, () => redactTarget(withQuery))
bench('redactTarget: path + a secret parameter', 1_000_000, () => redactTarget(withSecret))
bench('redactTarget: path + 2 parameters, one percent-encoded', 1_000_000, () => redactTarget('/v1/search?q=caf%C3%A9&sort=name'))
bench('redactTarget: path + a JWT under an unlisted name', 1_000_000, () => redactTarget('/v1/orders?x=eyJhbGciOi.eyJzdWIiOi.c2ln&limit=10'))
bench('escapeControl: clean method', 2_000_000, () => escapeControl('GET'))
bench('escapeControl: clean 22-char path', 2_000_000, () => escapeControl(plain))

/** The access log line the gateway writes per request (server.ts logRequest). */
const line = (i: number) => ({
  requestId: '0b6c2d1e-6a8e-4a53-9d0e-3f1a2b4c5d6e',
  listener: 'public',
  method: 'GET',
  path: plain,
  route: 'orders-read',
  status: 200,
  code: 'ok',
  protocol: '1.1',
  subject: 'demo-client',
  methods: 'apiKey',
  remote: '127.0.0.1',
  durationMs: i % 1000 / 7,
})

/** Process CPU (user + system, every thread) per call, measured over `n` calls plus the flush. */
async function cpuPerCall (label: string, n: number, fn: (i: number) => void, flush: () => Promise<void>): Promise<void> {
  for (let i = 0; i < 20_000; i++) fn(i)
  await flush()
  let best = Infinity
  for (let round = 0; round < 5; round++) {
    const start = process.cpuUsage()
    for (let i = 0; i < n; i++) {
      fn(i)
      // Let the event loop turn now and then, as a server's does between requests.
      if (i % 32 === 31) await new Promise((resolve) => setImmediate(resolve))
    }
    await flush()
    const used = process.cpuUsage(start)
    best = Math.min(best, (used.user + used.system) * 1000 / n)
  }
  console.log(`${label.padEnd(64)} ${best.toFixed(0).padStart(7)} ns CPU/line (all threads)`)
}

section('access log line (pino), CPU of all threads, to /dev/null')
const flushOf = (dest: { flush (cb: (err?: Error) => void): void }) => () => new Promise<void>((resolve) => dest.flush(() => resolve()))
const N = 100_000
{
  const dest = pino.destination({ dest: '/dev/null', sync: false })
  const log = createLogger({ level: 'info', destination: dest })
  await cpuPerCall('gateway logger (redaction), async destination', N, (i) => log.info(line(i), 'request'), flushOf(dest))
}
{
  const dest = pino.destination({ dest: '/dev/null', sync: false })
  const log = createLogger({ level: 'info', destination: dest }).child({}, { redact: [] })
  await cpuPerCall('pino without redaction (before AccessLog), async destination', N, (i) => log.info(line(i), 'request'), flushOf(dest))
}
{
  const dest = pino.destination({ dest: '/dev/null', sync: true })
  const log = createLogger({ level: 'info', destination: dest })
  await cpuPerCall('gateway logger (redaction), sync destination', N, (i) => log.info(line(i), 'request'), async () => {})
}
{
  const dest = pino.destination({ dest: '/dev/null', sync: false, minLength: 4096 })
  const log = createLogger({ level: 'info', destination: dest })
  await cpuPerCall('gateway logger (redaction), async, minLength 4096', N, (i) => log.info(line(i), 'request'), flushOf(dest))
}
{
  const log = createLogger({ level: 'warn', destination: pino.destination({ dest: '/dev/null', sync: false }) })
  await cpuPerCall('level warn (the info call is a no-op)', N, (i) => log.info(line(i), 'request'), async () => {})
}
{
  const dest = pino.destination({ dest: '/dev/null', sync: false })
  const log = new AccessLog(createLogger({ level: 'info', destination: dest }))
  await cpuPerCall('AccessLog (hand-serialized, what server.ts uses), async', N, (i) => log.write(line(i)), flushOf(dest))
}
{
  const dest = pino.destination({ dest: '/dev/null', sync: true })
  const log = new AccessLog(createLogger({ level: 'info', destination: dest }))
  await cpuPerCall('AccessLog (hand-serialized), sync destination', N, (i) => log.write(line(i)), async () => {})
}
{
  const log = new AccessLog(createLogger({ level: 'info', destination: { write () {} } }))
  await cpuPerCall('AccessLog serializer alone (no-op destination)', N, (i) => log.write(line(i)), async () => {})
}
