import { Writable } from 'node:stream'
import test from 'ava'
import { AccessLog, type AccessLogEntry } from './access-log.js'
import { createLogger } from './log.js'

function capture (level: string) {
  const chunks: string[] = []
  const destination = new Writable({ write (chunk, _encoding, done) { chunks.push(chunk.toString()); done() } })
  const log = createLogger({ level, destination })
  return { log, text: () => chunks.join(''), writes: () => chunks.length }
}

const nextTurn = () => new Promise((resolve) => setImmediate(resolve))

const entry: AccessLogEntry = {
  requestId: '0b6c2d1e-6a8e-4a53-9d0e-3f1a2b4c5d6e',
  listener: 'public',
  method: 'GET',
  path: '/v1/orders?q="x"\\y',
  route: 'orders',
  status: 200,
  code: 'ok',
  protocol: '2',
  subject: 'line\u2028break "quoted" \\x0a \n\t',
  methods: 'apiKey,jwt',
  remote: '127.0.0.1',
  durationMs: 1.234,
}

test('a line is what pino writes for the same fields, parses as JSON, and escapes quotes, backslashes and control characters', async (t) => {
  const ours = capture('info')
  const theirs = capture('info')
  new AccessLog(ours.log).write(entry)
  theirs.log.info({ ...entry }, 'request')
  await nextTurn()
  const line = ours.text()
  t.true(line.endsWith('}\n'))
  t.is(line.split('\n').length, 2, 'one line')
  const parsed = JSON.parse(line) as Record<string, unknown>
  const reference = JSON.parse(theirs.text()) as Record<string, unknown>
  // Same keys in the same order, same values (time differs by the clock only).
  t.deepEqual(Object.keys(parsed), Object.keys(reference))
  t.deepEqual({ ...parsed, time: 0 }, { ...reference, time: 0 })
  t.true(Math.abs(Number(parsed.time) - Number(reference.time)) < 1_000)
  t.is(parsed.subject, entry.subject)
  t.is(parsed.path, entry.path)
})

test('absent subject, methods and remote are left out, as pino leaves out undefined fields', async (t) => {
  const { log, text } = capture('info')
  new AccessLog(log).write({ ...entry, subject: undefined, methods: undefined, remote: undefined })
  await nextTurn()
  const parsed = JSON.parse(text()) as Record<string, unknown>
  t.false('subject' in parsed || 'methods' in parsed || 'remote' in parsed)
  t.is(parsed.msg, 'request')
  t.is(parsed.level, 'info')
})

test('lines of one turn of the event loop are written together, by the next turn; at level warn nothing is written', async (t) => {
  const { log, text, writes } = capture('info')
  const access = new AccessLog(log)
  for (let i = 0; i < 5; i++) access.write({ ...entry, status: 200 + i })
  t.is(writes(), 0, 'nothing written within the turn')
  await nextTurn()
  t.is(writes(), 1, 'one write for the turn')
  t.deepEqual(text().trim().split('\n').map((l) => (JSON.parse(l) as { status: number }).status), [200, 201, 202, 203, 204])

  const quiet = capture('warn')
  new AccessLog(quiet.log).write(entry)
  await nextTurn()
  t.is(quiet.text(), '')
})
