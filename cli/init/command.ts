/**
 * `authgate init [--scenario NAME] [--out gateway.yaml] [--force]`: a commented gateway.yaml for one common
 * situation, following the usual decision matrix. Every template passes `authgate check` with no warning once its
 * environment variables and files exist; secrets come only from `${env:..}` and `${file:..}`.
 */
import { existsSync, writeFileSync } from 'node:fs'
import type { CommandIo } from '../certs.js'

export interface Scenario {
  readonly name: string
  /** One line: who it is for and which method. */
  readonly summary: string
  /** Environment variables the file reads without a default. */
  readonly env: readonly string[]
  /** Files the configuration refers to (relative to it), with how to make each. */
  readonly files: ReadonlyArray<{ path: string, how: string }>
  readonly template: string
}

const SCHEMA_LINE = '# yaml-language-server: $schema=https://authgate.dev/gateway.schema.json'

const TLS_LISTENER = `listeners:
  - name: public
    address: 0.0.0.0:8443
    tls:
      # Development certificates: \`authgate start\` creates certs/dev/ on first run (or \`authgate certs init\`).
      # In production, point these at your certificate chain and key; they reload on change.
      cert: certs/dev/server.crt
      key: certs/dev/server.key`

const ADMIN = `admin:
  # /healthz /readyz /metrics and the key API. Keep it off the public network; a load balancer's health
  # check and Prometheus reach it on the host or the pod.
  address: 127.0.0.1:9901
  token: \${env:AUTHGATE_ADMIN_TOKEN:-}    # bearer token for /admin/* (openssl rand -base64 32); required in production`

const STORE = (comment: string) => `store:
  # Redis is shared state for every instance (keys, limits, nonces). Empty: an in-process store, one instance only.
  redis: \${env:REDIS_URL:-}
  prefix: "authgate:"
  onError: deny                          # ${comment}`

const TRUST = `# Behind a load balancer or ingress, list its addresses so X-Forwarded-For from it is believed (rate limits by
# ip, logs). Left empty, the gateway trusts no forwarded header.
trustProxies: []`

const TEMPLATES: readonly Scenario[] = [
  {
    name: 'public-api',
    summary: 'an API for third-party developers: API keys, limited by tier',
    env: [],
    files: [],
    template: `# authgate — public API for third-party developers (authgate init --scenario public-api)
#
# Why API keys: third-party developers need a credential they can paste into any HTTP client, that you issue,
# scope, limit by tier and revoke one at a time. Keys are stored hashed (only the hash lives here or in Redis):
#   authgate keys create -c gateway.yaml --client acme --scopes read --tier free
# Clients send it in the X-API-Key header; a key in the query string is refused (URLs end up in logs).
#
# Next: set AUTHGATE_ADMIN_TOKEN and REDIS_URL, point upstreams.api at your service, run \`authgate check\`.
${SCHEMA_LINE}
version: 1

${TLS_LISTENER}

${ADMIN}

${STORE('a Redis outage answers 503 rather than letting unlimited, unchecked traffic through')}

${TRUST}

upstreams:
  api:
    url: http://127.0.0.1:9000           # your API; it receives X-Auth-Client, X-Auth-Scopes, X-Auth-Tier
    timeout: 30s

rateLimitTiers:                          # a key's tier (keys create --tier) picks its rate
  free: 60/min
  pro: 1200/min

routes:
  - name: health
    match: { path: /health, methods: [GET] }
    upstream: api
    public: true                         # the only unauthenticated path

  - name: api-read
    match: { path: /v1/**, methods: [GET, HEAD] }
    upstream: api
    policies:
      - apiKey: { header: X-API-Key }
      - scopes: [read]
      - rateLimit: { by: client, tier: true, limit: 60/min }   # limit: for keys without a known tier

  - name: api-write
    match: { path: /v1/**, methods: [POST, PUT, PATCH, DELETE] }
    upstream: api
    policies:
      - apiKey: { header: X-API-Key }
      - scopes: [write]
      - rateLimit: { by: client, tier: true, limit: 60/min }
`,
  },
  {
    name: 'webhook',
    summary: 'receiving webhooks: HMAC signatures (GitHub, Stripe, your partners)',
    env: ['GH_WEBHOOK_SECRET', 'STRIPE_WEBHOOK_SECRET', 'PARTNER_HMAC_SECRET'],
    files: [],
    template: `# authgate — webhook receiver (authgate init --scenario webhook)
#
# Why HMAC: a webhook sender is a machine that cannot log in. It signs each delivery with a shared secret; the
# gateway recomputes the signature over the exact body, checks the timestamp window and refuses replays, so a
# captured delivery cannot be sent again and a forged one never reaches your handler.
#
# Secrets (never in this file): GH_WEBHOOK_SECRET (GitHub webhook settings), STRIPE_WEBHOOK_SECRET (whsec_...),
# PARTNER_HMAC_SECRET (base64 of 32 random bytes: openssl rand -base64 32; share it with the partner once).
${SCHEMA_LINE}
version: 1

${TLS_LISTENER}

${ADMIN}

${STORE('replay protection needs the store: refuse (503) rather than accept possible replays')}

${TRUST}

upstreams:
  app:
    url: http://127.0.0.1:9000           # your webhook handler; it receives X-Auth-Client: github | stripe | partner
    timeout: 30s

signingClients:                          # keys for the hmac-sha256 scheme (X-Key-Id, X-Timestamp, X-Signature)
  - keyId: partner
    client: partner
    secret: \${env:PARTNER_HMAC_SECRET}
    secretEncoding: base64

limits:
  maxBodyBytes: 1MiB                     # signatures cover the body, so it is buffered: keep this small

routes:
  - name: github
    match: { path: /webhooks/github, methods: [POST] }
    upstream: app
    policies:
      - hmac:                            # X-Hub-Signature-256
          scheme: github
          secret: \${env:GH_WEBHOOK_SECRET}
          client: github

  - name: stripe
    match: { path: /webhooks/stripe, methods: [POST] }
    upstream: app
    policies:
      - hmac:                            # Stripe-Signature: t=...,v1=...
          scheme: stripe
          secret: \${env:STRIPE_WEBHOOK_SECRET}
          client: stripe
          window: 300s

  - name: partner
    match: { path: /webhooks/partner, methods: [POST] }
    upstream: app
    policies:
      - hmac: { scheme: hmac-sha256, window: 300s }   # sign with: authgate sign --key-id partner ...
      - rateLimit: { by: client, limit: 600/min }
`,
  },
  {
    name: 'service-to-service',
    summary: 'internal services calling each other: mutual TLS (client certificates)',
    env: [],
    files: [{ path: 'certs/dev/ca.crt', how: 'your internal CA bundle (authgate certs init makes a development one)' }],
    template: `# authgate — service-to-service (authgate init --scenario service-to-service)
#
# Why mutual TLS: services have workload identities (certificates from your CA, SPIFFE IDs from a mesh). The TLS
# handshake proves the caller holds the private key; nothing secret crosses the wire or sits in a config map, and
# certificates rotate without a deploy. Each route lists the callers it accepts.
#
# Alternative for callers without certificates: OAuth 2.0 client credentials. Add a provider for your IdP and use
#   - jwt: { provider: idp }   with   jwtProviders: { idp: { issuer: https://idp.example.com, audience: billing, algorithms: [RS256] } }
#
# Development certificates: \`authgate certs init\` (CA, server, client); \`authgate certs client orders --san
# spiffe://example.org/ns/default/sa/orders\` issues one for a calling service.
${SCHEMA_LINE}
version: 1

listeners:
  - name: mesh
    address: 0.0.0.0:8443
    tls:
      cert: certs/dev/server.crt
      key: certs/dev/server.key
      clientCA: certs/dev/ca.crt         # only certificates from this CA are accepted
      clientCert: required               # no certificate, no connection

${ADMIN}

${STORE('limits are shared through the store: refuse (503) while it is down')}

${TRUST}

upstreams:
  billing:
    url: http://127.0.0.1:9000           # receives X-Auth-Subject (the SPIFFE ID) and X-Forwarded-Client-Cert
    timeout: 30s

routes:
  - name: billing
    match: { path: /v1/billing/** }
    upstream: billing
    policies:
      - mtls:
          sans: ["URI:spiffe://example.org/ns/default/sa/orders"]   # the callers allowed here
      - rateLimit: { by: client, limit: 6000/min }
`,
  },
  {
    name: 'spa-backend',
    summary: 'the API behind a web or mobile app: JWT access tokens from your OpenID Connect provider',
    env: ['OIDC_ISSUER'],
    files: [],
    template: `# authgate — backend for a single-page or mobile app (authgate init --scenario spa-backend)
#
# Why JWT via OpenID Connect: your users sign in at an identity provider (Auth0, Okta, Keycloak, Entra ID...),
# which gives the app a short-lived access token. The gateway verifies its signature with the provider's
# published keys (found by discovery from the issuer), its expiry, issuer and audience. No password or
# long-lived secret ever reaches your API or this file.
#
# Set OIDC_ISSUER to the issuer URL exactly as it appears in tokens (https://login.example.com/realms/main), and
# audience to the value your IdP puts in \`aud\` for this API.
${SCHEMA_LINE}
version: 1

${TLS_LISTENER}

${ADMIN}

${STORE('limits are shared through the store: refuse (503) while it is down')}

${TRUST}

upstreams:
  api:
    url: http://127.0.0.1:9000           # receives X-Auth-Subject (the token's sub) and X-Auth-Scopes
    timeout: 30s

jwtProviders:
  idp:
    issuer: \${env:OIDC_ISSUER}
    audience: orders-api                 # tokens made for any other API are refused
    algorithms: [RS256, ES256]           # never HS* next to these: a public key must not double as a secret
    clockTolerance: 30s

routes:
  - name: api
    match: { path: /api/** }
    upstream: api
    cors: { preflight: public }          # browsers send CORS preflights (OPTIONS) without the token
    policies:
      - jwt: { provider: idp }           # Authorization: Bearer <access token>; removed before forwarding
      - rateLimit: { by: subject, limit: 300/min }
`,
  },
  {
    name: 'internal-tool',
    summary: 'an internal tool for a few people: HTTP Basic, over HTTPS only',
    env: [],
    files: [{ path: 'users.htpasswd', how: 'authgate passwd alice >> users.htpasswd (bcrypt)' }],
    template: `# authgate — internal tool (authgate init --scenario internal-tool)
#
# Why Basic: a handful of people, a browser, no identity provider to integrate. Every browser and curl speak it.
# Passwords cross the network on every request, so only over HTTPS (a plain-HTTP listener is refused); they are
# stored as bcrypt hashes, failed attempts are limited per user and per address, and successful checks are cached
# so bcrypt does not run on every request. Outgrowing it: move to spa-backend (OIDC) and single sign-on.
#
# Users: authgate passwd alice >> users.htpasswd   (next to this file)
${SCHEMA_LINE}
version: 1

${TLS_LISTENER}

${ADMIN}

${STORE('failed-attempt counters live in the store: refuse (503) rather than allow unlimited guessing')}

${TRUST}

upstreams:
  tool:
    url: http://127.0.0.1:9000           # receives X-Auth-Subject: the user name
    timeout: 30s

users:
  htpasswd: users.htpasswd               # bcrypt lines; reloaded when the file changes

routes:
  - name: tool
    match: { path: /** }
    upstream: tool
    policies:
      - basic: { maxFailuresPerUser: 10, maxFailuresPerIp: 50, failureWindow: 5m }
`,
  },
  {
    name: 'financial',
    summary: 'a high-integrity API (payments): signed requests (RFC 9421) and a user token, both required',
    env: ['OIDC_ISSUER', 'REDIS_URL'],
    files: [{ path: 'keys/partner-bank.pem', how: 'the partner\'s Ed25519 public key (openssl pkey -pubout)' }],
    template: `# authgate — high-integrity API, e.g. payments (authgate init --scenario financial)
#
# Why signatures and a token: a bearer token alone proves who is calling but not what they asked for; anyone who
# holds it can send any request. Here the calling system signs each request (HTTP Message Signatures, RFC 9421:
# method, URL and a digest of the body, with a nonce against replay) with its own private key, AND carries the
# user's access token. A stolen token cannot make a payment; a modified amount breaks the signature.
#
# Set OIDC_ISSUER and REDIS_URL (nonces and limits must be shared by every instance: Redis is required here).
# keys/partner-bank.pem: the partner's Ed25519 public key (they keep the private key).
${SCHEMA_LINE}
version: 1

${TLS_LISTENER}

${ADMIN}

store:
  redis: \${env:REDIS_URL}                # required: replay nonces are shared by every instance
  prefix: "authgate:"
  onError: deny                          # never accept a request whose nonce could not be checked

${TRUST}

upstreams:
  payments:
    url: http://127.0.0.1:9000           # also receives X-Auth-Identity, a gateway-signed JWT it can verify
    timeout: 30s

identity:
  signed: { ttl: 60s }                   # public keys at the admin listener's /.well-known/jwks.json

signingClients:
  - keyId: partner-bank
    client: partner-bank
    algorithm: ed25519
    publicKey: \${file:keys/partner-bank.pem}
    scopes: [payments:write]

jwtProviders:
  idp:
    issuer: \${env:OIDC_ISSUER}
    audience: payments-api
    algorithms: [ES256, RS256]
    clockTolerance: 30s
    maxAge: 10m                          # refuse tokens issued more than 10 minutes ago
    revocation: true                     # authgate tokens revoke JTI takes effect on every instance

limits:
  maxBodyBytes: 256KiB                   # payment requests are small; the body is buffered to check its digest

routes:
  - name: payments-create
    match: { path: /v1/payments, methods: [POST] }
    upstream: payments
    policies:
      - hmac: { scheme: rfc9421, requireNonce: true, window: 60s }   # @method @target-uri content-digest
      - jwt: { provider: idp }
      - scopes: [payments:write]
      - rateLimit: { by: client, limit: 60/min }

  - name: payments-read
    match: { path: /v1/payments/**, methods: [GET] }
    upstream: payments
    policies:
      - jwt: { provider: idp }
      - scopes: [payments:read]
      - rateLimit: { by: subject, limit: 600/min }
`,
  },
]

/** The scenarios by name, in the order `init` lists them. */
export const SCENARIOS: ReadonlyMap<string, Scenario> = new Map(TEMPLATES.map((s) => [s.name, s]))

export const INIT_USAGE = `usage: authgate init --scenario NAME [--out gateway.yaml] [--force]

${TEMPLATES.map((s) => `  ${s.name.padEnd(20)} ${s.summary}`).join('\n')}
`

/** Writes the scenario's gateway.yaml; refuses to replace an existing file without --force. */
export async function initCommand (args: string[], io: CommandIo): Promise<number> {
  const { parseArgs, flag, UsageError } = await import('../main.js')
  const parsed = parseArgs(args, { booleans: ['force'], values: ['scenario', 'out', 'o'] })
  if (parsed.positional.length > 0) throw new UsageError(`unexpected argument "${parsed.positional[0]}"`)
  const name = flag(parsed, 'scenario')
  if (name === undefined) {
    io.stderr.write(`authgate init: choose a scenario with --scenario\n\n${INIT_USAGE}`)
    return 2
  }
  const scenario = SCENARIOS.get(name)
  if (!scenario) throw new UsageError(`unknown scenario "${name}" (one of: ${[...SCENARIOS.keys()].join(', ')})`)
  const out = flag(parsed, 'out', 'o') ?? 'gateway.yaml'
  if (existsSync(out) && !parsed.flags.has('force')) {
    io.stderr.write(`authgate init: ${out} already exists (--force replaces it)\n`)
    return 1
  }
  writeFileSync(out, scenario.template, { mode: 0o644 })
  const steps = [
    ...scenario.env.map((name) => `set ${name}`),
    ...scenario.files.map((f) => `create ${f.path}: ${f.how}`),
    `authgate check -c ${out}`,
    `authgate start -c ${out}`,
  ]
  io.stdout.write(`wrote ${out} (${scenario.summary})\nnext:\n${steps.map((s, i) => `  ${i + 1}. ${s}`).join('\n')}\n`)
  return 0
}
