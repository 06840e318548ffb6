import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { ConfigError, type ConfigIssue } from '../../gateway/errors.js'
import { didYouMean } from '../../gateway/config/positions.js'
import { parseDuration } from '../../gateway/config/units.js'
import type { LintFinding, PolicyDefinition, PolicyDeps, SectionDefinition } from '../types.js'
import { isLoopbackHost, remoteUrlProblem } from '../jwt/http.js'
import { MIN_SECRET_BYTES } from './crypto.js'
import { OidcClient } from './oidc.js'
import { SessionRuntime } from './runtime.js'
import { OidcClientSchema, schema, SessionsSchema, type OidcClientConfig, type SessionPolicyConfig, type SessionsConfig } from './schema.js'
import { Type } from '@sinclair/typebox'

export { safeRedirect } from './redirect.js'

export const sessionsSection: SectionDefinition = {
  key: 'sessions',
  schema: SessionsSchema,
  check (value) {
    const config = value as SessionsConfig
    const issues: ConfigIssue[] = []
    if (config.secret !== undefined && Buffer.byteLength(config.secret, 'utf8') < MIN_SECRET_BYTES) {
      issues.push({ severity: 'error', path: ['sessions', 'secret'], message: `sessions.secret is ${Buffer.byteLength(config.secret, 'utf8')} bytes; at least ${MIN_SECRET_BYTES} are required`, fix: 'use a random secret: `openssl rand -base64 48`, from ${env:AUTHGATE_SESSION_SECRET}' })
    }
    if (config.sameSite === 'none') {
      issues.push({ severity: 'error', path: ['sessions', 'sameSite'], message: 'sameSite: none sends the session cookie with cross-site requests (CSRF)', fix: 'use `lax` (the default) or `strict`' })
    }
    if (parseDuration(config.idleTimeout) > parseDuration(config.absoluteTimeout)) {
      issues.push({ severity: 'warning', path: ['sessions', 'idleTimeout'], message: 'idleTimeout is longer than absoluteTimeout: sessions end at absoluteTimeout anyway', fix: 'make idleTimeout shorter than absoluteTimeout' })
    }
    return issues
  },
}

export const oidcClientsSection: SectionDefinition = {
  key: 'oidcClients',
  schema: Type.Record(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$' }), OidcClientSchema, {
    additionalProperties: false,
    default: {},
    description: 'OpenID Connect clients by name, for browser logins (`session: { client: NAME }`).',
  }),
  check (value, _config, { baseDir }) {
    const issues: ConfigIssue[] = []
    for (const [name, client] of Object.entries((value ?? {}) as Record<string, OidcClientConfig>)) {
      const at = (...path: string[]) => ['oidcClients', name, ...path]
      const error = (path: string[], message: string, fix: string) => issues.push({ severity: 'error', path: at(...path), message, fix })
      const issuer = remoteUrlProblem(client.issuer)
      if (issuer) error(['issuer'], `issuer ${issuer}`, 'use the provider\'s https issuer URL')
      const redirect = redirectUriProblem(client.redirectUri)
      if (redirect) error(['redirectUri'], redirect, 'use https://YOUR-APP-HOST/.authgate/callback, as registered at the provider')
      if (client.postLogoutRedirectUri !== undefined && !/^https?:\/\//.test(client.postLogoutRedirectUri)) {
        error(['postLogoutRedirectUri'], 'postLogoutRedirectUri must be an absolute URL', 'use https://YOUR-APP-HOST/')
      }
      if (!client.scopes.includes('openid')) error(['scopes'], 'scopes must include `openid`', 'add openid to scopes')
      if ((client.clientSecret === undefined) === (client.privateKeyJwt === undefined)) {
        error([], 'give exactly one of `clientSecret` and `privateKeyJwt`', 'clientSecret: ${env:CLIENT_SECRET}, or privateKeyJwt: { key: certs/client.key, alg: ES256 }')
      }
      if (client.privateKeyJwt !== undefined) {
        try {
          readFileSync(resolve(baseDir, client.privateKeyJwt.key))
        } catch {
          error(['privateKeyJwt', 'key'], `cannot read ${client.privateKeyJwt.key}`, 'give the path of the client\'s PEM private key, relative to the config file')
        }
      }
    }
    return issues
  },
}

function redirectUriProblem (uri: string): string | undefined {
  let url: URL
  try {
    url = new URL(uri)
  } catch {
    return 'redirectUri is not an absolute URL'
  }
  if (url.pathname !== '/.authgate/callback') return 'redirectUri must end in /.authgate/callback'
  if (url.protocol === 'https:') return undefined
  if (url.protocol === 'http:' && isLoopbackHost(url.hostname)) return undefined
  return 'redirectUri must use https (plain http only on loopback, with sessions.allowInsecure)'
}

/**
 * `session: { client, forwardAccessToken?, csrfHeader? }`: a browser session (HttpOnly cookie) made by an OpenID
 * Connect login at `/.authgate/login`; authgate keeps the tokens and refreshes them. See docs: "Protect a web app".
 */
export const session: PolicyDefinition<SessionPolicyConfig> = {
  key: 'session',
  schema,
  authenticates: true,

  check (config, env) {
    const issues: ConfigIssue[] = []
    const clients = (env.config.oidcClients ?? {}) as Record<string, OidcClientConfig>
    const client = clients[config.client]
    if (client === undefined) {
      const guess = didYouMean(config.client, Object.keys(clients))
      issues.push({ severity: 'error', path: ['client'], message: `unknown OIDC client "${config.client}"`, fix: guess ? `did you mean "${guess}"?` : `define it under \`oidcClients: { ${config.client}: { issuer, clientId, clientSecret, redirectUri } }\`` })
    }
    const sessions = env.config.sessions as SessionsConfig | undefined
    if (sessions?.secret === undefined) {
      issues.push({ severity: 'error', path: [], message: 'sessions need `sessions.secret` (at least 32 bytes) to encrypt session records', fix: 'sessions: { secret: ${env:AUTHGATE_SESSION_SECRET} } with `openssl rand -base64 48`' })
    }
    const routeIndex = (env.config.routes as Array<{ name: string, match?: { host?: string | string[] } }>).find((r) => r.name === env.route.name)
    const hosts = routeIndex?.match?.host === undefined ? [] : [routeIndex.match.host].flat()
    if (client !== undefined) {
      let redirectHost: string | undefined
      try { redirectHost = new URL(client.redirectUri).hostname.toLowerCase() } catch {}
      for (const host of hosts) {
        if (redirectHost !== undefined && host.toLowerCase() !== redirectHost) {
          issues.push({ severity: 'error', path: ['client'], message: `this route matches host "${host}" but the session cookie belongs to "${redirectHost}" (the host of oidcClients.${config.client}.redirectUri)`, fix: 'give the route the redirectUri\'s host, or an OIDC client whose redirectUri is on this host' })
        }
      }
    }
    for (const listener of env.route.listeners) {
      // A decision listener: the original request's scheme (X-Forwarded-Proto) decides, at run time.
      if (listener.tls || listener.mode === 'decide') continue
      if (sessions?.allowInsecure !== true) {
        issues.push({ severity: 'error', path: [], message: `sessions on plain-HTTP listener "${listener.name}": the session cookie would travel in clear`, fix: 'serve this route on a TLS listener only (match.listener), or for local development on loopback set sessions.allowInsecure: true' })
      }
    }
    return issues
  },

  lint ({ doc, occurrences }) {
    const findings: LintFinding[] = []
    for (const occurrence of occurrences) {
      for (const listener of occurrence.route.listeners) {
        if (!listener.tls && listener.exposed && listener.mode !== 'decide') {
          findings.push({ rule: 'session-insecure-exposed', severity: 'error', path: occurrence.path, message: `route "${occurrence.route.name}" serves sessions on plain-HTTP listener "${listener.name}", which other machines reach: session cookies would travel in clear`, fix: 'serve it on a TLS listener; allowInsecure is for loopback development only' })
        }
      }
    }
    const sessions = doc.sessions as SessionsConfig | undefined
    const clients = (doc.oidcClients ?? {}) as Record<string, OidcClientConfig>
    const used = new Set(occurrences.map((o) => (o.config as { client?: string }).client))
    for (const [name, client] of Object.entries(clients)) {
      if (!used.has(name) || (client.scopes ?? []).includes('offline_access')) continue
      const idle = sessions?.idleTimeout === undefined ? 0 : parseDuration(sessions.idleTimeout)
      findings.push({ rule: 'session-no-refresh', severity: 'warning', path: ['oidcClients', name, 'scopes'], message: `client "${name}" does not ask for offline_access: without a refresh token, sessions (idle ${Math.round(idle / 60_000)}m) outlive the access token and forwardAccessToken routes then send the user to log in again`, fix: 'add offline_access to scopes (and prompt: consent if your provider requires it)' })
    }
    return findings
  },

  create (config, deps) {
    const runtime = sessionRuntime(deps)
    const client = runtime.client(config.client)
    if (client === undefined) throw new ConfigError([{ severity: 'error', path: ['client'], message: `unknown OIDC client "${config.client}"` }])
    runtime.addRoute({ listeners: deps.route.listeners.map((l) => l.name), client: config.client })
    const challenge = runtime.challenge()
    const csrfHeader = config.csrfHeader?.toLowerCase()
    return {
      challenge,
      async evaluate (ctx) {
        const found = await runtime.check(ctx, config.client, { forwardAccessToken: config.forwardAccessToken, csrfHeader })
        if (!found.ok) return found.rejection
        const { record } = found
        // The gateway's cookies never go upstream (the core removes them on every route: Generation.ownedCookies).
        return {
          identity: { subject: record.sub, client: client.config.clientId, scopes: record.scopes, claims: record.claims },
          ...(config.forwardAccessToken ? { upstreamHeaders: { authorization: `Bearer ${record.accessToken}` } } : {}),
        }
      },
    }
  },
}

/** The generation's one SessionRuntime: every session route shares its clients, keys and counters. */
function sessionRuntime (deps: PolicyDeps): SessionRuntime {
  return deps.shared('session:runtime', () => {
    const sessions = deps.config.sessions as SessionsConfig | undefined
    if (sessions?.secret === undefined) throw new ConfigError([{ severity: 'error', path: ['sessions', 'secret'], message: 'sessions need `sessions.secret`' }])
    const clients = new Map<string, OidcClient>()
    for (const [name, client] of Object.entries((deps.config.oidcClients ?? {}) as Record<string, OidcClientConfig>)) {
      let privateKeyPem: string | undefined
      if (client.privateKeyJwt !== undefined) {
        try {
          privateKeyPem = readFileSync(resolve(deps.baseDir, client.privateKeyJwt.key), 'utf8')
        } catch (error) {
          throw new ConfigError([{ severity: 'error', path: ['oidcClients', name, 'privateKeyJwt', 'key'], message: `cannot read ${client.privateKeyJwt.key}` }], { cause: error })
        }
      }
      clients.set(name, new OidcClient(name, client, { now: () => deps.now(), log: deps.log, ...(privateKeyPem !== undefined ? { privateKeyPem } : {}) }))
    }
    return new SessionRuntime(sessions, clients, { store: deps.store, log: deps.log, realm: deps.realm })
  })
}
