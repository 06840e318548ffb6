/**
 * `authgate init [--scenario NAME] [--out gateway.yaml] [--force]`: a commented gateway.yaml for one common
 * situation, following the usual decision matrix. The templates are data: templates/NAME.yaml, written out as they
 * are (the build copies them next to the compiled code). Every template passes `authgate check` with no warning once
 * its environment variables and files exist; secrets come only from `${env:..}` and `${file:..}`.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { parseArgs, UsageError, type CommandIo } from '../command.js'

export interface Scenario {
  readonly name: string
  /** One line: who it is for and which method. */
  readonly summary: string
  /** Environment variables the file reads without a default. */
  readonly env: readonly string[]
  /** Files the configuration refers to (relative to it), with how to make each. */
  readonly files: ReadonlyArray<{ path: string, how: string }>
  /** The gateway.yaml to write: templates/NAME.yaml. */
  readonly template: string
}

/** In the order `init` lists them; each has its templates/NAME.yaml. */
const LIST: ReadonlyArray<Omit<Scenario, 'template'>> = [
  {
    name: 'public-api',
    summary: 'an API for third-party developers: API keys, limited by tier',
    env: [],
    files: [],
  },
  {
    name: 'webhook',
    summary: 'receiving webhooks: HMAC signatures (GitHub, Stripe, your partners)',
    env: ['GH_WEBHOOK_SECRET', 'STRIPE_WEBHOOK_SECRET', 'PARTNER_HMAC_SECRET'],
    files: [],
  },
  {
    name: 'service-to-service',
    summary: 'internal services calling each other: mutual TLS (client certificates)',
    env: [],
    files: [{ path: 'certs/dev/ca.crt', how: 'your internal CA bundle (authgate certs init makes a development one)' }],
  },
  {
    name: 'spa-backend',
    summary: 'a web app and its API: login by OpenID Connect, an HttpOnly session cookie (authgate as the BFF), bearer tokens for other clients',
    env: ['OIDC_ISSUER', 'OIDC_CLIENT_SECRET', 'APP_HOST', 'AUTHGATE_SESSION_SECRET'],
    files: [],
  },
  {
    name: 'internal-tool',
    summary: 'an internal tool for a few people: HTTP Basic, over HTTPS only',
    env: [],
    files: [{ path: 'users.htpasswd', how: 'authgate passwd alice >> users.htpasswd (bcrypt)' }],
  },
  {
    name: 'financial',
    summary: 'a high-integrity API (payments): signed requests (RFC 9421) and a user token, both required',
    env: ['OIDC_ISSUER', 'REDIS_URL'],
    files: [{ path: 'keys/partner-bank.pem', how: 'the partner\'s Ed25519 public key (openssl pkey -pubout)' }],
  },
]

/** The folder of the YAML templates: beside this module, in the sources and in dist/ alike. */
export const TEMPLATES_DIR = new URL('./templates/', import.meta.url)

/** The scenarios by name, in the order `init` lists them. */
export const SCENARIOS: ReadonlyMap<string, Scenario> = new Map(LIST.map((s) => [s.name, {
  ...s,
  template: readFileSync(new URL(`${s.name}.yaml`, TEMPLATES_DIR), 'utf8'),
}]))

export const INIT_USAGE = `usage: authgate init --scenario NAME [--out gateway.yaml] [--force]

${LIST.map((s) => `  ${s.name.padEnd(20)} ${s.summary}`).join('\n')}
`

/** Writes the scenario's gateway.yaml; refuses to replace an existing file without --force. */
export async function initCommand (args: readonly string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs(args, { force: { type: 'boolean' }, scenario: { type: 'string' }, out: { type: 'string', short: 'o' } })
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`)
  const name = values.scenario
  if (name === undefined) {
    io.stderr.write(`authgate init: choose a scenario with --scenario\n\n${INIT_USAGE}`)
    return 2
  }
  const scenario = SCENARIOS.get(name)
  if (!scenario) throw new UsageError(`unknown scenario "${name}" (one of: ${[...SCENARIOS.keys()].join(', ')})`)
  const out = values.out ?? 'gateway.yaml'
  if (existsSync(out) && values.force !== true) {
    io.stderr.write(`authgate init: ${out} already exists (--force replaces it)\n`)
    return 1
  }
  writeFileSync(out, scenario.template, { mode: 0o644 })
  const steps = [
    ...scenario.env.map((name) => `set ${name}`),
    ...scenario.files.map((f) => `create ${f.path}: ${f.how}`),
    `authgate check -c ${out}`,
    `authgate start -c ${out}`,
  ]
  io.stdout.write(`wrote ${out} (${scenario.summary})\nnext:\n${steps.map((s, i) => `  ${i + 1}. ${s}`).join('\n')}\n`)
  return 0
}
