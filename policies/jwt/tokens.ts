import { parseDuration } from '../../gateway/config/units.js'
import type { Store } from '../../gateway/store/types.js'
import { REVOKED_PREFIX } from './provider.js'
import { configFileOf, CONFIG_OPTION, parseArgs, UsageError, type CommandIo } from '../../cli/command.js'

/**
 * Puts `jti` on the deny-list until `untilMs` (ms since epoch). Every instance sees it on the next
 * request: providers with `revocation: true` read the list on every request, cached token or not.
 */
export async function revokeJti (store: Store, jti: string, untilMs: number, nowMs = Date.now()): Promise<void> {
  if (jti === '') throw new RangeError('jti is empty')
  if (!Number.isFinite(untilMs) || untilMs <= nowMs) throw new RangeError('the revocation must end in the future')
  await store.set(REVOKED_PREFIX + jti, String(untilMs), untilMs - nowMs)
}

/** `--until` as a duration from now (`24h`) or an ISO 8601 time; undefined when it is neither. */
export function parseUntil (text: string, nowMs: number): number | undefined {
  try {
    return nowMs + parseDuration(text)
  } catch {}
  if (!/^\d{4}-\d{2}-\d{2}/.test(text)) return undefined
  const ms = Date.parse(text)
  return Number.isNaN(ms) ? undefined : ms
}

const USAGE = 'usage: authgate tokens revoke JTI --until <24h | 2025-01-31T00:00:00Z> [-c gateway.yaml] [--json]\n'

/**
 * `authgate tokens revoke JTI --until <duration | ISO time> [--json] [-c FILE]`: `openStore` opens the store that
 * FILE configures. Returns the exit code.
 */
export async function tokensCommand (args: readonly string[], io: CommandIo, openStore: (configFile: string) => Promise<Store>,
  nowMs = Date.now()): Promise<number> {
  let parsed
  try {
    parsed = parseArgs(args, { ...CONFIG_OPTION, until: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } })
  } catch (error) {
    if (!(error instanceof UsageError)) throw error
    io.stderr.write(`${error.message}\n${USAGE}`)
    return 2
  }
  const { values, positionals: positional } = parsed
  if (values.help === true) {
    io.stdout.write(USAGE)
    return 0
  }
  const until = values.until
  const json = values.json === true
  const [command, jti, ...rest] = positional
  if (command !== 'revoke' || jti === undefined || rest.length > 0) {
    io.stderr.write(USAGE)
    return 2
  }
  if (until === undefined) {
    io.stderr.write(`--until is required: the token's exp or later (a revocation that ends early lets the token back in)\n${USAGE}`)
    return 2
  }
  const untilMs = parseUntil(until, nowMs)
  if (untilMs === undefined || untilMs <= nowMs) {
    io.stderr.write(`--until ${JSON.stringify(until)} is not a duration (24h) or a future ISO time\n`)
    return 2
  }
  const store = await openStore(configFileOf(values))
  try {
    await revokeJti(store, jti, untilMs, nowMs)
  } finally {
    await store.close()
  }
  const iso = new Date(untilMs).toISOString()
  io.stdout.write(json ? `${JSON.stringify({ jti, revoked: true, until: iso })}\n` : `revoked ${jti} until ${iso}\n`)
  return 0
}
