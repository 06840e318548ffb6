/** `authgate passwd USER`: prints an htpasswd line (bcrypt), or an inline scrypt entry with --scrypt. */
import { parseArgs, UsageError, type CommandIo } from '../../cli/command.js'
import { USERNAME_PATTERN } from './schema.js'
import { bcryptHash, scryptHash } from './users.js'

/** Where the password comes from: a TTY (read without echo, in raw mode) or a pipe. */
export interface PasswordInput extends NodeJS.ReadableStream {
  isTTY?: boolean
  setRawMode? (mode: boolean): unknown
}

export const PASSWD_USAGE = `usage: authgate passwd USER [--cost N]     print an htpasswd line USER:$2y$... (bcrypt, cost 10 by default)
       authgate passwd USER --scrypt        print an inline users: entry with a scrypt hash
The password is read without echo from the terminal (twice), or from stdin when piped (one line).
`

const USERNAME = new RegExp(USERNAME_PATTERN)
const MAX_PASSWORD_BYTES = 4096
// bcrypt reads only the first 72 bytes of a password.
const BCRYPT_MAX_BYTES = 72

class InputError extends Error {}

export async function passwdCommand (args: readonly string[], io: CommandIo, input: PasswordInput = process.stdin): Promise<number> {
  try {
    const parsed = parseArgs(args, { cost: { type: 'string' }, scrypt: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } })
    if (parsed.values.help) { io.stdout.write(PASSWD_USAGE); return 0 }
    if (parsed.positionals.length !== 1) throw new UsageError('passwd takes exactly one USER')
    const username = parsed.positionals[0]!
    if (!USERNAME.test(username)) throw new UsageError('USER must be 1 to 256 characters, without ":" or control characters')
    if (parsed.values.scrypt && parsed.values.cost !== undefined) throw new UsageError('--cost is for bcrypt; --scrypt uses N=32768, r=8, p=1')
    const cost = parsed.values.cost === undefined ? 10 : Number(parsed.values.cost)
    if (!/^\d+$/.test(parsed.values.cost ?? '10') || cost < 4 || cost > 20) throw new UsageError('--cost must be a whole number from 4 to 20 (10 is the default; each step doubles the work)')

    const password = await readPassword(input, io)
    if (password === '') throw new InputError('refusing an empty password')
    if (!parsed.values.scrypt && Buffer.byteLength(password) > BCRYPT_MAX_BYTES) {
      throw new InputError(`bcrypt uses only the first ${BCRYPT_MAX_BYTES} bytes of a password; use a shorter one, or --scrypt`)
    }
    if (parsed.values.scrypt) {
      const hash = await scryptHash(password)
      io.stdout.write(`- { username: ${JSON.stringify(username)}, hash: "${hash}" }\n`)
    } else {
      io.stdout.write(`${username}:${await bcryptHash(password, cost)}\n`)
    }
    return 0
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(`authgate passwd: ${error.message}\n${PASSWD_USAGE}`)
      return 2
    }
    io.stderr.write(`authgate passwd: ${error instanceof Error ? error.message : String(error)}\n`)
    return 1
  }
}

async function readPassword (input: PasswordInput, io: CommandIo): Promise<string> {
  if (input.isTTY && typeof input.setRawMode === 'function') {
    const first = await readHidden(input, io, 'Password: ')
    if (first === '') return first
    const again = await readHidden(input, io, 'Retype password: ')
    if (again !== first) throw new InputError('the passwords do not match')
    return first
  }
  const text = await readAll(input)
  // One line: a single trailing newline (echo, a file) is not part of the password.
  const password = text.replace(/\r?\n$/, '')
  if (/[\r\n]/.test(password)) throw new InputError('the password must be a single line')
  checkCharacters(password)
  return password
}

function checkCharacters (password: string): void {
  // RFC 7617 §2: a Basic password has no control characters, so such a password could never be sent.
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(password)) throw new InputError('the password contains control characters')
}

async function readAll (input: PasswordInput): Promise<string> {
  const chunks: Buffer[] = []
  let total = 0
  for await (const chunk of input) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array)
    total += buffer.length
    if (total > MAX_PASSWORD_BYTES) throw new InputError(`the password is longer than ${MAX_PASSWORD_BYTES} bytes`)
    chunks.push(buffer)
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks))
  } catch {
    throw new InputError('the password is not valid UTF-8')
  }
}

/** Reads one line in raw mode without echo: Enter ends it, Backspace deletes, Ctrl-C cancels. */
function readHidden (input: PasswordInput, io: CommandIo, prompt: string): Promise<string> {
  io.stderr.write(prompt)
  return new Promise((resolve, reject) => {
    let value = ''
    const finish = (error?: Error) => {
      input.removeListener('data', onData)
      input.setRawMode!(false)
      input.pause()
      io.stderr.write('\n')
      if (error) reject(error)
      else resolve(value)
    }
    const onData = (chunk: Buffer | string) => {
      for (const char of typeof chunk === 'string' ? chunk : chunk.toString('utf8')) {
        if (char === '\r' || char === '\n' || char === '\u0004') { finish(); return }
        if (char === '\u0003') { finish(new InputError('cancelled')); return }
        if (char === '\u007f' || char === '\b') { value = [...value].slice(0, -1).join(''); continue }
        if (char < ' ') continue
        value += char
        if (Buffer.byteLength(value) > MAX_PASSWORD_BYTES) { finish(new InputError(`the password is longer than ${MAX_PASSWORD_BYTES} bytes`)); return }
      }
    }
    input.setRawMode!(true)
    input.on('data', onData)
    input.resume()
  })
}
