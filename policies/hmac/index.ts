import type { ConfigIssue } from '../../gateway/errors.js'
import { parseDuration } from '../../gateway/config/units.js'
import type { LintFinding, PolicyDefinition, SectionDefinition } from '../types.js'
import { componentIdProblem, MAX_COVERED_COMPONENTS, parseComponentId } from './rfc9421.js'
import { schema, signingClientsSectionSchema, type HmacPolicyConfig, type SigningClientConfig } from './schema.js'
import { createScheme } from './schemes.js'
import { buildSigningKeys, checkSigningClients } from './signing-clients.js'

export { signRequest, signingInterceptor, signCommand } from './sign.js'

/**
 * `hmac`: request signatures. Schemes `hmac-sha256` and `rfc9421` take keys from the top-level
 * `signingClients`; the webhook schemes `github` and `stripe` take the policy's own `secret`.
 * The body is buffered (readsBody) because every scheme signs it.
 */
export const hmac: PolicyDefinition<HmacPolicyConfig> = {
  key: 'hmac',
  schema,
  authenticates: true,
  commands: [{
    name: 'sign',
    usage: `--key-id ID (--secret-env VAR | --key-file PEM) [--scheme hmac-sha256|rfc9421] METHOD URL [--data @file|text]
                                            print signature headers for curl -H`,
    async run (args, io) {
      const { signCommand } = await import('./sign.js')
      return await signCommand(args, io)
    },
  }],
  check (config, env) {
    return checkPolicy(config, env.config)
  },
  lint ({ occurrences }) {
    const findings: LintFinding[] = []
    for (const { path, route } of occurrences) {
      const deciding = route.listeners.find((l) => l.mode === 'decide')
      if (deciding === undefined) continue
      findings.push({
        rule: 'hmac-body-in-decision-mode',
        severity: 'warning',
        path,
        message: `route "${route.name}" verifies signatures over the body and is reachable on decision listener "${deciding.name}": nginx, Caddy and HAProxy never send the body to authgate, so a signed POST, PUT or PATCH through them is refused (401 "the proxy sent no body")`,
        fix: 'send the body from the proxy (Envoy ext_authz with_request_body, Traefik forwardAuth forwardBody: true), or serve this route in proxy mode',
      })
    }
    return findings
  },
  /** The header names the policy's `headers:` sets; only the signature is a secret. */
  credentialHeaders (config) {
    const headers = config.headers
    if (typeof headers !== 'object' || headers === null) return []
    return Object.entries(headers).flatMap(([field, name]) =>
      typeof name === 'string' ? [{ name, path: ['headers', field], secret: field === 'signature' }] : [])
  },
  create (config, deps) {
    const usesClients = config.scheme === 'hmac-sha256' || config.scheme === 'rfc9421'
    const keys = usesClients
      ? deps.shared('signingClients', () => buildSigningKeys(deps.config.signingClients ?? []))
      : new Map()
    const scheme = createScheme(config, { store: deps.store, realm: deps.realm, routeName: deps.route.name, keys })
    return {
      challenge: scheme.challenge,
      credentialHeaders: scheme.credentialHeaders,
      readsBody: true,
      evaluate: (ctx) => scheme.evaluate(ctx),
    }
  },
}

export const signingClientsSection: SectionDefinition = {
  key: 'signingClients',
  schema: signingClientsSectionSchema,
  check: (value) => checkSigningClients(value),
}

function checkPolicy (config: HmacPolicyConfig, document: Readonly<Record<string, unknown>>): ConfigIssue[] {
  const issues: ConfigIssue[] = []
  const error = (path: Array<string | number>, message: string, fix: string) => issues.push({ severity: 'error', path, message, fix })
  const warn = (path: string[], message: string, fix: string) => issues.push({ severity: 'warning', path, message, fix })
  const scheme = config.scheme ?? 'hmac-sha256'
  const webhook = scheme === 'github' || scheme === 'stripe'

  if (parseDuration(config.window ?? '300s') <= 0) error(['window'], 'window must be longer than 0', 'use e.g. `window: 300s`')

  if (webhook) {
    if (config.secret === undefined) {
      error([], `scheme ${scheme} needs the webhook \`secret\``, `add \`secret: \${env:${scheme === 'github' ? 'GH' : 'STRIPE'}_WEBHOOK_SECRET}\``)
    }
  } else {
    if (config.secret !== undefined) {
      error(['secret'], `\`secret\` is for the github and stripe schemes; ${scheme} takes its keys from \`signingClients\``, 'move the secret to a `signingClients` entry (keyId, secret)')
    }
    const clients = (Array.isArray(document.signingClients) ? document.signingClients : []) as SigningClientConfig[]
    const usable = scheme === 'hmac-sha256' ? clients.filter((c) => (c.algorithm ?? 'hmac-sha256') === 'hmac-sha256') : clients
    if (usable.length === 0) {
      error(['scheme'], scheme === 'hmac-sha256' && clients.length > 0
        ? 'scheme hmac-sha256 needs a signing client with algorithm hmac-sha256 (a secret); the others are for rfc9421'
        : `scheme ${scheme} needs at least one entry in \`signingClients\``,
      'add `signingClients: [{ keyId: NAME, secret: ${env:NAME_HMAC_SECRET} }]` at the top level')
    }
  }

  if (scheme === 'rfc9421') {
    if ((config.components?.length ?? 0) > MAX_COVERED_COMPONENTS) {
      error(['components'], `${config.components!.length} required components: a signature may cover at most ${MAX_COVERED_COMPONENTS}, so no request could pass`, `require at most ${MAX_COVERED_COMPONENTS} components`)
    }
    (config.components ?? []).forEach((text, i) => {
      const id = parseComponentId(text)
      if (!id.ok) {
        error(['components', i], id.error, 'write a component as `@method`, `content-digest` or `@query-param;name="id"`')
      } else {
        const problem = componentIdProblem(id.value)
        if (problem) error(['components', i], `${problem}: it cannot be a required component of a request signature`, 'use `@method`, `@target-uri`, `@authority`, `@path`, `@query`, `@query-param;name="id"` or a lower-case header name')
      }
    })
    if (config.components !== undefined && !config.components.some((c) => /^"?@(method|target-uri|request-target|path)\b/.test(c))) {
      warn(['components'], 'the required components do not include the method or the target: a signature could be moved to another request', 'add `@method` and `@target-uri`')
    }
  } else {
    for (const field of ['components', 'tag', 'label'] as const) {
      if (config[field] !== undefined) warn([field], `\`${field}\` applies only to scheme rfc9421`, `remove \`${field}\``)
    }
    if (config.requireNonce) warn(['requireNonce'], '`requireNonce` applies only to scheme rfc9421', 'remove `requireNonce`')
  }
  if (scheme !== 'hmac-sha256' && config.headers !== undefined) warn(['headers'], '`headers` applies only to scheme hmac-sha256', 'remove `headers`')
  if (!webhook && config.client !== undefined) warn(['client'], '`client` applies only to the github and stripe schemes (signing clients name their own client)', 'remove `client`')
  return issues
}
