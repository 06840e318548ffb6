import { createHash } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import test from 'ava'
import { main } from '../cli/main.js'
import { newApiKey } from '../policies/api-key/format.js'

let dir: string

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'authgate-cli-'))
})

test.after.always(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** Runs the CLI in-process with captured output. */
async function run (...argv: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  let stdout = ''
  let stderr = ''
  const code = await main(argv, { stdout: { write: (s: string) => { stdout += s } }, stderr: { write: (s: string) => { stderr += s } } })
  return { code, stdout, stderr }
}

async function configFile (name: string, text: string): Promise<string> {
  const file = join(dir, name)
  await writeFile(file, text)
  return file
}

const HEAD = `version: 1
listeners: [{ name: local, address: "127.0.0.1:0" }]
upstreams: { demo: { echo: true } }
`

const CLEAN = `${HEAD}routes:
  - name: open
    match: { path: /open/** }
    upstream: demo
    public: true
`

/** Three separate mistakes: lines 7, 9 and 11. */
const THREE_MISTAKES = `${HEAD}routes:
  - name: keyed
    match: { path: /v1/** }
    upstream: dmeo
    policies:
      - apikey: {}
  - name: open
    match: { path: /open, lisener: local }
    upstream: demo
    public: true
`

test('check on a clean configuration exits 0', async (t) => {
  const file = await configFile('clean.yaml', CLEAN)
  const { code, stdout, stderr } = await run('check', '-c', file)
  t.is(code, 0, stderr)
  t.true(stdout.includes(file))
  t.regex(stdout, /ok/)
  t.is((await run('check', '--config', file)).code, 0)
  t.is((await run('check', `--config=${file}`)).code, 0)
})

test('check on a configuration with three mistakes exits 1 and prints each with file, line, column and a fix', async (t) => {
  const file = await configFile('three.yaml', THREE_MISTAKES)
  const { code, stdout, stderr } = await run('check', '-c', file)
  t.is(code, 1, stderr)
  const lines = stdout.split('\n')
  const issues = lines.filter((l) => new RegExp(`^${escape(file)}:\\d+:\\d+: `).test(l))
  t.is(issues.length, 3, stdout)
  t.regex(issues[0]!, new RegExp(`^${escape(file)}:7:15: error: .*unknown upstream "dmeo"`))
  t.regex(issues[1]!, new RegExp(`^${escape(file)}:9:9: error: .*unknown policy "apikey"; did you mean "apiKey"\\?`))
  t.regex(issues[2]!, new RegExp(`^${escape(file)}:11:27: error: .*unknown key "lisener"; did you mean "listener"\\?`))
  // Each issue is followed by its indented fix line.
  for (const issue of issues) t.regex(lines[lines.indexOf(issue) + 1] ?? '', /^\s+fix: \S/)
})

test('check --json prints [{file, line, col, path, severity, message, fix}] and exits 1 on errors', async (t) => {
  const file = await configFile('three-json.yaml', THREE_MISTAKES)
  const { code, stdout } = await run('check', '-c', file, '--json')
  t.is(code, 1)
  const issues = JSON.parse(stdout) as Array<Record<string, unknown>>
  t.is(issues.length, 3)
  for (const issue of issues) {
    t.deepEqual(Object.keys(issue).sort(), ['col', 'file', 'fix', 'line', 'message', 'path', 'severity'])
    t.is(issue.file, file)
    t.is(issue.severity, 'error')
    t.is(typeof issue.line, 'number')
    t.is(typeof issue.col, 'number')
    t.is(typeof issue.path, 'string')
    t.is(typeof issue.message, 'string')
  }
  t.like(issues[0], { line: 7, col: 15, path: 'routes[0].upstream' })
  t.like(issues[1], { line: 9, col: 9, path: 'routes[0].policies[0].apikey' })
  t.like(issues[2], { line: 11, col: 27, path: 'routes[1].match.lisener' })
})

test('check --json on a clean configuration prints [] and exits 0', async (t) => {
  const file = await configFile('clean-json.yaml', CLEAN)
  const { code, stdout } = await run('check', '--json', '-c', file)
  t.is(code, 0)
  t.deepEqual(JSON.parse(stdout), [])
})

test('check exits 0 when there are only warnings, and prints them', async (t) => {
  const file = await configFile('warnings.yaml', `${HEAD}routes:
  - name: everything
    match: { path: /v1/** }
    upstream: demo
    public: true
  - name: orders
    match: { path: /v1/orders }
    upstream: demo
    public: true
`)
  const { code, stdout } = await run('check', '-c', file)
  t.is(code, 0)
  t.regex(stdout, new RegExp(`^${escape(file)}:10:\\d+: warning: .*can never match`, 'm'))
  const json = await run('check', '-c', file, '--json')
  t.is(json.code, 0)
  t.like((JSON.parse(json.stdout) as unknown[])[0], { severity: 'warning', line: 10 })
})

test('check on a file that does not exist exits 1 and says so', async (t) => {
  const missing = join(dir, 'nope.yaml')
  const { code, stdout, stderr } = await run('check', '-c', missing)
  t.is(code, 1)
  t.regex(stdout + stderr, /cannot read/)
})

test('an unknown command is a usage error: exit 2 with the usage on stderr', async (t) => {
  const { code, stderr, stdout } = await run('frobnicate')
  t.is(code, 2)
  t.regex(stderr, /unknown command "frobnicate"/)
  t.regex(stderr, /usage: authgate/)
  t.is(stdout, '')
})

test('an unknown option or a missing option value is a usage error: exit 2', async (t) => {
  const file = await configFile('clean-usage.yaml', CLEAN)
  for (const argv of [['check', '--bogus'], ['check', '-c', file, '--strict'], ['check', '-c'], ['start', '--nope'], ['check', '-c', file, 'extra'], ['check', '--json=yes', '-c', file]]) {
    const { code, stderr } = await run(...argv)
    t.is(code, 2, argv.join(' '))
    t.regex(stderr, /^authgate: /, argv.join(' '))
  }
  // The twin: the same command called correctly.
  t.is((await run('check', '-c', file)).code, 0)
})

test('no command prints the usage and exits 2; --help prints it and exits 0', async (t) => {
  const none = await run()
  t.is(none.code, 2)
  t.regex(none.stdout + none.stderr, /usage: authgate/)
  const help = await run('--help')
  t.is(help.code, 0)
  t.regex(help.stdout, /usage: authgate/)
  for (const command of ['start', 'check', 'hash-key']) t.regex(help.stdout, new RegExp(`\\b${command}\\b`))
})

test('hash-key prints sha256:<hex> of the whole key and nothing else', async (t) => {
  const { key } = newApiKey()
  const { code, stdout, stderr } = await run('hash-key', key)
  t.is(code, 0)
  t.is(stdout, `sha256:${createHash('sha256').update(key).digest('hex')}\n`)
  t.is(stderr, '')
  t.false(stdout.includes(key))
})

test('hash-key warns about text that is not an agk_ key, and needs exactly one KEY', async (t) => {
  const odd = await run('hash-key', 'not-a-key')
  t.is(odd.code, 0)
  t.regex(odd.stderr, /warning/)
  t.is(odd.stdout, `sha256:${createHash('sha256').update('not-a-key').digest('hex')}\n`)
  t.is((await run('hash-key')).code, 2)
  t.is((await run('hash-key', 'a', 'b')).code, 2)
})

function escape (text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
