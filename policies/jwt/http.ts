import { isIPv4 } from 'node:net'
import { request } from 'undici'

/** Why a remote credential source (JWKS, discovery, introspection) could not be read. Never holds a secret. */
export class RemoteSourceError extends Error {
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'RemoteSourceError'
  }
}

/** 127.0.0.0/8, ::1 and `localhost`: the only hosts where plain http is allowed (tests, sidecars). */
export function isLoopbackHost (hostname: string): boolean {
  const host = hostname.toLowerCase()
  if (host === 'localhost' || host === '[::1]' || host === '::1') return true
  return isIPv4(host) && host.startsWith('127.')
}

/** Why `url` may not be used as a remote key or token source, or undefined when it may. */
export function remoteUrlProblem (url: string): string | undefined {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return 'is not a URL'
  }
  if (parsed.username !== '' || parsed.password !== '') return 'must not carry credentials'
  if (parsed.protocol === 'https:') return undefined
  if (parsed.protocol === 'http:' && isLoopbackHost(parsed.hostname)) return undefined
  return 'must use https (plain http only on loopback: 127.0.0.1, ::1, localhost)'
}

export interface FetchLimits {
  readonly timeoutMs: number
  readonly maxBytes: number
}

export interface JsonRequest extends FetchLimits {
  readonly method?: 'GET' | 'POST'
  readonly headers?: Record<string, string>
  readonly body?: string
}

/**
 * One JSON request to a remote credential source, bounded in time and size; redirects are not
 * followed (a redirect could leave https). Throws RemoteSourceError for any failure, with the
 * status but never the response body in the message.
 */
export async function fetchJson (url: string, options: JsonRequest): Promise<unknown> {
  const problem = remoteUrlProblem(url)
  if (problem !== undefined) throw new RemoteSourceError(`${url} ${problem}`)
  let response: Awaited<ReturnType<typeof request>>
  try {
    response = await request(url, {
      method: options.method ?? 'GET',
      headers: { accept: 'application/json', ...options.headers },
      body: options.body,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      signal: AbortSignal.timeout(options.timeoutMs),
    })
  } catch (error) {
    throw new RemoteSourceError(`${url}: ${describe(error)}`, { cause: error })
  }
  const { statusCode, headers, body } = response
  // Destroying an undici body emits an AbortError; nobody else listens, so we do.
  body.on('error', () => {})
  if (statusCode < 200 || statusCode > 299) {
    body.destroy()
    throw new RemoteSourceError(`${url} answered ${statusCode}`)
  }
  const declared = Number(headers['content-length'])
  if (Number.isFinite(declared) && declared > options.maxBytes) {
    body.destroy()
    throw new RemoteSourceError(`${url} answered ${declared} bytes, more than the ${options.maxBytes} allowed`)
  }
  const chunks: Buffer[] = []
  let total = 0
  try {
    for await (const chunk of body) {
      total += (chunk as Buffer).length
      if (total > options.maxBytes) {
        body.destroy()
        throw new RemoteSourceError(`${url} answered more than the ${options.maxBytes} bytes allowed`)
      }
      chunks.push(chunk as Buffer)
    }
  } catch (error) {
    if (error instanceof RemoteSourceError) throw error
    throw new RemoteSourceError(`${url}: ${describe(error)}`, { cause: error })
  }
  try {
    return JSON.parse(Buffer.concat(chunks, total).toString('utf8'))
  } catch (error) {
    throw new RemoteSourceError(`${url} did not answer JSON`, { cause: error })
  }
}

function describe (error: unknown): string {
  if (error instanceof Error) {
    if (error.name === 'TimeoutError' || error.name === 'AbortError' || /timeout/i.test(error.name)) return 'timed out'
    const code = (error as { code?: unknown }).code
    return typeof code === 'string' ? code : error.message
  }
  return String(error)
}
