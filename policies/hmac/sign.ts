/**
 * Client side: sign requests the way the `hmac` policy verifies them.
 *
 * - `signRequest(...)` returns the headers to add (hmac-sha256 or rfc9421).
 * - `signingInterceptor(...)` signs every request of an undici 7 dispatcher:
 *   `new Agent().compose(signingInterceptor({ keyId, secret }))`.
 * - `signCommand(...)` is `authgate sign`, printing `Name: value` lines for `curl -H`.
 */
import { createHash, createHmac, createPrivateKey, createSecretKey, randomBytes, type KeyObject } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import type { Dispatcher } from 'undici'
import { parseArgs, UsageError, type CommandIo } from '../../cli/command.js'
import { createContentDigest } from './content-digest.js'
import { algorithmForKey, isSignatureAlgorithm, requestMessage, signRfc9421, type SignatureAlgorithm, type SignatureParams } from './rfc9421.js'

export interface SignRequestOptions {
  /** Default `hmac-sha256`. */
  readonly scheme?: 'hmac-sha256' | 'rfc9421'
  readonly keyId: string
  /** HMAC secret: a string's UTF-8 bytes (or base64-decoded with `secretEncoding: 'base64'`), or raw bytes. */
  readonly secret?: string | Uint8Array
  readonly secretEncoding?: 'utf8' | 'base64'
  /** rfc9421 with a key pair: the private key (KeyObject or PEM). */
  readonly privateKey?: KeyObject | string
  /** rfc9421: default from the key (Ed25519 → ed25519, P-256 → ecdsa-p256-sha256, RSA → rsa-pss-sha512, secret → hmac-sha256). */
  readonly algorithm?: SignatureAlgorithm
  readonly method: string
  readonly url: string | URL
  /** The request-target exactly as it will be sent, when it differs from the URL's serialized path and query. */
  readonly target?: string
  /** Headers the request will carry (needed when rfc9421 components cover them; `host` overrides the URL's). */
  readonly headers?: Readonly<Record<string, string | readonly string[] | undefined>>
  readonly body?: string | Uint8Array | null
  /** Current time in ms (default Date.now()). */
  readonly now?: number
  /** hmac-sha256: header names, as configured on the gateway. */
  readonly headerNames?: { readonly keyId?: string, readonly timestamp?: string, readonly signature?: string }
  /** rfc9421: covered components. Default `@method`, `@target-uri`, and `content-digest` when there is a body. */
  readonly components?: readonly string[]
  /** rfc9421: `true` for a random nonce, or the nonce itself. */
  readonly nonce?: boolean | string
  readonly tag?: string
  /** rfc9421: signature label, default `sig1`. */
  readonly label?: string
  /** rfc9421: add `expires` this many seconds after `created`. */
  readonly expiresInSeconds?: number
}

function secretKey (secret: string | Uint8Array, encoding: 'utf8' | 'base64' | undefined): KeyObject {
  const bytes = typeof secret === 'string' ? Buffer.from(secret, encoding === 'base64' ? 'base64' : 'utf8') : Buffer.from(secret)
  if (bytes.length === 0) throw new TypeError('the signing secret is empty')
  return createSecretKey(bytes)
}

function bodyBytes (body: string | Uint8Array | null | undefined): Buffer {
  if (body === undefined || body === null) return Buffer.alloc(0)
  return typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body.buffer, body.byteOffset, body.byteLength)
}

/**
 * The headers that sign this request. hmac-sha256: X-Key-Id, X-Timestamp, X-Signature. rfc9421:
 * Signature-Input and Signature (created, keyid, alg), plus Content-Digest (sha-256) when there is a body.
 * The request must then be sent with exactly this method, URL (path and query as given) and body.
 * Throws TypeError for a missing key or a covered component the request does not have.
 */
export function signRequest (options: SignRequestOptions): Record<string, string> {
  const url = typeof options.url === 'string' ? new URL(options.url) : options.url
  const method = options.method.toUpperCase()
  const body = bodyBytes(options.body)
  const nowMs = options.now ?? Date.now()
  const seconds = Math.floor(nowMs / 1000)

  if ((options.scheme ?? 'hmac-sha256') === 'hmac-sha256') {
    if (options.secret === undefined) throw new TypeError('hmac-sha256 signing needs a secret')
    const key = secretKey(options.secret, options.secretEncoding)
    const target = options.target ?? `${url.pathname}${url.search}`
    const base = `${method}\n${target}\n${seconds}\n${createHash('sha256').update(body).digest('hex')}`
    const names = options.headerNames ?? {}
    return {
      [names.keyId ?? 'X-Key-Id']: options.keyId,
      [names.timestamp ?? 'X-Timestamp']: String(seconds),
      [names.signature ?? 'X-Signature']: createHmac('sha256', key).update(base).digest('base64'),
    }
  }

  let key: KeyObject
  if (options.privateKey !== undefined) {
    key = typeof options.privateKey === 'string' ? createPrivateKey(options.privateKey) : options.privateKey
  } else if (options.secret !== undefined) {
    key = secretKey(options.secret, options.secretEncoding)
  } else {
    throw new TypeError('rfc9421 signing needs a secret or a privateKey')
  }
  const algorithm = options.algorithm ?? algorithmForKey(key)
  if (algorithm === undefined) throw new TypeError('cannot tell the signature algorithm from this key: give `algorithm`')

  const added: Record<string, string> = {}
  const headers: Record<string, string | readonly string[] | undefined> = { ...options.headers }
  if (body.length > 0) {
    added['Content-Digest'] = createContentDigest(body, 'sha-256')
    for (const name of Object.keys(headers)) if (name.toLowerCase() === 'content-digest') delete headers[name]
    headers['content-digest'] = added['Content-Digest']
  }
  const components = options.components ?? ['@method', '@target-uri', ...(body.length > 0 ? ['content-digest'] : [])]
  const nonce = options.nonce === true ? randomBytes(16).toString('base64url') : options.nonce || undefined
  const params: SignatureParams = {
    created: seconds,
    ...(options.expiresInSeconds !== undefined ? { expires: seconds + options.expiresInSeconds } : {}),
    keyid: options.keyId,
    alg: algorithm,
    ...(nonce !== undefined ? { nonce } : {}),
    ...(options.tag !== undefined ? { tag: options.tag } : {}),
  }
  const signed = signRfc9421({
    message: { ...requestMessage(method, url, headers), ...(options.target !== undefined ? { target: options.target } : {}) },
    components,
    params,
    algorithm,
    key,
    ...(options.label !== undefined ? { label: options.label } : {}),
  })
  if (!signed.ok) throw new TypeError(`cannot sign: ${signed.error}`)
  added['Signature-Input'] = signed.value.signatureInput
  added.Signature = signed.value.signatureField
  return added
}

// undici interceptor

export type SigningInterceptorOptions = Omit<SignRequestOptions, 'method' | 'url' | 'target' | 'headers' | 'body' | 'now'> & {
  /** Largest streamed (async iterable) body buffered for signing; default 1 MiB. */
  readonly maxBodyBytes?: number
  /** Clock in ms (tests). */
  readonly now?: () => number
}

type Headers = Record<string, string | string[]>

/** Any undici header shape (object, flat array, iterable of pairs) as a plain object with lower-case names. */
function normalizeHeaders (headers: Dispatcher.DispatchOptions['headers']): Headers {
  // No prototype: a header named `constructor` or `__proto__` is a header, not an inherited property.
  const out: Headers = Object.create(null) as Headers
  const add = (name: string, value: unknown) => {
    if (value === undefined || value === null) return
    const key = name.toLowerCase()
    const values = Array.isArray(value) ? value.map(String) : [String(value)]
    const existing = out[key]
    out[key] = existing === undefined ? (values.length === 1 ? values[0]! : values) : [...(Array.isArray(existing) ? existing : [existing]), ...values]
  }
  if (headers === undefined || headers === null) return out
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) add(String(headers[i]), headers[i + 1])
  } else if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === 'function') {
    for (const [name, value] of headers as Iterable<[string, unknown]>) add(name, value)
  } else {
    for (const [name, value] of Object.entries(headers as Record<string, unknown>)) add(name, value)
  }
  return out
}

function isAsyncIterable (value: unknown): value is AsyncIterable<Uint8Array | string> {
  return typeof value === 'object' && value !== null && typeof (value as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function'
}

async function collect (body: AsyncIterable<Uint8Array | string>, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let total = 0
  for await (const chunk of body) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    total += bytes.length
    if (total > maxBytes) throw new RangeError(`request body exceeds ${maxBytes} bytes: too large to buffer for signing (raise maxBodyBytes)`)
    chunks.push(bytes)
  }
  return Buffer.concat(chunks, total)
}

/** A stand-in controller for reporting an error before the request was dispatched. */
const idleController = { abort () {}, pause () {}, resume () {}, aborted: false, paused: false, reason: null }

/**
 * An undici 7 interceptor that signs every request: `agent.compose(signingInterceptor({ keyId, secret }))`.
 * String and byte bodies are signed as they are; streamed bodies (fetch always streams, Node Readables)
 * are buffered up to `maxBodyBytes` first. FormData bodies are refused: serialize them yourself.
 */
export function signingInterceptor (options: SigningInterceptorOptions): Dispatcher.DispatcherComposeInterceptor {
  const maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024
  const { now, maxBodyBytes: _max, ...signing } = options
  return (dispatch) => (opts, handler) => {
    const sign = (body: string | Buffer | Uint8Array | null) => {
      const origin = opts.origin === undefined ? '' : String(opts.origin).replace(/\/$/, '')
      const headers = normalizeHeaders(opts.headers)
      const added = signRequest({
        ...signing,
        method: opts.method,
        url: `${origin}${opts.path}`,
        // undici sends the path as given: sign exactly that, not the URL parser's normalization of it
        target: opts.path,
        headers,
        body,
        now: now ? now() : Date.now(),
      })
      for (const [name, value] of Object.entries(added)) headers[name.toLowerCase()] = value
      return dispatch({ ...opts, headers, body }, handler)
    }

    const body = opts.body
    if (body === undefined || body === null || typeof body === 'string' || body instanceof Uint8Array) return sign(body ?? null)
    if (typeof FormData !== 'undefined' && body instanceof FormData) {
      throw new TypeError('signingInterceptor cannot sign a FormData body: serialize it to a string or Buffer first')
    }
    if (!isAsyncIterable(body)) throw new TypeError('signingInterceptor can sign string, Buffer, Uint8Array and streamed bodies only')
    collect(body, maxBodyBytes).then(sign).catch((error: Error) => {
      handler.onResponseError?.(idleController as unknown as Dispatcher.DispatchController, error)
    })
    return true
  }
}

// authgate sign

export interface SignCommandIo extends CommandIo {
  /** Default process.env. */
  env?: Readonly<Record<string, string | undefined>>
  /** Folder `--data @file` and `--key-file` are relative to; default process.cwd(). */
  cwd?: string
  /** Clock in ms (tests). */
  now?: () => number
}

export const SIGN_USAGE = `usage: authgate sign --key-id ID (--secret-env VAR | --key-file PEM) [--scheme hmac-sha256|rfc9421]
                     [--secret-encoding utf8|base64] [--algorithm ALG] METHOD URL [--data @FILE|TEXT]

Prints the signature headers as "Name: value" lines for curl -H. Send the body with
curl --data-binary (so the bytes are exactly those signed) and the URL exactly as given.
The secret is read from the environment variable VAR; it is never printed.
  --scheme         hmac-sha256 (default) or rfc9421 (HTTP Message Signatures)
  --key-file       rfc9421 only: PEM private key (ed25519, ecdsa P-256, RSA)
  --algorithm      rfc9421 only: rsa-pss-sha512 (default for RSA) or rsa-v1_5-sha256
`

const VALUE_FLAGS = ['key-id', 'secret-env', 'scheme', 'data', 'secret-encoding', 'key-file', 'algorithm'] as const

function parseSignArgs (args: readonly string[]): { help: boolean, flags: Map<string, string>, positional: string[] } {
  const options = Object.fromEntries(VALUE_FLAGS.map((name) => [name, { type: 'string', multiple: true } as const]))
  const { values, positionals } = parseArgs(args, { ...options, help: { type: 'boolean' } })
  const given = values as Readonly<Record<string, string[] | undefined>>
  const flags = new Map<string, string>()
  for (const name of VALUE_FLAGS) {
    const list = given[name]
    if (list === undefined) continue
    if (list.some((value) => value === '')) throw new UsageError(`--${name} needs a value`)
    if (list.length > 1) throw new UsageError(`--${name} given twice`)
    flags.set(name, list[0]!)
  }
  return { help: values.help === true, flags, positional: positionals }
}

/** `authgate sign ...`: exit 0, 2 on a usage error, 1 when a file cannot be read or signing fails. */
export async function signCommand (args: readonly string[], io: SignCommandIo): Promise<number> {
  const env = io.env ?? process.env
  const cwd = io.cwd ?? process.cwd()
  let request: SignRequestOptions
  try {
    const { help, flags, positional } = parseSignArgs(args)
    if (help) {
      io.stdout.write(SIGN_USAGE)
      return 0
    }
    if (positional.length !== 2) throw new UsageError(positional.length < 2 ? 'METHOD and URL are required' : `unexpected argument "${positional[2]}"`)
    const [method, rawUrl] = positional as [string, string]
    if (!/^[A-Za-z]+$/.test(method)) throw new UsageError(`"${method}" is not an HTTP method`)
    let url: URL
    try {
      url = new URL(rawUrl)
    } catch {
      throw new UsageError('URL must be absolute, e.g. https://api.example.com/v1/orders')
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError('URL must be http:// or https://')
    const keyId = flags.get('key-id')
    if (keyId === undefined) throw new UsageError('--key-id is required')
    const scheme = flags.get('scheme') ?? 'hmac-sha256'
    if (scheme !== 'hmac-sha256' && scheme !== 'rfc9421') throw new UsageError('--scheme must be hmac-sha256 or rfc9421')
    const encoding = flags.get('secret-encoding') ?? 'utf8'
    if (encoding !== 'utf8' && encoding !== 'base64') throw new UsageError('--secret-encoding must be utf8 or base64')
    const algorithm = flags.get('algorithm')
    if (algorithm !== undefined && (!isSignatureAlgorithm(algorithm) || scheme !== 'rfc9421')) {
      throw new UsageError('--algorithm is for --scheme rfc9421: hmac-sha256, ed25519, ecdsa-p256-sha256, rsa-pss-sha512 or rsa-v1_5-sha256')
    }
    const secretEnv = flags.get('secret-env')
    const keyFile = flags.get('key-file')
    if ((secretEnv === undefined) === (keyFile === undefined)) throw new UsageError('give exactly one of --secret-env VAR and --key-file PEM')
    if (keyFile !== undefined && scheme !== 'rfc9421') throw new UsageError('--key-file needs --scheme rfc9421 (hmac-sha256 uses a shared secret)')
    let secret: string | undefined
    if (secretEnv !== undefined) {
      // Own variables only: `--secret-env constructor` must not find Object.prototype.constructor.
      secret = Object.hasOwn(env, secretEnv) ? env[secretEnv] : undefined
      if (secret === undefined || secret === '') throw new UsageError(`environment variable ${secretEnv} is not set`)
    }

    let privateKey: KeyObject | undefined
    let body: Buffer | undefined
    try {
      if (keyFile !== undefined) privateKey = createPrivateKey(await readFile(resolve(cwd, keyFile)))
      const data = flags.get('data')
      if (data !== undefined) body = data.startsWith('@') ? await readFile(resolve(cwd, data.slice(1))) : Buffer.from(data, 'utf8')
    } catch (error) {
      io.stderr.write(`authgate sign: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : 'cannot read'}: ${(error as Error).message.replace(/^[A-Z]+: /, '')}\n`)
      return 1
    }
    request = {
      scheme,
      keyId,
      method,
      url,
      ...(secret !== undefined ? { secret, secretEncoding: encoding } : {}),
      ...(privateKey !== undefined ? { privateKey } : {}),
      ...(algorithm !== undefined ? { algorithm } : {}),
      ...(body !== undefined ? { body } : {}),
      now: io.now ? io.now() : Date.now(),
    }
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(`authgate sign: ${error.message}\n\n${SIGN_USAGE}`)
      return 2
    }
    throw error
  }
  let headers: Record<string, string>
  try {
    headers = signRequest(request)
  } catch (error) {
    // Never the secret: only what went wrong.
    io.stderr.write(`authgate sign: ${(error as Error).message}\n`)
    return 1
  }
  for (const [name, value] of Object.entries(headers)) io.stdout.write(`${name}: ${value}\n`)
  return 0
}
