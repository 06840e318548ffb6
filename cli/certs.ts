/** `authgate certs ...`: the development PKI from the command line. */
import { join } from 'node:path'
import { DEV_CLIENT_NAME, DEV_FILES, initDevCerts, issueClientToDir, parseSans } from '../certs/pki.js'
import { parseArgs, UsageError, type CommandIo } from './command.js'

export const CERTS_USAGE = `usage: authgate certs init [--dir certs/dev] [--force]
       authgate certs client NAME [--dir certs/dev] [--san URI|DNS:name|IP:addr]... [--force]
`

const DEFAULT_DIR = 'certs/dev'

/** Runs `authgate certs ARGS...`; returns the exit code (2: usage error, 1: failure). */
export async function certsCommand (args: readonly string[], io: CommandIo): Promise<number> {
  try {
    const [command, ...rest] = args
    if (command === '-h' || command === '--help' || command === 'help') {
      io.stdout.write(CERTS_USAGE)
      return 0
    }
    if (command === 'init') return await init(parseOptions(rest, false), io)
    if (command === 'client') return await client(parseOptions(rest, true), io)
    throw new UsageError(command === undefined ? 'missing subcommand' : `unknown subcommand "${command}"`)
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(`authgate certs: ${error.message}\n${CERTS_USAGE}`)
      return 2
    }
    io.stderr.write(`authgate certs: ${error instanceof Error ? error.message : String(error)}\n`)
    return 1
  }
}

interface Options {
  dir: string
  force: boolean
  sans: string[]
  name?: string
}

function parseOptions (args: readonly string[], takesName: boolean): Options {
  const { values, positionals: positional } = parseArgs(args, {
    dir: { type: 'string' },
    force: { type: 'boolean' },
    ...(takesName ? { san: { type: 'string', multiple: true } } : {}),
  })
  const san = (values as { san?: string[] }).san ?? []
  if (values.dir === '') throw new UsageError('--dir needs a value')
  if (san.includes('')) throw new UsageError('--san needs a value')
  const options: Options = { dir: values.dir ?? DEFAULT_DIR, force: values.force === true, sans: san }
  if (takesName) {
    if (positional.length !== 1) throw new UsageError('certs client takes exactly one NAME')
    options.name = positional[0]!
    try {
      parseSans(options.sans)
    } catch (error) {
      throw new UsageError((error as Error).message)
    }
  } else if (positional.length > 0) {
    throw new UsageError(`unexpected argument "${positional[0]}"`)
  }
  return options
}

async function init ({ dir, force }: Options, io: CommandIo): Promise<number> {
  const created = await initDevCerts(dir, { force })
  if (!created) {
    io.stdout.write(`${dir}: development certificates already exist (--force replaces them)\n`)
    return 0
  }
  io.stdout.write(`wrote development certificates to ${dir}: ${Object.values(DEV_FILES).join(' ')}\n` +
    `  server: CN=localhost (localhost, 127.0.0.1, ::1); client: CN=${DEV_CLIENT_NAME}\n` +
    `  try: curl --cacert ${join(dir, DEV_FILES.caCert)} --cert ${join(dir, DEV_FILES.clientCert)} ` +
    `--key ${join(dir, DEV_FILES.clientKey)} https://localhost:8443/\n` +
    '  these are for development only: never trust this CA anywhere else\n')
  return 0
}

async function client ({ dir, force, sans, name }: Options, io: CommandIo): Promise<number> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name!) || name === 'ca' || name === 'server') {
    throw new UsageError(`invalid NAME "${name}": letters, digits, ".", "_" and "-"; not "ca" or "server"`)
  }
  const issued = await issueClientToDir(dir, name!, { sans, force })
  io.stdout.write(`wrote ${issued.certPath} and ${issued.keyPath} (CN=${name}` +
    `${sans.length > 0 ? `, SAN ${sans.join(' ')}` : ''})\n`)
  return 0
}
