/** `authgate keys ...`: the API key lifecycle against the configured store (Redis); `authgate hash-key KEY`. */
import { configFileOf, CONFIG_OPTION, parseArgs, UsageError, type CommandIo, type OptionSpecs } from '../../cli/command.js'
import { loadConfig } from '../../gateway/config/load.js'
import { parseDuration } from '../../gateway/config/units.js'
import { ConfigError, StoreUnavailableError, formatIssues } from '../../gateway/errors.js'
import { createStore } from '../../gateway/store/index.js'
import type { Store } from '../../gateway/store/types.js'
import { hashApiKey, parseApiKey } from './format.js'
import { staticApiKeys } from './records.js'
import { KeyRequestError, KeyService, type CreatedKey, type KeyListing } from './service.js'

export interface OpenedStore {
  readonly store: Store
  /** The validated configuration document (its `apiKeys:` are listed read-only). */
  readonly config: Readonly<Record<string, unknown>>
}

export type OpenStore = (configFile: string) => Promise<OpenedStore>

export const KEYS_USAGE = `usage: authgate keys create --client NAME [--scopes a,b] [--tier T] [--expires 90d] [--json] [-c FILE]
       authgate keys list [--json] [-c FILE]
       authgate keys revoke ID [--json] [-c FILE]
       authgate keys rotate ID [--grace 24h] [--json] [-c FILE]
`

/**
 * Opens the store that gateway.yaml configures. Dynamic keys must outlive this command, so the in-process memory
 * store is refused: use Redis, or the admin API of the running gateway (`POST /admin/keys`).
 */
export async function openConfiguredStore (configFile: string): Promise<OpenedStore> {
  const config = loadConfig(configFile)
  const { redis, prefix, timeout } = config.doc.store
  if (redis === undefined || redis === '') {
    throw new Error(`${configFile} uses the in-process memory store (store.redis is empty): keys made by this command would vanish when it exits. Set store.redis, or use the running gateway's admin API (POST /admin/keys).`)
  }
  // The CLI may wait a little longer than a request would for the first connection.
  const store = createStore({ redis, prefix, timeoutMs: Math.max(parseDuration(timeout), 3000) })
  return { store, config: config.doc }
}

/** Runs `authgate keys ARGS...`; returns the exit code (2: usage error, 1: failure). */
export async function keysCommand (args: readonly string[], io: CommandIo, openStore: OpenStore = openConfiguredStore): Promise<number> {
  let opened: OpenedStore | undefined
  try {
    const [sub, ...rest] = args
    if (sub === '-h' || sub === '--help' || sub === 'help') {
      io.stdout.write(KEYS_USAGE)
      return 0
    }
    const options: OptionSpecs = {
      ...CONFIG_OPTION, json: { type: 'boolean' },
      ...(sub === 'create' ? { client: { type: 'string' }, scopes: { type: 'string' }, tier: { type: 'string' }, expires: { type: 'string' } } : {}),
      ...(sub === 'rotate' ? { grace: { type: 'string' } } : {}),
    }
    if (sub === undefined) throw new UsageError('missing subcommand (create, list, revoke, rotate)')
    if (!['create', 'list', 'revoke', 'rotate'].includes(sub)) throw new UsageError(`unknown subcommand "${sub}"`)
    const { values, positionals } = parseArgs(rest, options) as { values: Record<string, string | boolean | undefined>, positionals: string[] }
    const str = (name: string) => values[name] as string | undefined
    const json = values.json === true
    const wantsId = sub === 'revoke' || sub === 'rotate'
    if (wantsId && positionals.length !== 1) throw new UsageError(`keys ${sub} takes exactly one key ID`)
    if (!wantsId && positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`)
    if (sub === 'create' && (str('client') === undefined || str('client') === '')) throw new UsageError('keys create needs --client NAME')
    for (const name of ['expires', 'grace']) {
      const value = str(name)
      if (value !== undefined && !/^\d+(\.\d+)?(ms|s|m|h|d)$/.test(value)) throw new UsageError(`--${name} takes a duration like 90d, 24h or 30m`)
    }

    const file = configFileOf({ config: str('config') })
    opened = await openStore(file)
    const { store, config } = opened
    const service = new KeyService({ store, staticKeys: staticApiKeys(config) })

    switch (sub) {
      case 'create': {
        const created = await service.create({
          client: str('client'),
          scopes: str('scopes')?.split(',').map((s) => s.trim()).filter(Boolean),
          tier: str('tier'),
          expiresIn: str('expires'),
        })
        io.stdout.write(json ? `${JSON.stringify(created, null, 2)}\n` : describeCreated(created, 'Created'))
        return 0
      }
      case 'list': {
        const keys = await service.list()
        io.stdout.write(json ? `${JSON.stringify(keys, null, 2)}\n` : table(keys))
        return 0
      }
      case 'revoke': {
        const revoked = await service.revoke(positionals[0])
        io.stdout.write(json ? `${JSON.stringify(revoked, null, 2)}\n` : `Revoked API key ${revoked.id}. Every gateway on this store refuses it within a second.\n`)
        return 0
      }
      default: {
        const rotated = await service.rotate(positionals[0], str('grace') ?? '24h')
        if (json) {
          io.stdout.write(`${JSON.stringify(rotated, null, 2)}\n`)
        } else {
          const old = (await service.list()).find((k) => k.id === rotated.replaces)
          io.stdout.write(describeCreated(rotated, `Rotated API key ${rotated.replaces}: issued`) +
            `The old key ${rotated.replaces} stays valid until ${old?.expiresAt ?? 'the grace period ends'}.\n`)
        }
        return 0
      }
    }
  } catch (error) {
    if (error instanceof UsageError || (error instanceof KeyRequestError && error.problem === 'invalid')) {
      io.stderr.write(`authgate keys: ${error.message}\n${KEYS_USAGE}`)
      return 2
    }
    if (error instanceof ConfigError) {
      io.stderr.write(`${formatIssues(error.issues)}\n`)
      return 1
    }
    if (error instanceof StoreUnavailableError) {
      io.stderr.write(`authgate keys: the store is unavailable (${error.message})\n`)
      return 1
    }
    io.stderr.write(`authgate keys: ${error instanceof Error ? error.message : String(error)}\n`)
    return 1
  } finally {
    await opened?.store.close().catch(() => {})
  }
}

function describeCreated (created: CreatedKey, verb: string): string {
  const facts = [
    `scopes: ${created.scopes.length > 0 ? created.scopes.join(' ') : '(none)'}`,
    `tier: ${created.tier ?? '(none)'}`,
    `expires: ${created.expiresAt ?? 'never'}`,
  ]
  return `${verb} API key ${created.id} for client "${created.client}" (${facts.join('; ')}).\n\n` +
    `    ${created.key}\n\n` +
    'Store this key now: it is shown only this once and cannot be recovered (only its hash is kept).\n'
}

function table (keys: readonly KeyListing[]): string {
  if (keys.length === 0) return 'No API keys.\n'
  const now = Date.now()
  const rows = keys.map((k) => [
    k.id,
    k.client,
    k.scopes.join(' ') || '-',
    k.tier ?? '-',
    k.createdAt ?? (k.source === 'config' ? '(config)' : '-'),
    k.expiresAt ?? 'never',
    k.revoked ? 'revoked' : (k.expiresAt !== null && Date.parse(k.expiresAt) <= now ? 'expired' : 'active'),
    k.lastUsedAt ?? 'never',
  ])
  const head = ['ID', 'CLIENT', 'SCOPES', 'TIER', 'CREATED', 'EXPIRES', 'STATUS', 'LAST USED']
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()
  return `${[line(head), ...rows.map(line)].join('\n')}\n`
}

/** `authgate hash-key KEY`: the `sha256:<hex>` of a key, for a static `apiKeys:` entry. Usage mistakes throw UsageError. */
export function hashKeyCommand (args: readonly string[], io: CommandIo): number {
  const { positionals } = parseArgs(args, {})
  const key = positionals[0]
  if (!key || positionals.length > 1) throw new UsageError('hash-key takes exactly one KEY')
  if (!parseApiKey(key)) io.stderr.write('authgate: warning: this is not an agk_<id>_<secret> key; the hash will never match a presented key\n')
  io.stdout.write(`${hashApiKey(key)}\n`)
  return 0
}
