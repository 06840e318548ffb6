import { ConfigError, isRejection, type ConfigIssue } from '../../gateway/errors.js'
import { didYouMean } from '../../gateway/config/positions.js'
import type { PolicyDefinition, PolicyDeps } from '../types.js'
import { bearerChallenge, invalidToken, readBearer } from './bearer.js'
import { ProviderRuntime, toList } from './provider.js'
import { schema, type JwtPolicyConfig } from './schema.js'
import type { ProviderConfig } from './section.js'

export { jwtProvidersSection } from './section.js'
export { revokeJti, tokensCommand } from './tokens.js'

/**
 * `jwt: { provider, audience?, passthrough? }`: a bearer JWT from `Authorization`, verified with the
 * named provider's keys (jose), checked against its algorithm allow-list, `exp`/`nbf`/`iat`, issuer,
 * audience, max age, required claims, `typ` and revocation list. Identity: `sub`, `client_id`/`azp` (else `sub`,
 * unless an earlier step provided a client), scopes from `scope`/`scp`, every claim.
 */
export const jwt: PolicyDefinition<JwtPolicyConfig> = {
  key: 'jwt',
  schema,
  authenticates: true,
  credential: 'bearer',
  commands: [{
    name: 'tokens',
    usage: 'revoke JTI --until 24h [-c FILE]  deny-list a JWT id (providers with revocation: true)',
    async run (args, io, cli) {
      const { tokensCommand } = await import('./tokens.js')
      return await tokensCommand(args, io, (file) => cli.openStore(file))
    },
  }],

  check (config, env) {
    const issue = unknownProvider(config.provider, providersOf(env.config))
    return issue ? [issue] : []
  },

  lint ({ doc }) {
    const providers = (doc.jwtProviders ?? {}) as Record<string, { requireExp?: boolean }>
    return Object.entries(providers)
      .filter(([, provider]) => provider.requireExp === false)
      .map(([name]) => ({
        rule: 'jwt-exp-not-required',
        severity: 'warning' as const,
        path: ['jwtProviders', name, 'requireExp'],
        message: `provider "${name}" accepts tokens without \`exp\`: a leaked token then works forever`,
        fix: 'remove `requireExp: false` (have the IdP set exp), or at least set `maxAge:` to bound a token\'s life by its iat',
      }))
  },

  async create (config, deps) {
    const providers = providersOf(deps.config)
    const provider = providers[config.provider]
    if (provider === undefined) throw new ConfigError([unknownProvider(config.provider, providers)!])
    const runtime = providerRuntime(config.provider, provider, deps)
    try {
      await runtime.ready
    } catch (error) {
      throw new ConfigError([{
        severity: 'error', path: ['jwtProviders', config.provider],
        message: `cannot import the key of provider "${config.provider}": ${error instanceof Error ? error.message : String(error)}`,
      }], { cause: error })
    }
    const { realm } = deps
    const audience = toList(config.audience)

    return {
      challenge: bearerChallenge(realm),
      credentialHeaders: config.passthrough ? [] : ['authorization'],
      credential: 'bearer',
      async evaluate (ctx) {
        const token = readBearer(ctx, realm)
        if (isRejection(token)) return token
        const result = await runtime.authenticate(token, ctx.now(), audience)
        if (!result.ok) return invalidToken(realm, result.detail)
        // DESIGN "JWT client": without client_id/azp, sub becomes the client only if no earlier step named one.
        return { identity: ctx.identity.client ? result.token.identityKeepingClient : result.token.identity }
      },
    }
  },
}

/** The provider's run-time state, built once per configuration generation and shared by every route naming it. */
export function providerRuntime (name: string, provider: ProviderConfig, deps: PolicyDeps): ProviderRuntime {
  return deps.shared(`jwt:${name}`, () => {
    const store = deps.config.store as { onError?: string } | undefined
    return new ProviderRuntime(name, provider, {
      now: () => deps.now(), log: deps.log, store: deps.store,
      storeOnError: store?.onError === 'allow' ? 'allow' : 'deny',
    })
  })
}

function providersOf (config: Readonly<Record<string, unknown>>): Record<string, ProviderConfig> {
  return (config.jwtProviders ?? {}) as Record<string, ProviderConfig>
}

function unknownProvider (name: string, providers: Record<string, ProviderConfig>): ConfigIssue | undefined {
  if (Object.hasOwn(providers, name)) return undefined
  const known = Object.keys(providers)
  const guess = didYouMean(name, known)
  return {
    severity: 'error',
    path: ['provider'],
    message: known.length > 0
      ? `unknown provider "${name}" (known: ${known.join(', ')})`
      : `unknown provider "${name}" (no jwtProviders are configured)`,
    fix: guess ? `did you mean "${guess}"?` : `define it under \`jwtProviders: { ${name}: { issuer, audience, algorithms } }\``,
  }
}
