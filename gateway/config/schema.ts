import { Type, type TSchema } from '@sinclair/typebox'
import { DURATION_PATTERN, RATE_PATTERN, SIZE_PATTERN } from './units.js'

/** Schema helpers: every field documents itself; these become docs/configuration.md and gateway.schema.json. */
export const Duration = (description: string, defaultValue?: string) =>
  Type.Union([Type.String({ pattern: DURATION_PATTERN }), Type.Number({ minimum: 0 })],
    { description: `${description} Duration: 250ms, 30s, 5m, 1h, 1d (a bare number is seconds).`, ...(defaultValue !== undefined ? { default: defaultValue } : {}), format: 'duration' })
export const Rate = (description: string) =>
  Type.String({ pattern: RATE_PATTERN, description: `${description} Rate: N/sec, N/min, N/hour or N/day.`, format: 'rate' })
export const Size = (description: string, defaultValue?: string) =>
  Type.Union([Type.String({ pattern: SIZE_PATTERN }), Type.Integer({ minimum: 0 })],
    { description: `${description} Size: 512, 64KiB, 1MiB.`, ...(defaultValue !== undefined ? { default: defaultValue } : {}), format: 'size' })
const StringOrList = (description: string) =>
  Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })], { description })

const Name = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$', description: 'A name: letters, digits, `_`, `.`, `-`.' })

/** Global limit defaults (DESIGN.md). */
export const DEFAULT_LIMITS = {
  maxBodyBytes: '1MiB', maxHeaderBytes: '16KiB', headersTimeout: '10s', requestTimeout: '60s', bufferBodyBytes: '64KiB', bodyIdleTimeout: '10s',
}

function limitsSchema (withDefaults: boolean) {
  const d = (value: string) => withDefaults ? value : undefined
  return Type.Object({
    maxBodyBytes: Size('Largest request body accepted (413 payload_too_large above it).', d(DEFAULT_LIMITS.maxBodyBytes)),
    maxHeaderBytes: Size('Largest request head (request line and headers) accepted (431 headers_too_large above it).', d(DEFAULT_LIMITS.maxHeaderBytes)),
    maxHeaderCount: Type.Optional(Type.Integer({ minimum: 1, description: 'Most request header fields accepted (431 above it). Default 200.' })),
    headersTimeout: Duration('Time a client has to send the whole request head.', d(DEFAULT_LIMITS.headersTimeout)),
    requestTimeout: Duration('Time a client has to send the whole request.', d(DEFAULT_LIMITS.requestTimeout)),
    bufferBodyBytes: Size('Request bodies up to this size are read whole before an upstream connection is taken, so a slow client holds none; a larger body is streamed.', d(DEFAULT_LIMITS.bufferBodyBytes)),
    bodyIdleTimeout: Duration('Longest pause in a request body the gateway is waiting for (408 request_timeout; the upstream request, if any, is aborted); 0 turns the check off.', d(DEFAULT_LIMITS.bodyIdleTimeout)),
  }, { additionalProperties: false, description: 'Limits against oversized and slow requests.', ...(withDefaults ? { default: {} } : {}) })
}
export const LimitsSchema = limitsSchema(true)

const TlsSchema = Type.Object({
  cert: Type.String({ description: 'Server certificate chain (PEM file path).' }),
  key: Type.String({ description: 'Server private key (PEM file path).' }),
  clientCA: Type.Optional(Type.String({ description: 'Ask for client certificates and verify them against this CA bundle (PEM file path).' })),
  clientCert: Type.Optional(Type.Union([Type.Literal('optional'), Type.Literal('required')],
    { description: 'optional: routes decide (mtls policy); required: the handshake fails without a valid certificate.', default: 'optional' })),
  crl: Type.Optional(Type.String({ description: 'Certificate revocation list for client certificates (PEM file path).' })),
  minVersion: Type.Optional(Type.Union([Type.Literal('TLSv1.2'), Type.Literal('TLSv1.3')], { default: 'TLSv1.2', description: 'Lowest TLS version accepted.' })),
}, { additionalProperties: false, description: 'Terminate TLS (and mutual TLS) on this listener.' })

export const ListenerSchema = Type.Object({
  name: Name,
  address: Type.String({ pattern: '^(\\[[0-9a-fA-F:.]+\\]|[^:\\s\\[\\]]*):\\d{1,5}$', description: 'host:port to listen on (`127.0.0.1:8080`, `[::1]:8443`, `0.0.0.0:8443`).' }),
  tls: Type.Optional(TlsSchema),
  mode: Type.Optional(Type.Union([Type.Literal('forward'), Type.Literal('decide')], { default: 'forward',
    description: '`forward`: authgate is the proxy. `decide`: authgate answers the authorization requests of another proxy (nginx `auth_request`, Traefik ForwardAuth, Caddy `forward_auth`, Envoy `ext_authz`) on `/nginx`, `/forward` and `/envoy/...`; see docs/decision-mode.md.' })),
  trustProxies: Type.Optional(Type.Array(Type.String(), { description: 'Decision listeners only: the proxies (IPs or CIDRs) that may ask; anyone else gets 403. Default: loopback only. Replaces the global `trustProxies` on this listener.' })),
  clientCA: Type.Optional(Type.String({ description: 'Decision listeners only: CA bundle (PEM file path) that client certificates forwarded by the proxy (X-Forwarded-Client-Cert, X-SSL-Client-Cert, X-Forwarded-Tls-Client-Cert) are verified against again. Without it, forwarded certificates are refused.' })),
  crl: Type.Optional(Type.String({ description: 'Decision listeners only: revocation list (PEM file path) for forwarded client certificates; needs clientCA.' })),
  http2: Type.Optional(Type.Union([Type.Boolean(), Type.Literal('prior-knowledge')], {
    description: 'HTTP/2 on this listener. TLS listeners: true by default (ALPN h2 and http/1.1 on one port). Plain listeners: `prior-knowledge` accepts h2c with prior knowledge next to HTTP/1.1 (internal use); false by default. An HTTP/1.1 `Upgrade: h2c` is always refused.',
  })),
  http2Limits: Type.Optional(Type.Object({
    maxConcurrentStreams: Type.Integer({ minimum: 1, maximum: 10000, default: 100, description: 'Streams a client may have open at once on one HTTP/2 connection.' }),
    maxHeaderListBytes: Type.Optional(Size('Largest header list (HPACK-decoded) an HTTP/2 client may send; default: limits.maxHeaderBytes.')),
    maxResetsPerSecond: Type.Integer({ minimum: 1, default: 100, description: 'Streams a client may reset per second on one connection (rapid reset, CVE-2023-44487): above it the connection is closed with GOAWAY ENHANCE_YOUR_CALM.' }),
  }, { additionalProperties: false, description: 'HTTP/2 limits per connection on this listener.' })),
}, { additionalProperties: false })

export const UpstreamSchema = Type.Object({
  url: Type.Optional(Type.String({ pattern: '^https?://', description: 'Origin to forward to: http(s)://host:port (a path prefix is prepended to forwarded paths).' })),
  echo: Type.Optional(Type.Boolean({ description: 'Built-in upstream that answers with the request it received, as JSON (demos and tests).' })),
  timeout: Duration('Time allowed for the upstream response head and between body chunks (504 upstream_timeout).', '30s'),
  connectTimeout: Duration('Time allowed to connect to the upstream (502 upstream_unavailable).', '5s'),
  connections: Type.Integer({ minimum: 1, default: 64, description: 'Keep-alive connection pool size per instance.' }),
  pipelining: Type.Integer({ minimum: 1, maximum: 16, default: 1, description: 'HTTP/1.1 requests in flight per connection (1 = no pipelining).' }),
  preserveHost: Type.Boolean({ default: true, description: 'Forward the client\'s Host header (true) or the upstream\'s own host (false).' }),
  ca: Type.Optional(Type.String({ description: 'CA bundle to verify an https upstream (PEM file path).' })),
  protocol: Type.Union([Type.Literal('http1'), Type.Literal('h2'), Type.Literal('h2c')], {
    default: 'http1',
    description: 'How the gateway speaks to this upstream: http1 (HTTP/1.1 keep-alive pool), h2 (HTTP/2 over TLS, https URL) or h2c (HTTP/2 with prior knowledge, http URL); one multiplexed connection per upstream, renewed on GOAWAY. gRPC upstreams need h2 or h2c.',
  }),
}, { additionalProperties: false })

const MatchSchema = Type.Object({
  path: Type.String({ pattern: '^/', description: 'Path pattern: exact `/v1/orders`, one segment `/v1/orders/*`, any depth `/v1/orders/**`.' }),
  host: Type.Optional(StringOrList('Host name(s), case-insensitive, port ignored; `*.example.com` matches subdomains.')),
  methods: Type.Optional(Type.Array(Type.String({ pattern: '^[A-Za-z]+$' }), { minItems: 1, description: 'HTTP methods; all when omitted.' })),
  listener: Type.Optional(StringOrList('Listener name(s) this route is reachable on; all when omitted.')),
}, { additionalProperties: false })

/** A policy step: `{ apiKey: {...} }` or `{ anyOf: [steps] }`. Each policy block is validated against its own schema. */
const PolicyStepSchema = Type.Object({}, {
  minProperties: 1, maxProperties: 1,
  description: 'One policy: `{ policyName: config }`, or `{ anyOf: [ ... ] }` (one member must authenticate).',
})

export const RouteSchema = Type.Object({
  name: Name,
  match: MatchSchema,
  upstream: Type.Optional(Type.String({ description: 'Name of an entry in `upstreams`. Optional on a route reachable only on decision listeners (`mode: decide`), which forward nothing.' })),
  public: Type.Optional(Type.Boolean({ description: 'No authentication. Only non-authenticating policies (rateLimit) may be listed.' })),
  policies: Type.Optional(Type.Array(PolicyStepSchema, { description: 'Steps run in order; all must pass.' })),
  // No defaults here: a key a route leaves out comes from the global `limits`, not from the built-in default.
  limits: Type.Optional(Type.Partial(limitsSchema(false))),
  stripPrefix: Type.Optional(Type.String({ pattern: '^/', description: 'Remove this prefix from the forwarded path (after matching).' })),
  cors: Type.Optional(Type.Object({
    preflight: Type.Union([Type.Literal('authenticated'), Type.Literal('public')], { default: 'authenticated', description: '`public` lets OPTIONS requests with Access-Control-Request-Method through without credentials.' }),
  }, { additionalProperties: false })),
}, { additionalProperties: false })

export const IdentitySchema = Type.Object({
  headers: Type.Object({
    subject: Type.String({ default: 'X-Auth-Subject' }),
    client: Type.String({ default: 'X-Auth-Client' }),
    methods: Type.String({ default: 'X-Auth-Methods' }),
    scopes: Type.String({ default: 'X-Auth-Scopes' }),
    tier: Type.String({ default: 'X-Auth-Tier' }),
  }, { additionalProperties: false, default: {}, description: 'Headers that carry the verified identity to the upstream.' }),
  signed: Type.Optional(Type.Object({
    header: Type.String({ default: 'X-Auth-Identity' }),
    ttl: Duration('Lifetime of the signed identity token.', '60s'),
    issuer: Type.String({ default: 'authgate' }),
    algorithm: Type.Union([Type.Literal('ES256'), Type.Literal('EdDSA')], { default: 'ES256' }),
    keyFile: Type.Optional(Type.String({ description: 'PKCS#8 PEM private key; generated and shared through the store when omitted.' })),
  }, { additionalProperties: false, description: 'A gateway-signed JWT with the identity; public keys at /.well-known/jwks.json on the admin listener.' })),
  stripInbound: Type.Array(Type.String(), { default: [], description: 'More header names stripped from every request (identity headers are always stripped).' }),
}, { additionalProperties: false, default: {}, description: 'What upstreams receive.' })

export const StoreSchema = Type.Object({
  redis: Type.Optional(Type.Union([
    Type.String({ description: 'redis:// or rediss:// URL; empty: in-process memory.' }),
    Type.Object({ cluster: Type.Array(Type.String(), { minItems: 1 }) }, { additionalProperties: false }),
  ], { description: 'Redis URL, or `{ cluster: [urls] }`; empty or absent: in-process memory (one instance).' })),
  prefix: Type.String({ default: 'authgate:', description: 'Prefix for every key and channel.' }),
  onError: Type.Union([Type.Literal('deny'), Type.Literal('allow')], { default: 'deny', description: 'deny: 503 store_unavailable; allow: fall back to per-instance limits when Redis fails.' }),
  timeout: Duration('Longest wait for one store call.', '500ms'),
}, { additionalProperties: false, default: {} })

export const AdminSchema = Type.Object({
  address: Type.String({ pattern: '^(\\[[0-9a-fA-F:.]+\\]|[^:\\s\\[\\]]*):\\d{1,5}$', description: 'host:port of the admin listener.' }),
  token: Type.Optional(Type.String({ sensitive: true, description: 'Bearer token for /admin/*; required when NODE_ENV=production.' })),
}, { additionalProperties: false })

/** The core of gateway.yaml. Policy modules add their own sections (jwtProviders, signingClients, users, apiKeys). */
export function gatewaySchema (sections: Record<string, TSchema>): TSchema {
  return Type.Object({
    version: Type.Literal(1, { description: 'Configuration format version.' }),
    listeners: Type.Array(ListenerSchema, { minItems: 1, description: 'Where the gateway accepts requests.' }),
    admin: Type.Optional(AdminSchema),
    store: StoreSchema,
    trustProxies: Type.Array(Type.String(), { default: [], description: 'CIDRs of proxies allowed to set X-Forwarded-*; default none.' }),
    upstreams: Type.Record(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$' }), UpstreamSchema, { additionalProperties: false, default: {}, description: 'Named upstreams (none needed when every route only serves decisions).' }),
    rateLimitTiers: Type.Record(Type.String(), Rate('Rate for this tier.'), { default: {}, description: 'Rates by tier name, for `rateLimit: { tier: true }`.' }),
    limits: LimitsSchema,
    realm: Type.String({ default: 'authgate', pattern: '^[^"\\\\]*$', description: 'realm of WWW-Authenticate challenges.' }),
    identity: IdentitySchema,
    workers: Type.Union([Type.Literal('auto'), Type.Integer({ minimum: 1, maximum: 64 })], { default: 1, description: 'Worker processes sharing the listeners (auto = one per core).' }),
    log: Type.Object({
      level: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)), { default: 'info' }),
    }, { additionalProperties: false, default: {} }),
    shutdownTimeout: Duration('Longest wait for in-flight requests on SIGTERM.', '30s'),
    routes: Type.Array(RouteSchema, { minItems: 1, description: 'Matched in file order; the first match wins.' }),
    // Policy-owned sections are optional: a configuration that uses no basic policy has no `users:`.
    ...Object.fromEntries(Object.entries(sections).map(([key, schema]) => [key, Type.Optional(schema)])),
  }, { additionalProperties: false })
}

