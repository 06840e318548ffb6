import { pino } from 'pino'
import type { Logger } from './log.js'

/** The fields of the one line per request (DESIGN.md "Logs"), already sanitized by the caller. */
export interface AccessLogEntry {
  readonly requestId: string
  readonly listener: string
  readonly method: string
  readonly path: string
  readonly route: string
  readonly status: number
  readonly code: string
  /** HTTP version: '1.1' or '2'. */
  readonly protocol: string
  readonly subject: string | undefined
  readonly methods: string | undefined
  readonly remote: string | undefined
  /** Decision mode: `nginx`, `forward` or `envoy` (the line then says `"mode":"decide"`). */
  readonly dialect?: string
  readonly durationMs: number
}

interface Destination { write (text: string): unknown }

/**
 * The access-log line, serialized by hand in exactly the format of the gateway's pino logger (`level` as a label,
 * `time` in epoch ms, the fields, `msg`) and handed to the same destination. pino's generic path (bindings, hooks,
 * serializers, a property walk per field) cost more than the rest of the line; these fields are flat and known, so
 * each is one JSON string or number. The level is read once: `log.level` from the configuration at start.
 * Lines are written once per turn of the event loop (setImmediate), not once per request: under load a turn ends
 * many responses, and each write to the destination is a system call.
 */
export class AccessLog {
  readonly #destination: Destination
  readonly #enabled: boolean
  /** Lines of this turn of the event loop, written together at its end. */
  #pending = ''

  constructor (log: Logger) {
    this.#destination = (log as unknown as Record<symbol, Destination>)[pino.symbols.streamSym]!
    this.#enabled = log.isLevelEnabled('info')
  }

  write (entry: AccessLogEntry): void {
    if (!this.#enabled) return
    // Only the path and the subject come from the client; every other field is safe in JSON as it is: a UUID,
    // names the configuration schema restricts to [A-Za-z0-9_.-], a method token from Node's parser, an internal
    // decision code, policy keys, an IP address.
    let line = '{"level":"info","time":' + Date.now() +
      ',"requestId":"' + entry.requestId +
      '","listener":"' + entry.listener +
      '","method":"' + entry.method +
      '","path":' + jsonString(entry.path) +
      ',"route":"' + entry.route +
      '","status":' + entry.status +
      ',"code":"' + entry.code +
      '","protocol":"' + entry.protocol + '"'
    if (entry.subject !== undefined) line += ',"subject":' + jsonString(entry.subject)
    if (entry.methods !== undefined) line += ',"methods":"' + entry.methods + '"'
    if (entry.remote !== undefined) line += ',"remote":"' + entry.remote + '"'
    if (entry.dialect !== undefined) line += ',"mode":"decide","dialect":"' + entry.dialect + '"'
    line += ',"durationMs":' + entry.durationMs + ',"msg":"request"}\n'
    if (this.#pending === '') setImmediate(flushPending, this)
    this.#pending += line
  }

  /** Hands the lines of this turn to the destination (also called at shutdown, before the logger is flushed). */
  flush (): void {
    if (this.#pending === '') return
    const text = this.#pending
    this.#pending = ''
    this.#destination.write(text)
  }
}

function flushPending (log: AccessLog): void { log.flush() }

/** Characters JSON must escape (as JSON.stringify does: U+2028 stays as it is, valid JSON and no newline). */
// eslint-disable-next-line no-control-regex
const NEEDS_ESCAPE = /["\\\u0000-\u001f]/

function jsonString (text: string): string {
  return NEEDS_ESCAPE.test(text) ? JSON.stringify(text) : '"' + text + '"'
}
