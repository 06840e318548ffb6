import type { CommandDefinition, PolicyDefinition, SectionDefinition } from './types.js'
import { apiKey, apiKeysSection } from './api-key/index.js'
import { basic, usersSection } from './basic/index.js'
import { mtls } from './mtls/index.js'
import { hmac, signingClientsSection } from './hmac/index.js'
import { jwt, jwtProvidersSection } from './jwt/index.js'
import { introspection } from './introspection/index.js'
import { scopes } from './scopes/index.js'
import { claims } from './claims/index.js'
import { rateLimit } from './rate-limit/index.js'
import { oidcClientsSection, session, sessionsSection } from './session/index.js'

/** YAML key -> policy definition. */
export const policies: ReadonlyMap<string, PolicyDefinition> = new Map<string, PolicyDefinition>([
  [apiKey.key, apiKey],
  [basic.key, basic],
  [mtls.key, mtls],
  [hmac.key, hmac],
  [jwt.key, jwt],
  [introspection.key, introspection],
  [scopes.key, scopes],
  [claims.key, claims],
  [rateLimit.key, rateLimit],
  [session.key, session],
])

/** Top-level gateway.yaml sections owned by policy modules. */
export const sections: readonly SectionDefinition[] = [
  apiKeysSection,
  jwtProvidersSection,
  signingClientsSection,
  usersSection,
  sessionsSection,
  oidcClientsSection,
]

/** `authgate` subcommands declared by policy modules (keys, hash-key, passwd, sign, tokens), by name. */
export const commands: ReadonlyMap<string, CommandDefinition> = new Map(
  [...policies.values()].flatMap((policy) => (policy.commands ?? []).map((command) => [command.name, command] as const)))

/** What policies offer the package's users (gateway/public.ts): signing requests for routes that verify signatures. */
export { signRequest, signingInterceptor } from './hmac/index.js'
