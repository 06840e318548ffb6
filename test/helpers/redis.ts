/**
 * Real redis-server processes for tests, on free loopback ports, which tests may kill, pause and restart.
 * `REDIS_SERVER_BIN` / `REDIS_CLI_BIN` override the binaries found on PATH. No process outlives the test process.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { until } from './until.js'

const execFileAsync = promisify(execFile)

export interface RedisServer {
  readonly url: string
  readonly port: number
  /** SIGTERM, and wait for the process to exit. */
  stop (): Promise<void>
  /** SIGKILL (a crash); resolves when the process is gone. */
  kill (): Promise<void>
  /** SIGSTOP: the socket stays open and nothing answers. */
  pause (): void
  /** SIGCONT. */
  resume (): void
  /** Start again on the same port (stopping first if still running); resolves when it answers PING. */
  restart (): Promise<void>
}

export interface RedisCluster {
  /** One redis:// URL per master. */
  readonly urls: string[]
  stop (): Promise<void>
}

export interface StartRedisOptions {
  /** Extra redis-server arguments, e.g. ['--maxmemory', '1mb']. */
  args?: readonly string[]
}

const children = new Set<ChildProcess>()
const tempDirs = new Set<string>()

process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL')
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true })
})
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    for (const child of children) child.kill('SIGKILL')
    process.kill(process.pid, signal) // the listener is gone now: default behaviour
  })
}

/** A test-unique key prefix, e.g. `t-ratelimit-3f9a1c2b:`. */
export function uniquePrefix (name: string): string {
  const safe = name.toLowerCase().replace(/[^a-z0-9-]+/g, '-').slice(0, 32)
  return `t-${safe}-${randomBytes(4).toString('hex')}:`
}

/** Starts a private redis-server on 127.0.0.1 with persistence off. */
export async function startRedis (options: StartRedisOptions = {}): Promise<RedisServer> {
  const dir = makeTempDir()
  const extra = [...await debugArgs(), ...options.args ?? []]
  let { child, port } = await launchOnFreePort((p) => serverArgs(p, dir, extra))
  let paused = false

  const server: RedisServer = {
    url: `redis://127.0.0.1:${port}`,
    port,
    async stop () {
      if (paused) server.resume()
      await terminate(child, 'SIGTERM')
      rmSync(dir, { recursive: true, force: true })
      tempDirs.delete(dir)
    },
    async kill () {
      await terminate(child, 'SIGKILL')
      paused = false
    },
    pause () {
      if (isRunning(child)) child.kill('SIGSTOP')
      paused = true
    },
    resume () {
      if (isRunning(child)) child.kill('SIGCONT')
      paused = false
    },
    async restart () {
      if (paused) server.resume()
      await terminate(child, 'SIGTERM')
      // The port was ours a moment ago; another process may grab it in between, so retry a few times.
      for (let attempt = 1; ; attempt++) {
        try {
          child = await launch(serverArgs(port, dir, extra), port)
          return
        } catch (err) {
          if (!(err instanceof AddressInUse) || attempt >= 20) throw err
          await delay(100)
        }
      }
    },
  }
  return server
}

/** Starts `masters` cluster-enabled redis-servers and joins them with `redis-cli --cluster create` (no replicas). */
export async function startRedisCluster (masters = 3): Promise<RedisCluster> {
  const cli = process.env.REDIS_CLI_BIN ?? 'redis-cli'
  try {
    await execFileAsync(cli, ['--version'])
  } catch (err) {
    throw new Error(`${cli} is needed to create a Redis Cluster and was not found`, { cause: err })
  }
  const dir = makeTempDir()
  const extra = await debugArgs()
  const nodes: Array<{ child: ChildProcess, port: number }> = []
  const stop = async () => {
    await Promise.all(nodes.map(({ child }) => terminate(child, 'SIGTERM')))
    rmSync(dir, { recursive: true, force: true })
    tempDirs.delete(dir)
  }
  try {
    for (let i = 0; i < masters; i++) {
      // The cluster bus listens on port + 10000: both must be free.
      nodes.push(await launchOnFreePort((p) => [
        ...serverArgs(p, dir, extra),
        '--cluster-enabled', 'yes',
        '--cluster-config-file', path.join(dir, `nodes-${p}.conf`),
        '--cluster-node-timeout', '5000',
      ], true))
    }
    await execFileAsync(cli, [
      '--cluster', 'create', ...nodes.map(({ port }) => `127.0.0.1:${port}`),
      '--cluster-replicas', '0', '--cluster-yes',
    ], { timeout: 30_000 })
    await waitFor(async () => {
      for (const { port } of nodes) {
        const info = await command(port, ['CLUSTER', 'INFO'])
        if (!/cluster_state:ok/.test(info)) return false
      }
      return true
    }, 20_000, 'cluster_state:ok on every node')
  } catch (err) {
    await stop()
    throw err
  }
  return { urls: nodes.map(({ port }) => `redis://127.0.0.1:${port}`), stop }
}

/** Sends one command over RESP and returns the reply as text (errors reject). For test plumbing only. */
export function command (port: number, args: readonly string[], timeoutMs = 1000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    let buffer = Buffer.alloc(0)
    const done = (err: Error | undefined, value?: string) => {
      socket.destroy()
      if (err) reject(err)
      else resolve(value ?? '')
    }
    socket.setTimeout(timeoutMs, () => done(new Error(`redis on port ${port} did not answer within ${timeoutMs} ms`)))
    socket.on('error', (err) => done(err))
    socket.on('data', (chunk) => {
      buffer = Buffer.concat([buffer, chunk])
      const reply = parseReply(buffer)
      if (reply instanceof Error) done(reply)
      else if (reply !== undefined) done(undefined, reply)
    })
    socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`)
  })
}

/** A simple, error, integer or bulk reply; undefined while incomplete. */
function parseReply (buffer: Buffer): string | Error | undefined {
  const end = buffer.indexOf('\r\n')
  if (end === -1) return undefined
  const line = buffer.subarray(1, end).toString()
  switch (String.fromCharCode(buffer[0]!)) {
    case '+': case ':': return line
    case '-': return new Error(line)
    case '$': {
      const length = Number(line)
      if (length < 0) return ''
      if (buffer.length < end + 2 + length + 2) return undefined
      return buffer.subarray(end + 2, end + 2 + length).toString()
    }
    default: return new Error(`unexpected reply ${JSON.stringify(buffer.toString().slice(0, 40))}`)
  }
}

class AddressInUse extends Error {}

function serverArgs (port: number, dir: string, extra: readonly string[]): string[] {
  return [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir,
    ...extra,
  ]
}

let debugArgsOnce: Promise<string[]> | undefined

/** Redis 7 refuses DEBUG (DEBUG SLEEP is a fault-injection tool) unless enabled. */
function debugArgs (): Promise<string[]> {
  debugArgsOnce ??= execFileAsync(serverBin(), ['--version']).then(({ stdout }) => {
    const major = Number(/v=(\d+)\./.exec(stdout)?.[1] ?? 0)
    return major >= 7 ? ['--enable-debug-command', 'local'] : []
  })
  return debugArgsOnce
}

function serverBin (): string {
  return process.env.REDIS_SERVER_BIN ?? 'redis-server'
}

async function launchOnFreePort (args: (port: number) => string[], withBus = false): Promise<{ child: ChildProcess, port: number }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort(withBus)
    try {
      return { child: await launch(args(port), port), port }
    } catch (err) {
      if (!(err instanceof AddressInUse) || attempt >= 10) throw err
    }
  }
}

/** Spawns redis-server and resolves once it answers PING; rejects (AddressInUse when the port is taken) if it exits. */
async function launch (args: string[], port: number): Promise<ChildProcess> {
  const child = spawn(serverBin(), args, { stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  let output = ''
  child.stdout!.on('data', (chunk: Buffer) => { output = (output + chunk.toString()).slice(-4000) })
  child.stderr!.on('data', (chunk: Buffer) => { output = (output + chunk.toString()).slice(-4000) })
  const exited = new Promise<never>((_resolve, reject) => {
    child.once('error', (err) => reject(new Error(`cannot run ${serverBin()}: ${err.message}`, { cause: err })))
    child.once('exit', (code, signal) => {
      children.delete(child)
      const Failure = /address already in use/i.test(output) ? AddressInUse : Error
      reject(new Failure(`redis-server on port ${port} exited (${signal ?? code}) before answering:\n${output}`))
    })
  })
  exited.catch(() => {}) // after startup an exit is expected (stop, kill)
  try {
    await Promise.race([exited, waitFor(async () => await command(port, ['PING'], 200) === 'PONG', 10_000, `redis-server on port ${port} to answer PING`)])
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  }
  return child
}

function isRunning (child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null
}

/** Sends the signal and waits for the exit; SIGKILL after 5 s if the process does not go. */
function terminate (child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (!isRunning(child)) return Promise.resolve()
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 5000)
    child.once('exit', () => {
      clearTimeout(force)
      children.delete(child)
      resolve()
    })
    child.kill('SIGCONT') // a stopped process would not act on SIGTERM
    child.kill(signal)
  })
}

/** A port the OS just handed out on 127.0.0.1 (and, with `withBus`, port + 10000 free too). */
async function freePort (withBus: boolean): Promise<number> {
  for (;;) {
    const port = await bindAndRelease(0)
    if (!withBus) return port
    if (port + 10000 <= 65535 && await bindAndRelease(port + 10000).then(() => true, () => false)) return port
  }
}

function bindAndRelease (port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
      const { port: bound } = server.address() as net.AddressInfo
      server.close(() => resolve(bound))
    })
  })
}

function makeTempDir (): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'authgate-redis-'))
  tempDirs.add(dir)
  return dir
}

async function waitFor (check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  await until(() => check().catch(() => false), { timeoutMs, intervalMs: 50, message: what }) // an error: not up yet
}

function delay (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
