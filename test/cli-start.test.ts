/**
 * `authgate start` loads the development PKI (@peculiar/x509, and the reflect-metadata polyfill it needs) only when
 * a listener names a certs/dev certificate that does not exist yet. The polyfill marks the process when it loads:
 * it defines Reflect.getMetadata. This file runs in a process of its own (ava), with nothing else imported.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import test from 'ava'

const polyfilled = () => typeof (Reflect as unknown as { getMetadata?: unknown }).getMetadata === 'function'

function capture () {
  let err = ''
  return { io: { stdout: { write: () => true }, stderr: { write: (s: string) => { err += s } } }, err: () => err }
}

test.serial('loading the CLI and start, and starting on a configuration without dev certificates, loads no PKI code', async (t) => {
  t.false(polyfilled(), 'nothing loaded it before the test')
  const { main } = await import('../cli/main.js')
  const { ensureDevCerts } = await import('../cli/start.js')
  const dir = await mkdtemp(join(tmpdir(), 'authgate-start-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'gateway.yaml')
  await writeFile(file, `version: 1
listeners:
  - { name: local, address: "127.0.0.1:0" }
  - name: public
    address: "127.0.0.1:0"
    tls: { cert: /etc/authgate/tls/server.crt, key: /etc/authgate/tls/server.key }
upstreams: { demo: { echo: true } }
routes: [{ name: open, match: { path: /** }, upstream: demo, public: true }]
`)
  const c = capture()
  await ensureDevCerts(file, c.io)
  t.is(c.err(), '')
  t.is(await main(['check', '-c', file], c.io), 0, c.err())
  t.false(polyfilled())
})

test.serial('a listener on a missing certs/dev certificate makes start load the PKI and create it', async (t) => {
  const { ensureDevCerts } = await import('../cli/start.js')
  const dir = await mkdtemp(join(tmpdir(), 'authgate-start-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await mkdir(join(dir, 'certs'))
  const file = join(dir, 'gateway.yaml')
  await writeFile(file, `version: 1
listeners: [{ name: public, address: "127.0.0.1:0", tls: { cert: certs/dev/server.crt, key: certs/dev/server.key } }]
`)
  const c = capture()
  await ensureDevCerts(file, c.io)
  t.regex(c.err(), /created a development CA/)
  t.true(existsSync(join(dir, 'certs', 'dev', 'server.crt')))
  t.true(polyfilled())
})
