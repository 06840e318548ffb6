import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import test from 'ava'
import bcrypt from 'bcryptjs'
import { parse } from 'yaml'
import { initDevCerts } from '../certs/pki.js'
import { checkConfig } from '../gateway/config/load.js'
import { initCommand, SCENARIOS } from '../cli/init/command.js'
import { lintConfig } from '../gateway/lint.js'

function capture () {
  let out = ''
  let err = ''
  return { io: { stdout: { write: (s: string) => { out += s } }, stderr: { write: (s: string) => { err += s } } }, out: () => out, err: () => err }
}

/** What an operator provides before `check`: the environment and the files the scenario names, made at run time. */
async function provide (dir: string): Promise<NodeJS.ProcessEnv> {
  await initDevCerts(join(dir, 'certs', 'dev'))
  const hash = bcrypt.hashSync(randomBytes(12).toString('base64'), 4)
  await writeFile(join(dir, 'users.htpasswd'), `alice:${hash}\n`)
  await mkdir(join(dir, 'keys'), { recursive: true })
  const { publicKey } = generateKeyPairSync('ed25519')
  await writeFile(join(dir, 'keys', 'partner-bank.pem'), publicKey.export({ type: 'spki', format: 'pem' }))
  return {
    AUTHGATE_ADMIN_TOKEN: randomBytes(32).toString('base64'),
    REDIS_URL: 'redis://127.0.0.1:6379',
    GH_WEBHOOK_SECRET: randomBytes(32).toString('hex'),
    STRIPE_WEBHOOK_SECRET: `whsec_${randomBytes(24).toString('base64')}`,
    PARTNER_HMAC_SECRET: randomBytes(32).toString('base64'),
    OIDC_ISSUER: 'https://idp.example.com',
    OIDC_CLIENT_SECRET: randomBytes(24).toString('base64url'),
    APP_HOST: 'app.example.com',
    AUTHGATE_SESSION_SECRET: randomBytes(48).toString('base64'),
  }
}

for (const scenario of SCENARIOS.values()) {
  test(`init --scenario ${scenario.name} writes a gateway.yaml that passes check with no warning`, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'authgate-init-'))
    t.teardown(() => rm(dir, { recursive: true, force: true }))
    const out = join(dir, 'gateway.yaml')
    const c = capture()
    t.is(await initCommand(['--scenario', scenario.name, '--out', out], c.io), 0, c.err())
    t.regex(c.out(), /authgate check -c /)
    const env = await provide(dir)
    for (const name of scenario.env) t.truthy(env[name], `the test provides ${name}`)
    for (const file of scenario.files) t.true(existsSync(join(dir, file.path)), `the test provides ${file.path}`)

    for (const mode of [{}, { NODE_ENV: 'production' }]) {
      const { issues, config } = checkConfig(out, { env: { ...env, ...mode } })
      t.deepEqual(issues.map((i) => `${i.line}:${i.col} ${i.severity} ${i.message}`), [], `${scenario.name} ${JSON.stringify(mode)}`)
      t.deepEqual(config ? lintConfig(config.doc) : [], [])
    }
  })
}

test('every template is commented, takes secrets only from env or files, and says why its method fits', async (t) => {
  for (const scenario of SCENARIOS.values()) {
    const text = scenario.template
    t.regex(text, /^# authgate — /, scenario.name)
    t.regex(text, /^# Why /m, scenario.name)
    const doc = parse(text) as Record<string, unknown>
    const secrets: string[] = []
    const visit = (value: unknown, key: string) => {
      if (typeof value === 'string' && /^(secret|token|password|publicKey|clientSecret)$/.test(key)) secrets.push(value)
      if (value !== null && typeof value === 'object') for (const [k, v] of Object.entries(value)) visit(v, k)
    }
    visit(doc, '')
    for (const value of secrets) t.regex(value, /^\$\{(env|file):/, `${scenario.name}: ${value}`)
  }
})

test('init refuses to replace a file unless --force, and lists the scenarios when none is given', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-init-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const out = join(dir, 'gateway.yaml')
  await writeFile(out, 'mine\n')
  const c = capture()
  t.is(await initCommand(['--scenario', 'webhook', '--out', out], c.io), 1)
  t.regex(c.err(), /already exists/)
  t.is(await readFile(out, 'utf8'), 'mine\n')
  t.is(await initCommand(['--scenario', 'webhook', '--out', out, '--force'], capture().io), 0)
  t.is(await readFile(out, 'utf8'), SCENARIOS.get('webhook')!.template)

  const none = capture()
  t.is(await initCommand([], none.io), 2)
  for (const name of SCENARIOS.keys()) t.true(none.err().includes(name))
  await t.throwsAsync(initCommand(['--scenario', 'nope'], capture().io), { message: /unknown scenario "nope"/ })
})
