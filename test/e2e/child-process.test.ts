import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import test from 'ava'
import { stringify } from 'yaml'
import { freePort, probe, recordingUpstream, type Seen } from './support.js'
import { killChildren, runCli, waitUntilServing } from '../helpers/child.js'


test.after.always(killChildren)


async function writeConfig (config: Record<string, unknown> | string): Promise<{ dir: string, file: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-child-'))
  const file = join(dir, 'gateway.yaml')
  await writeFile(file, typeof config === 'string' ? config : stringify(config))
  return { dir, file }
}

test('authgate start serves, drains an in-flight request on SIGTERM, then exits 0', async (t) => {
  t.timeout(120_000) // three Node processes compiling TypeScript on a small CI machine
  let release!: () => void
  const released = new Promise<void>((r) => { release = r })
  const upstream = await recordingUpstream((req, res, seen: Seen) => {
    req.resume()
    const answer = () => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end(`done ${seen.url}`) }
    if (req.url?.startsWith('/hold')) void released.then(answer)
    else answer()
  })
  const [port, adminPort] = [await freePort(), await freePort()]
  const { dir, file } = await writeConfig({
    version: 1,
    listeners: [{ name: 'local', address: `127.0.0.1:${port}` }],
    admin: { address: `127.0.0.1:${adminPort}` },
    upstreams: { app: { url: upstream.url }, demo: { echo: true } },
    routes: [
      { name: 'echo', match: { path: '/echo/**' }, upstream: 'demo', public: true },
      { name: 'app', match: { path: '/**' }, upstream: 'app', public: true },
    ],
  })
  const child = runCli(['start', '-c', file])
  try {
    await waitUntilServing(child, `http://127.0.0.1:${adminPort}/healthz`)
    const echo = await fetch(`http://127.0.0.1:${port}/echo/hello`, { headers: { 'x-auth-subject': 'admin' } })
    t.is(echo.status, 200)
    t.regex(echo.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/)
    const body = await echo.json() as { path: string, headers: Record<string, string | undefined> }
    t.is(body.path, '/echo/hello')
    t.is(body.headers['x-auth-subject'], undefined)
    t.is((await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status, 200)

    // A request in flight when SIGTERM arrives is finished before the process exits.
    const id = probe()
    const inFlight = fetch(`http://127.0.0.1:${port}/hold`, { headers: { 'x-probe': id } })
    await upstream.arrival(id)
    child.process.kill('SIGTERM')
    await child.waitForOutput('draining in-flight requests')
    release()
    const res = await inFlight
    t.is(res.status, 200)
    t.is(await res.text(), 'done /hold')
    t.is(await child.exited, 0, child.output())
  } finally {
    release()
    child.process.kill('SIGKILL')
    await upstream.close()
    await rm(dir, { recursive: true, force: true })
  }
})

test('authgate start with an invalid configuration exits 1 and prints every mistake with its position', async (t) => {
  t.timeout(120_000)
  const { dir, file } = await writeConfig(`version: 1
listeners: [{ name: local, address: "127.0.0.1:0" }]
upstreams: { demo: { echo: true } }
routes:
  - name: keyed
    match: { path: /v1/** }
    upstream: dmeo
    policies:
      - apikey: {}
  - name: open
    match: { path: /open, lisener: local }
    upstream: demo
    public: true
`)
  try {
    const child = runCli(['start', '-c', file])
    t.is(await child.exited, 1)
    const output = child.output()
    t.true(output.includes(`${file}:7:15`), output)
    t.true(output.includes(`${file}:9:9`), output)
    t.true(output.includes(`${file}:11:27`), output)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('the CLI process exits 2 on a usage error and 0 on --help', async (t) => {
  t.timeout(120_000)
  const bad = runCli(['frobnicate'])
  t.is(await bad.exited, 2)
  t.regex(bad.output(), /unknown command/)
  const help = runCli(['--help'])
  t.is(await help.exited, 0)
  t.regex(help.output(), /usage: authgate/)
})
