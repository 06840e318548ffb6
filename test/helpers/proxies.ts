/**
 * Real nginx and Caddy processes for the decision-mode tests, configured with the very snippets of
 * docs/decision-mode.md (a snippet marked `<!-- tested: nginx -->` right before its code fence), so that the
 * documentation is what is tested. The snippets name example hosts (`authgate:8181`, `orders:8080`,
 * `api.example.com`); the tests replace each of them with a loopback address, and fail when one is missing, so a
 * snippet cannot drift away from what its test substitutes.
 *
 * The binaries come from the system packages (`.ci/run` installs them); `NGINX_BIN` / `CADDY_BIN` override the
 * path. A missing binary fails the test with a message saying so: nothing is skipped. No process outlives the test
 * process.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { ROOT } from './child.js'
import { freePort } from '../e2e/support.js'
import { until } from './until.js'

export const DECISION_DOC = join(ROOT, 'docs/decision-mode.md')

export interface ProxyProcess {
  /** `http://127.0.0.1:PORT`: where clients send their requests. */
  readonly url: string
  readonly port: number
  /** The configuration the process runs, as written to disk. */
  readonly config: string
  /** Everything the process wrote to stdout and stderr so far. */
  output (): string
  /** SIGTERM (SIGKILL after 5 s), then removes its temp folder. */
  stop (): Promise<void>
}

/** What the proxy forwards to: authgate's decision listener and the upstream, as `host:port`. */
export interface ProxyTargets {
  readonly authgate: string
  readonly upstream: string
}

const children = new Set<ChildProcess>()
const tempDirs = new Set<string>()

process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL')
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true })
})

/**
 * The code block that follows `<!-- tested: NAME -->` in the document. Exactly one such marker must exist, followed
 * (after blank lines only) by a fenced code block.
 */
export function testedSnippet (name: string, file = DECISION_DOC): string {
  const text = readFileSync(file, 'utf8')
  const marker = `<!-- tested: ${name} -->`
  const at = text.indexOf(marker)
  if (at === -1) throw new Error(`${file} has no "${marker}" before a code block`)
  if (text.indexOf(marker, at + marker.length) !== -1) throw new Error(`${file} has "${marker}" more than once`)
  const match = /^\s*```[a-z]*\n([\s\S]*?)\n```/.exec(text.slice(at + marker.length))
  if (!match) throw new Error(`"${marker}" in ${file} is not followed by a fenced code block`)
  return match[1]!
}

/**
 * Replaces every occurrence of each key by its value. A key that does not occur is an error: the snippet changed
 * and the test would no longer run what it believes it runs.
 */
export function substitute (text: string, replacements: Readonly<Record<string, string>>): string {
  let out = text
  for (const [from, to] of Object.entries(replacements)) {
    if (!out.includes(from)) throw new Error(`the snippet no longer contains "${from}", which the test replaces by ${to}:\n${text}`)
    out = out.split(from).join(to)
  }
  return out
}

/** The absolute path of an executable: the override variable, else the first match on PATH or in the sbin folders. */
export function findBinary (name: string, override: string | undefined): string {
  const candidates = override ? [override] : [
    ...(process.env.PATH ?? '').split(delimiter).filter(Boolean).map((dir) => join(dir, name)),
    ...['/usr/sbin', '/usr/local/sbin', '/sbin', '/usr/bin', '/usr/local/bin'].map((dir) => join(dir, name)),
  ]
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {} // not this one
  }
  throw new Error(`${name} is not installed (looked for ${override ? override : `${name} on PATH and in the sbin folders`}): ` +
    `the decision-mode tests run the real ${name}. Install the Debian package (apt-get install ${name}); .ci/run does it on CI.`)
}

function makeTempDir (name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `authgate-${name}-`))
  tempDirs.add(dir)
  return dir
}

/**
 * Starts `command` and resolves once 127.0.0.1:`port` accepts connections (probed: a process that starts to listen
 * announces it by no event). Rejects, with the process's output, if it exits first or does not listen within 15 s.
 */
async function launch (name: string, command: string, args: string[], port: number, dir: string, config: string, env: NodeJS.ProcessEnv = process.env): Promise<ProxyProcess> {
  const child = spawn(command, args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  let output = ''
  child.stdout!.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr!.on('data', (chunk: Buffer) => { output += chunk.toString() })
  let exit: string | undefined
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => { exit = String(code ?? signal); children.delete(child); resolve() })
    child.once('error', (error) => { exit = error.message; children.delete(child); resolve() })
  })
  const cleanup = () => { rmSync(dir, { recursive: true, force: true }); tempDirs.delete(dir) }
  const stop = async () => {
    if (exit === undefined) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(timer)
    }
    cleanup()
  }
  try {
    await until(async () => {
      if (exit !== undefined) throw new Error(`${name} exited (${exit}) before listening on port ${port}:\n${output}\n--- its configuration:\n${config}`)
      return await accepts(port)
    }, { timeoutMs: 15_000, message: `${name} to listen on 127.0.0.1:${port}` })
  } catch (error) {
    await stop()
    throw error instanceof Error && error.message.startsWith(name) ? error : new Error(`${(error as Error).message}\n${output}`, { cause: error })
  }
  return { url: `http://127.0.0.1:${port}`, port, config, output: () => output, stop }
}

function accepts (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}

/**
 * nginx running the `<!-- tested: nginx -->` snippet (http-level content: upstream, map and server blocks) inside a
 * minimal main configuration whose temp and log paths are all in a private temp folder.
 */
export async function startNginx (targets: ProxyTargets, options: { snippet?: string } = {}): Promise<ProxyProcess> {
  const bin = findBinary('nginx', process.env.NGINX_BIN)
  const port = await freePort()
  const dir = makeTempDir('nginx')
  const body = substitute(options.snippet ?? testedSnippet('nginx'), {
    'listen 80;': `listen 127.0.0.1:${port};`,
    'authgate:8181': targets.authgate,
    'orders:8080': targets.upstream,
  })
  for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, sub))
  const config = [
    // Workers run as the master's user: as root that is root (nginx would otherwise switch to nobody, who cannot
    // enter the private temp folder); as anyone else the directive would only be ignored with a warning.
    ...(process.getuid?.() === 0 ? ['user root;'] : []),
    'worker_processes 1;',
    'events { worker_connections 256; }',
    'http {',
    '    access_log off;',
    `    client_body_temp_path ${join(dir, 'client_body')};`,
    `    proxy_temp_path ${join(dir, 'proxy')};`,
    `    fastcgi_temp_path ${join(dir, 'fastcgi')};`,
    `    uwsgi_temp_path ${join(dir, 'uwsgi')};`,
    `    scgi_temp_path ${join(dir, 'scgi')};`,
    body.split('\n').map((line) => line === '' ? line : `    ${line}`).join('\n'),
    '}',
    '',
  ].join('\n')
  const file = join(dir, 'nginx.conf')
  writeFileSync(file, config)
  return await launch('nginx', bin, ['-p', dir, '-c', file, '-e', 'stderr', '-g', `daemon off; pid ${join(dir, 'nginx.pid')}; error_log stderr notice;`], port, dir, config)
}

/**
 * Caddy running the `<!-- tested: caddy -->` snippet (one site block) with global options for a test: no admin
 * endpoint, no automatic HTTPS, loopback only, storage and HOME in a private temp folder.
 */
export async function startCaddy (targets: ProxyTargets, options: { snippet?: string } = {}): Promise<ProxyProcess> {
  const bin = findBinary('caddy', process.env.CADDY_BIN)
  const port = await freePort()
  const dir = makeTempDir('caddy')
  const site = substitute(options.snippet ?? testedSnippet('caddy'), {
    'api.example.com {': `http://127.0.0.1:${port} {`,
    'authgate:8181': targets.authgate,
    'orders:8080': targets.upstream,
  })
  const config = [
    '{',
    '\tadmin off',
    '\tauto_https off',
    '\tdefault_bind 127.0.0.1',
    `\tstorage file_system ${join(dir, 'storage')}`,
    '}',
    '',
    site,
    '',
  ].join('\n')
  const file = join(dir, 'Caddyfile')
  writeFileSync(file, config)
  const env = { ...process.env, HOME: dir, XDG_CONFIG_HOME: join(dir, 'config'), XDG_DATA_HOME: join(dir, 'data') }
  return await launch('caddy', bin, ['run', '--config', file, '--adapter', 'caddyfile'], port, dir, config, env)
}
