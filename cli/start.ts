/**
 * `authgate start [-c gateway.yaml]`: serve. With `workers: N`, a node:cluster primary supervises N workers.
 * The development PKI (certs/, @peculiar/x509 and its reflect-metadata polyfill) is loaded only when a listener
 * names a certs/dev certificate that does not exist yet: a production start never loads it.
 */
import cluster from 'node:cluster'
import { existsSync, readFileSync, watch } from 'node:fs'
import { availableParallelism } from 'node:os'
import { dirname, resolve, sep } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { checkConfig } from '../gateway/config/load.js'
import { ConfigError } from '../gateway/errors.js'
import { relayBetweenWorkers } from '../gateway/cluster.js'
import { Gateway } from '../gateway/gateway.js'
import { consoleExplain } from './explain/console.js'
import { configFileOf, CONFIG_OPTION, parseArgs, UsageError, type CommandIo } from './command.js'

export async function startCommand (args: readonly string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs(args, CONFIG_OPTION)
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`)
  const file = configFileOf(values)
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
    gateway = await Gateway.start({ configFile: file, watch: cluster.isPrimary, explain: consoleExplain })
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

function ignoreSendError (): void {}

/**
 * `workers: N`: N processes share the listeners (node:cluster). The primary watches the config and relays
 * SIGHUP and SIGTERM to every worker once; a worker that dies unexpectedly is replaced.
 */
async function supervise (count: number, file: string, io: CommandIo): Promise<number> {
  let stopping = false
  relayBetweenWorkers()
  const fork = () => cluster.fork()
  for (let i = 0; i < count; i++) fork()
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return
    io.stderr.write(`authgate: worker ${worker.process.pid} exited (${signal ?? code}); starting another\n`)
    setTimeout(fork, 500).unref()
  })
  // A worker that is exiting has closed its channel: a send to it fails (EPIPE), and without a callback that error
  // is an 'error' event that would end the primary. It is going away anyway, so the error is dropped.
  const broadcast = (message: string) => {
    for (const worker of Object.values(cluster.workers ?? {})) if (worker?.isConnected()) worker.send(message, ignoreSendError)
  }
  // A worker still loading when the stop went out may have missed it: tell it again once it listens.
  cluster.on('listening', (worker) => { if (stopping && worker.isConnected()) worker.send('authgate:stop', ignoreSendError) })
  process.on('SIGHUP', () => { if (!stopping) broadcast('authgate:reload') })
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
    timer = setTimeout(() => { if (!stopping) broadcast('authgate:reload') }, 250)
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
    const { initDevCerts } = await import('../certs/pki.js')
    if (await initDevCerts(dir)) io.stderr.write(`authgate: created a development CA and certificates in ${dir} (for local use only)\n`)
  }
}
