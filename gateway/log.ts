import { pino, type Logger as PinoLogger, type DestinationStream } from 'pino'

export type Logger = PinoLogger

/** Header names (lower-case) whose values never reach a log. Extended at load with configured API-key/signature headers. */
export const ALWAYS_REDACTED_HEADERS = [
  'authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-api-key',
  'x-signature', 'signature', 'x-hub-signature-256', 'stripe-signature', 'x-auth-identity',
]

/**
 * Query parameter names whose values are redacted, tested on the name percent-decoded, lower-cased and stripped of
 * everything but letters and digits (`X-Auth-Token`, `auth_token` and `authToken` are all `authtoken`): any name
 * containing token, secret, passw, passc, passp (password, passcode, passphrase), pwd, signature, session, sessid,
 * jwt, credential, assertion, bearer, authorization, verifier, saml, hmac, apikey (api_keys, apikey2) or authcode
 * (auth_code); any name ending in pass, key, key and digits, or sig (client-pass, api-key, key2, x-amz-signature);
 * and the names auth, code, sid, otp, ticket, pw and pin. `passenger`, `zipcode` and `monkeys` stay readable.
 */
const SECRET_NAME = /token|secret|passw|passc|passp|pass$|pwd|signature|session|sessid|jwt|credential|assertion|bearer|authorization|verifier|saml|hmac|apikey|authcode|(?:key\d*|sig)$|^(?:auth|code|sid|otp|ticket|pw|pin)$/

/**
 * A value that is a secret under any name: a JWT (JWS or JWE compact form: `eyJ`, then at least two dots) or an API
 * key. A JWT is matched only where a token starts (the text's start, or after a character that is not part of one):
 * a match tried at every `eyJ` of `eyJeyJeyJ…` would rescan the rest of the text each time, quadratic in a 16 KiB
 * target that any client can send.
 */
const SECRET_VALUE = /(?:^|[^\w-])eyJ[\w-]*\.[\w-]*\.|[aA][gG][kK]_/

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

/**
 * A path and query safe to log: control characters escaped, and the value of every query parameter whose name looks
 * secret (SECRET_NAME), or whose value is a JWT or an `agk_` key under any name, replaced by `[redacted]`
 * (`agk_...` or a JWT as a parameter name: the whole parameter). Both `&` and `;` separate parameters (some
 * upstreams split on `;`); names and values are read percent-decoded too, so `%74oken=` and `x=%65yJ...` are caught.
 * Without a query this is escapeControl alone; a query with nothing to redact is returned as it is, not rebuilt.
 */
export function redactTarget (target: string): string {
  // An absolute-form target (`http://user:password@host/...`, refused with 400) keeps no userinfo in the log.
  if (target.charCodeAt(0) !== 47 && target.includes('@')) target = target.replace(USERINFO, '$1[redacted]@')
  const q = target.indexOf('?')
  if (q === -1) return escapeControl(target)
  let out = ''
  // target[kept..] has not been copied to `out` yet; 0 while nothing was redacted.
  let kept = 0
  for (let start = q + 1; start <= target.length;) {
    let end = start
    while (end < target.length) {
      const c = target.charCodeAt(end)
      if (c === 38 || c === 59) break // & ;
      end++
    }
    if (end > start) {
      const pair = target.slice(start, end)
      const safe = redactParameter(pair)
      if (safe !== pair) {
        out += target.slice(kept, start) + safe
        kept = end
      }
    }
    start = end + 1
  }
  return escapeControl(kept === 0 ? target : out + target.slice(kept))
}

/** One `name=value` (or bare `name`), redacted when it holds a secret. */
function redactParameter (pair: string): string {
  const eq = pair.indexOf('=')
  const rawName = eq === -1 ? pair : pair.slice(0, eq)
  const name = decodeQueryText(rawName)
  if (SECRET_VALUE.test(name)) return '[redacted]'
  if (eq === -1 || eq === pair.length - 1) return pair
  if (SECRET_NAME.test(name.toLowerCase().replace(/[^a-z0-9]/g, ''))) return `${rawName}=[redacted]`
  const value = pair.slice(eq + 1)
  if (SECRET_VALUE.test(value) || SECRET_VALUE.test(decodeQueryText(value))) return `${rawName}=[redacted]`
  return pair
}

/** The userinfo of an absolute-form target: after `scheme://`, up to the last `@` before the path. */
const USERINFO = /^([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^/?#]*@/

const ENCODED = /[%+]/

/** Percent-decoded as the gateway reads queries (URLSearchParams: `+` is a space; a malformed escape stays as it is). */
function decodeQueryText (text: string): string {
  if (!ENCODED.test(text)) return text
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '))
  } catch {
    return new URLSearchParams(`x=${text}`).get('x') ?? text
  }
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
