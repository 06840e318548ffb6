import type { Identity } from '../policies/types.js'
import type { IdentityConfig } from './config/types.js'

/** Hop-by-hop headers (RFC 9110 §7.6.1) and those undici must not be handed. Never forwarded. */
export const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade',
  'proxy-authorization', 'proxy-authenticate', 'http2-settings', 'expect',
])

export interface IdentityHeaders {
  /** Lower-case names stripped from every inbound request, before any policy runs. */
  readonly strip: ReadonlySet<string>
  /** The same names as a list: walked once per request without an iterator object. */
  readonly stripList: readonly string[]
  readonly subject: string
  readonly client: string
  readonly methods: string
  readonly scopes: string
  readonly tier: string
  /** Header for the signed identity token, when configured. */
  readonly signed: string | undefined
}

export function identityHeaders (config: IdentityConfig): IdentityHeaders {
  const h = config.headers
  const signed = config.signed?.header.toLowerCase()
  const own = [h.subject, h.client, h.methods, h.scopes, h.tier].map((n) => n.toLowerCase())
  const strip = new Set([
    ...own,
    ...config.stripInbound.map((n) => n.toLowerCase()),
    'x-forwarded-client-cert',
    'x-auth-identity',
    ...(signed ? [signed] : []),
  ])
  return { strip, stripList: [...strip], subject: own[0]!, client: own[1]!, methods: own[2]!, scopes: own[3]!, tier: own[4]!, signed }
}

/** The verified identity as upstream headers; set, never passed through. */
export function addIdentity (headers: Record<string, string | string[]>, identity: Identity, names: IdentityHeaders): void {
  if (identity.methods.length === 0) return
  headers[names.subject] = identity.subject
  headers[names.client] = identity.client
  headers[names.methods] = methodsValue(identity.methods)
  headers[names.scopes] = scopesValue(identity.scopes)
  if (identity.tier !== undefined) headers[names.tier] = identity.tier
}

/** X-Auth-Methods: one method (nearly every route) is its own value. */
export function methodsValue (methods: readonly string[]): string {
  return methods.length === 1 ? methods[0]! : methods.join(',')
}

/** Space-joined frozen scope lists (a verified key's or token's, cached with it), kept so a cache hit joins nothing. */
const SCOPES = new WeakMap<readonly string[], string>()

/** X-Auth-Scopes: space-separated. */
export function scopesValue (scopes: readonly string[]): string {
  if (scopes.length === 0) return ''
  if (!Object.isFrozen(scopes)) return scopes.join(' ')
  let value = SCOPES.get(scopes)
  if (value === undefined) SCOPES.set(scopes, value = scopes.join(' '))
  return value
}

const KEEP_ALIVE: ReadonlySet<string> = new Set(['keep-alive'])
const CLOSE: ReadonlySet<string> = new Set(['close'])

/** Names listed in `Connection`, lower-case. */
export function connectionTokens (value: string | undefined): ReadonlySet<string> | undefined {
  if (!value) return undefined
  // What nearly every client and upstream sends, without a split and a new Set per request.
  if (value === 'keep-alive' || value === 'Keep-Alive') return KEEP_ALIVE
  if (value === 'close' || value === 'Close') return CLOSE
  const tokens = new Set<string>()
  for (const token of value.split(',')) {
    const name = token.trim().toLowerCase()
    if (name) tokens.add(name)
  }
  return tokens
}
