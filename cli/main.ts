import cluster from 'node:cluster'
import { existsSync, readFileSync, watch } from 'node:fs'
import { availableParallelism } from 'node:os'
import { dirname, resolve, sep } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { checkConfig, loadConfig } from '../gateway/config/load.js'
import { parseDuration } from '../gateway/config/units.js'
import { createStore } from '../gateway/store/index.js'
import type { Store } from '../gateway/store/types.js'
import { tokensCommand } from '../policies/jwt/index.js'
import { signCommand } from '../policies/hmac/sign.js'
import { explainCommand } from './explain/decision.js'
import { keysCommand } from '../policies/api-key/cli.js'
import { passwdCommand } from '../policies/basic/cli.js'
import { initCommand } from './init/command.js'
import { ConfigError, formatIssues } from '../gateway/errors.js'
import { Gateway } from '../gateway/gateway.js'
import { hashApiKey, parseApiKey } from '../policies/api-key/format.js'
import { certsCommand, type CommandIo } from './certs.js'
import { initDevCerts } from '../certs/pki.js'
import { editorSchema } from '../gateway/config/json-schema.js'

export const USAGE = `usage: authgate <command> [options]

  start   [-c gateway.yaml]                 run the gateway
  check   [-c gateway.yaml] [--json]        validate and lint; exit 1 on errors
  explain [-c gateway.yaml] METHOD URL [-H 'Name: value']... [--json]
                                            the route, each policy's decision, what the upstream would get
  init    [--scenario NAME] [--out FILE]    write a commented gateway.yaml for a scenario
  hash-key KEY                              print sha256:<hex> for a static apiKeys entry
  certs   init [--dir certs/dev] | client NAME [--san URI]   development PKI
  sign    --key-id ID (--secret-env VAR | --key-file PEM) [--scheme hmac-sha256|rfc9421] METHOD URL [--data @file|text]
                                            print signature headers for curl -H
  tokens  revoke JTI --until 24h [-c FILE]  deny-list a JWT id (providers with revocation: true)
  schema                                    print the JSON Schema of gateway.yaml (gateway.schema.json)
`

/** A mistake in how the command was called: exit code 2. */
export class UsageError extends Error {}

export interface ParsedArgs {
  readonly positional: string[]
  readonly flags: Map<string, string[]>
}

/** Minimal flag parser: `--name value`, `--name=value`, `-c value`, booleans listed in `booleans`. */
export function parseArgs (args: readonly string[], options: { booleans?: readonly string[], values?: readonly string[] } = {}): ParsedArgs {
  const booleans = new Set(options.booleans ?? [])
  const values = new Set(options.values ?? [])
  const positional: string[] = []
  const flags = new Map<string, string[]>()
  const add = (name: string, value: string) => flags.set(name, [...(flags.get(name) ?? []), value])
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === '--') { positional.push(...args.slice(i + 1)); break }
    if (!arg.startsWith('-') || arg === '-') { positional.push(arg); continue }
    const eq = arg.indexOf('=')
    const name = (eq === -1 ? arg : arg.slice(0, eq)).replace(/^--?/, '')
    if (booleans.has(name)) {
      if (eq !== -1) throw new UsageError(`--${name} takes no value`)
      add(name, 'true')
      continue
    }
    if (!values.has(name)) throw new UsageError(`unknown option ${arg.slice(0, eq === -1 ? undefined : eq)}`)
    const value = eq !== -1 ? arg.slice(eq + 1) : args[++i]
    if (value === undefined) throw new UsageError(`${arg} needs a value`)
    add(name, value)
  }
  return { positional, flags }
}

export function flag (parsed: ParsedArgs, ...names: string[]): string | undefined {
  for (const name of names) {
    const list = parsed.flags.get(name)
    if (list && list.length > 0) return list[list.length - 1]
  }
  return undefined
}

type Command = (args: string[], io: CommandIo) => Promise<number>

/** The store a config file names (for commands that manage keys and revocations). */
export async function openConfiguredStore (file: string): Promise<Store> {
  const config = loadConfig(file)
  const store = createStore({ redis: config.doc.store.redis, prefix: config.doc.store.prefix, timeoutMs: parseDuration(config.doc.store.timeout) })
  if (store.kind === 'memory') {
    await store.close()
    throw new Error(`${file} configures no Redis (store.redis): keys and revocations in an in-process store would vanish with this command. Set REDIS_URL or store.redis`)
  }
  return store
}

/** Splits `-c FILE` / `--config FILE` off the arguments of a subcommand that does not parse it itself. */
function takeConfigFlag (args: readonly string[]): { file: string, rest: string[] } {
  const rest: string[] = []
  let file = process.env.AUTHGATE_CONFIG ?? 'gateway.yaml'
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === '-c' || arg === '--config') { file = args[++i] ?? file; continue }
    if (arg.startsWith('--config=')) { file = arg.slice(9); continue }
    rest.push(arg)
  }
  return { file, rest }
}

/** Commands added by policy modules (keys, tokens, sign, passwd...). */
export const extraCommands = new Map<string, Command>()

export async function main (argv: string[], io: CommandIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [command, ...args] = argv
  try {
    switch (command) {
      case 'start': return await start(args, io)
      case 'check': return check(args, io)
      case 'hash-key': return hashKey(args, io)
      case 'certs': return await certsCommand(args, io)
      case 'sign': return await signCommand(args, io)
      case 'explain': return await explainCommand(args, io)
      case 'keys': return await keysCommand(args, io)
      case 'passwd': return await passwdCommand(args, io)
      case 'init': return await initCommand(args, io)
      case 'tokens': {
        const { file, rest } = takeConfigFlag(args)
        return await tokensCommand(rest, io, () => openConfiguredStore(file))
      }
      case 'schema':
        io.stdout.write(JSON.stringify(editorSchema(), null, 2) + '\n')
        return 0
      case undefined: case '-h': case '--help': case 'help':
        io.stdout.write(USAGE)
        return command === undefined ? 2 : 0
      default: {
        const extra = extraCommands.get(command)
        if (extra) return await extra(args, io)
        throw new UsageError(`unknown command "${command}"`)
      }
    }
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(`authgate: ${error.message}\n\n${USAGE}`)
      return 2
    }
    if (error instanceof ConfigError) {
      io.stderr.write(`${formatIssues(error.issues)}\n`)
      return 1
    }
    io.stderr.write(`authgate: ${(error as Error).message}\n`)
    return 1
  }
}

function configFile (parsed: ParsedArgs): string {
  return flag(parsed, 'c', 'config') ?? process.env.AUTHGATE_CONFIG ?? 'gateway.yaml'
}

function check (args: string[], io: CommandIo): number {
  const parsed = parseArgs(args, { booleans: ['json'], values: ['c', 'config'] })
  if (parsed.positional.length > 0) throw new UsageError(`unexpected argument "${parsed.positional[0]}"`)
  const file = configFile(parsed)
  const { issues } = checkConfig(file)
  if (parsed.flags.has('json')) {
    io.stdout.write(JSON.stringify(issues.map((i) => ({
      file: i.file ?? file, line: i.line ?? 1, col: i.col ?? 1, path: formatPathText(i.path), severity: i.severity, message: i.message, fix: i.fix ?? null,
    })), null, 2) + '\n')
  } else if (issues.length === 0) {
    io.stdout.write(`${file}: ok\n`)
  } else {
    const errors = issues.filter((i) => i.severity === 'error').length
    io.stdout.write(`${formatIssues(issues)}\n${file}: ${errors} error(s), ${issues.length - errors} warning(s)\n`)
  }
  return issues.some((i) => i.severity === 'error') ? 1 : 0
}

function formatPathText (path: ReadonlyArray<string | number>): string {
  return path.map((p, i) => typeof p === 'number' ? `[${p}]` : (i === 0 ? p : `.${p}`)).join('')
}

function hashKey (args: string[], io: CommandIo): number {
  const parsed = parseArgs(args, {})
  const key = parsed.positional[0]
  if (!key || parsed.positional.length > 1) throw new UsageError('hash-key takes exactly one KEY')
  if (!parseApiKey(key)) io.stderr.write('authgate: warning: this is not an agk_<id>_<secret> key; the hash will never match a presented key\n')
  io.stdout.write(`${hashApiKey(key)}\n`)
  return 0
}

async function start (args: string[], io: CommandIo): Promise<number> {
  const parsed = parseArgs(args, { values: ['c', 'config'] })
  if (parsed.positional.length > 0) throw new UsageError(`unexpected argument "${parsed.positional[0]}"`)
  const file = configFile(parsed)
  if (cluster.isPrimary) {
    await ensureDevCerts(file, io)
    const { issues, config } = checkConfig(file)
    if (!config) throw new ConfigError(issues.filter((i) => i.severity === 'error'))
    const workers = config.doc.workers === 'auto' ? availableParallelism() : config.doc.workers
    if (workers > 1) return await supervise(workers, file, io)
  }
  // A worker takes its orders from the primary: reload and drain are handled once, for all. An order that comes
  // while this worker is still starting is kept and carried out once it has started (not dropped).
  const early: unknown[] = []
  const keep = (message: unknown) => { early.push(message) }
  if (cluster.isWorker) process.on('message', keep)
  let gateway: Gateway
  try {
    gateway = await Gateway.start({ configFile: file, watch: cluster.isPrimary })
  } finally {
    process.off('message', keep)
  }
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) return
    stopping = true
    gateway.log.info({ signal }, 'draining in-flight requests, then exiting')
    void gateway.close().then(() => { gateway.log.flush(); process.exit(0) })
  }
  process.on('SIGHUP', () => { void gateway.reload() })
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  const obey = (message: unknown) => {
    if (message === 'authgate:reload') void gateway.reload()
    if (message === 'authgate:stop') stop('primary')
  }
  process.on('message', obey)
  for (const message of early) obey(message)
  await new Promise(() => {}) // serve until a signal
  return 0
}

/**
 * `workers: N`: N processes share the listeners (node:cluster). The primary watches the config and relays
 * SIGHUP and SIGTERM to every worker once; a worker that dies unexpectedly is replaced.
 */
async function supervise (count: number, file: string, io: CommandIo): Promise<number> {
  let stopping = false
  const fork = () => cluster.fork()
  for (let i = 0; i < count; i++) fork()
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return
    io.stderr.write(`authgate: worker ${worker.process.pid} exited (${signal ?? code}); starting another\n`)
    setTimeout(fork, 500).unref()
  })
  const broadcast = (message: string) => { for (const worker of Object.values(cluster.workers ?? {})) worker?.send(message) }
  // A worker still loading when the stop went out may have missed it: tell it again once it listens.
  cluster.on('listening', (worker) => { if (stopping) worker.send('authgate:stop') })
  process.on('SIGHUP', () => broadcast('authgate:reload'))
  const stop = () => {
    if (stopping) return
    stopping = true
    broadcast('authgate:stop')
    // Not unref'd: once the last worker is gone nothing else keeps the loop alive, and an empty loop would end the
    // process with code 13 (the CLI's top-level await never settles) instead of 0.
    setInterval(() => { if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0) }, 100)
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  // The primary watches the config folder once and tells every worker to reload (each validates on its own;
  // an invalid file is rejected by all of them alike).
  let timer: NodeJS.Timeout | undefined
  watch(dirname(resolve(file)), { persistent: false }, () => {
    clearTimeout(timer)
    timer = setTimeout(() => broadcast('authgate:reload'), 250)
  }).on('error', () => {})
  await new Promise(() => {})
  return 0
}

/**
 * The demo configuration points its TLS listener at certs/dev/: create that development PKI on first start
 * so `npm start` works with nothing else installed. Only files inside a `certs/dev` folder are ever generated.
 */
export async function ensureDevCerts (file: string, io: CommandIo): Promise<void> {
  let doc: { listeners?: Array<{ tls?: { cert?: string, key?: string } }> }
  try { doc = parseYaml(readFileSync(file, 'utf8')) ?? {} } catch { return }
  const baseDir = dirname(resolve(file))
  for (const listener of doc.listeners ?? []) {
    const cert = listener.tls?.cert
    if (typeof cert !== 'string' || cert.includes('${')) continue
    const certPath = resolve(baseDir, cert)
    const dir = dirname(certPath)
    if (!dir.endsWith(`${sep}certs${sep}dev`) || existsSync(certPath)) continue
    if (await initDevCerts(dir)) io.stderr.write(`authgate: created a development CA and certificates in ${dir} (for local use only)\n`)
  }
}
