import { pino, type Logger as PinoLogger, type DestinationStream } from 'pino'

export type Logger = PinoLogger

/** Header names (lower-case) whose values never reach a log. Extended at load with configured API-key/signature headers. */
export const ALWAYS_REDACTED_HEADERS = [
  'authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-api-key',
  'x-signature', 'signature', 'x-hub-signature-256', 'stripe-signature', 'x-auth-identity',
]

/** Query parameter names whose values look like secrets. */
const SECRET_QUERY = /^(access_token|id_token|refresh_token|token|api_key|apikey|x-api-key|key|sig|signature|secret|password|passwd|client_secret|code)$/i

export interface LoggerOptions {
  level?: string
  /** Extra header names to redact (configured API-key and signature headers). */
  redactHeaders?: readonly string[]
  destination?: DestinationStream
}

export function createLogger (options: LoggerOptions = {}): Logger {
  const headers = [...new Set([...ALWAYS_REDACTED_HEADERS, ...(options.redactHeaders ?? []).map((h) => h.toLowerCase())])]
  const paths = headers.flatMap((h) => [`headers["${h}"]`, `req.headers["${h}"]`, `res.headers["${h}"]`])
  return pino({
    level: options.level ?? process.env.AUTHGATE_LOG_LEVEL ?? 'info',
    base: undefined,
    redact: { paths: [...paths, '*.secret', '*.password', '*.token', '*.key'], censor: '[redacted]' },
    formatters: { level: (label) => ({ level: label }) },
  // Synchronous writes, as Node's own process.stdout on Linux (files and pipes): measured 3 µs per request cheaper
  // than pino's asynchronous mode, whose every write is a hand-off to libuv's thread pool (BENCHMARKS.md), and no
  // line is lost at a crash. The one line per request is batched per event-loop turn (access-log.ts), so a busy
  // gateway makes one write per turn, not one per request.
  }, options.destination ?? pino.destination({ sync: true }))
}

/** A path and query safe to log: secret-looking parameter values and `agk_` values replaced, control characters escaped. */
export function redactTarget (target: string): string {
  const q = target.indexOf('?')
  const path = q === -1 ? target : target.slice(0, q)
  if (q === -1) return escapeControl(path)
  const parts = target.slice(q + 1).split('&').map((pair) => {
    const eq = pair.indexOf('=')
    const name = eq === -1 ? pair : pair.slice(0, eq)
    const value = eq === -1 ? '' : pair.slice(eq + 1)
    // Decoded as the gateway reads queries (URLSearchParams: lenient), so `agk%5F...` or `%61gk_...` is caught too.
    const [decodedName, decodedValue] = new URLSearchParams(pair).entries().next().value ?? [name, value]
    if (/agk_/i.test(decodedName)) return '[redacted]'
    if (eq !== -1 && (SECRET_QUERY.test(decodedName) || /agk_/i.test(value) || /agk_/i.test(decodedValue))) return `${name}=[redacted]`
    return pair
  })
  return escapeControl(`${path}?${parts.join('&')}`)
}

// eslint-disable-next-line no-control-regex
const CONTROL_CHAR = /[\u0000-\u001f\u007f]/

/** CR, LF and other control characters escaped so one request is one log line. */
export function escapeControl (text: string): string {
  // The common case, nothing to escape, without building a new string.
  if (!CONTROL_CHAR.test(text)) return text
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
}
