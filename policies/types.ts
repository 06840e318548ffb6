import type { DetailedPeerCertificate } from 'node:tls'
import type { TSchema } from '@sinclair/typebox'
import type { Challenge, ConfigIssue, Rejection } from '../gateway/errors.js'
import type { Store } from '../gateway/store/types.js'
import type { Logger } from '../gateway/log.js'
import type { AdminRoute } from '../gateway/admin.js'
import type { CommandIo } from '../cli/command.js'

/** What the chain establishes about the caller; forwarded to the upstream. */
export interface Identity {
  subject: string
  client: string
  /** Policy keys that authenticated, in chain order (`mtls,hmac,jwt`). Set by the chain, not by policies. */
  methods: string[]
  scopes: string[]
  tier?: string
  claims: Record<string, unknown>
  cert?: CertificateIdentity
}

export interface CertificateIdentity {
  subject: string
  /** SHA-256 of the DER certificate, lower-case hex. */
  fingerprint: string
  sans: string[]
  uri?: string
}

/** What a policy may return for identity: methods are added by the chain. */
export type IdentityUpdate = Partial<Omit<Identity, 'methods'>>

export interface RequestContext {
  readonly requestId: string
  readonly method: string
  /** Normalized path: the one matched, and the one forwarded. */
  readonly path: string
  /** The request target exactly as the client sent it (path and query, undecoded). */
  readonly rawTarget: string
  /** Query string without `?`, exactly as sent ('' when none). */
  readonly rawQuery: string
  readonly query: URLSearchParams
  readonly scheme: 'http' | 'https'
  /** The Host header (authority) as sent. */
  readonly authority: string
  /** Lower-case names; Node's joined view (duplicates of some headers are dropped: use headerValues to count). */
  readonly headers: Readonly<Record<string, string | undefined>>
  /** Every occurrence of a header, in order. Policies use this to refuse duplicated credentials (400). */
  headerValues (name: string): readonly string[]
  /** Client address: from X-Forwarded-For only when the peer is in trustProxies, else the socket's. */
  readonly remoteAddress: string
  readonly peerAddress: string
  readonly listener: string
  readonly route: string
  readonly upstream: string
  /** The client certificate, only when the TLS layer verified it against the listener's clientCA. */
  readonly peerCert: DetailedPeerCertificate | undefined
  /** A certificate was presented but did not verify (unknown CA, expired, revoked). */
  readonly peerCertRejected: boolean
  /** What earlier steps established. */
  readonly identity: Readonly<Partial<Identity>>
  /** The request body, buffered on first call, at most the route's maxBodyBytes (larger: rejects with 413). */
  body (): Promise<Buffer>
  /** Current time in ms; tests may fake it. */
  now (): number
}

/** The step passed; it may add to the identity and to the response or upstream headers. */
export interface Continue {
  readonly identity?: IdentityUpdate
  /** Headers for the client response (RateLimit, ...). */
  readonly responseHeaders?: Readonly<Record<string, string>>
  /** Headers the gateway adds for the upstream (X-Forwarded-Client-Cert, ...). Names lower-case. */
  readonly upstreamHeaders?: Readonly<Record<string, string>>
  /** Set when the policy authenticated nobody (rateLimit, scopes...). Default: authenticated when identity is given. */
  readonly authenticated?: boolean
}

export type Outcome = Continue | Rejection

export interface PolicyInstance {
  /** The challenge this method adds to every 401 of its route (one per accepted method). */
  readonly challenge?: Challenge
  /** Lower-case header names holding this policy's credential; removed before forwarding unless passthrough. */
  readonly credentialHeaders?: readonly string[]
  /**
   * Names the credential when other methods read the same one (`bearer`: jwt, introspection). In `anyOf`, members
   * naming the same credential are alternatives for it: it is refused only when none of them accepts it.
   */
  readonly credential?: string
  /** When true the chain buffers the body for this route before the policy runs. */
  readonly readsBody?: boolean
  /** Needs no caller (a rate limit by ip, route or header): runs on a CORS preflight of a `preflight: public` route. */
  readonly anonymous?: boolean
  /** Lower-case request headers the decision rests on besides credentials (a rate-limit key): kept whatever Connection says. */
  readonly keyHeaders?: readonly string[]
  evaluate (ctx: RequestContext): Promise<Outcome> | Outcome
  close? (): Promise<void> | void
}

export interface ListenerInfo {
  readonly name: string
  /** `decide`: the listener answers another proxy's authorization requests; TLS rules apply to the original request. */
  readonly mode: 'forward' | 'decide'
  readonly tls: boolean
  readonly clientCA: boolean
  readonly clientCert: 'optional' | 'required' | 'none'
}

export interface RouteInfo {
  readonly name: string
  readonly upstream: string
  /** The listeners this route is reachable on. */
  readonly listeners: readonly ListenerInfo[]
  readonly maxBodyBytes: number
}

/** Where one occurrence of a policy sits in its route's chain (`routes[].policies`). */
export interface StepPosition {
  /** Index in the route's `policies` list; for an anyOf member, the index of its anyOf step. */
  readonly index: number
  /** For an anyOf member: its index in the anyOf list. */
  readonly member?: number
}

export interface PolicyDeps {
  readonly store: Store
  readonly realm: string
  /** The whole validated configuration document (after interpolation). Sections are read by their owners. */
  readonly config: Readonly<Record<string, unknown>>
  readonly route: RouteInfo
  /** This occurrence's place in the route's chain. The gateway always gives it; a unit test building a lone policy may not. */
  readonly step?: StepPosition
  /**
   * The registered policies by key (the registry, lent by the core: a policy module never imports it), for what a
   * policy must know of the others: whether a step authenticates, which methods read a bearer token.
   * The gateway always gives it; a unit test may not.
   */
  readonly policies?: ReadonlyMap<string, PolicyDefinition>
  /** Folder of the config file: relative paths are resolved against it. */
  readonly baseDir: string
  readonly log: Logger
  /** Shared per configuration generation: build once, reuse across routes (JWKS caches, key caches). */
  shared<T> (name: string, build: () => T): T
  now (): number
}

export interface CheckEnv {
  /** The whole validated document. */
  readonly config: Readonly<Record<string, unknown>>
  readonly route: RouteInfo
  /** As in PolicyDeps: this occurrence's place in the route's chain. */
  readonly step?: StepPosition
  /** As in PolicyDeps: the registered policies by key. */
  readonly policies?: ReadonlyMap<string, PolicyDefinition>
}

/** A header that carries (part of) a policy's credential, as configured. */
export interface CredentialHeader {
  /** The header name as configured (any case). */
  readonly name: string
  /** Path of the option that names it, relative to the policy's config (`['header']`); `[]` when it is fixed. */
  readonly path: ReadonlyArray<string | number>
  /** Its value is a secret (an API key, a signature): logs redact it. Key ids and timestamps are not. */
  readonly secret: boolean
}

/** A finding of a policy's own security lint rule (`authgate check`): warnings keep exit 0, errors make it 1. */
export interface LintFinding {
  /** Rule id, kebab-case, starting with the policy's name (`basic-insecure-exposed`); printed as `[rule]`. */
  readonly rule: string
  readonly severity: 'error' | 'warning'
  /** Path in the whole document (`['routes', 0, 'policies', 1, 'basic', 'allowInsecure']`). */
  readonly path: ReadonlyArray<string | number>
  /** What is wrong and why it matters; the core appends ` [rule]`. */
  readonly message: string
  readonly fix: string
}

/** A listener as the lint sees it. */
export interface LintListener {
  readonly name: string
  readonly address: string
  readonly tls: boolean
  /** Other machines can connect to it (its address is not a loopback one). */
  readonly exposed: boolean
  /** `decide`: another proxy asks it for decisions (decision mode) and sends the request's body only if configured to. */
  readonly mode: 'forward' | 'decide'
}

/** One occurrence of a policy in the routes, anyOf members included. */
export interface PolicyOccurrence {
  /**
   * Its block as written in the document. The loader validated it, but a rule must read it defensively: lint runs
   * on documents whose policy blocks no schema checked (tests), so defaults may be missing.
   */
  readonly config: Readonly<Record<string, unknown>>
  /** Path of the block: `['routes', r, 'policies', i, key]` or `[..., 'anyOf', j, key]`. */
  readonly path: ReadonlyArray<string | number>
  readonly route: { readonly name: string, readonly index: number, readonly listeners: readonly LintListener[] }
}

/** What a policy's lint rules read. Rules never open files. */
export interface LintEnv {
  /** The whole validated document (interpolated, defaults applied). */
  readonly doc: Readonly<Record<string, unknown>>
  /** Every occurrence of this policy, in document order. */
  readonly occurrences: readonly PolicyOccurrence[]
  /** Every listener of the document. */
  readonly listeners: readonly LintListener[]
}

/** Hit and miss counts of one cache since the configuration was loaded (`authgate_cache_lookups_total{cache}`). */
export interface CacheStats {
  readonly cache: string
  readonly hits: number
  readonly misses: number
}

/**
 * A shared object (`PolicyDeps.shared`) that keeps caches implements this: /metrics asks every shared object of the
 * current generation at scrape time, and each names its own caches (`apiKey`, `jwt_token`, `jwks`).
 */
export interface CacheReporter {
  reportCaches (): readonly CacheStats[]
}

/** What the gateway lends a policy's admin routes. Getters: a reload may replace the store and the document. */
export interface AdminDeps {
  store (): Store
  /** The current validated document. */
  config (): Readonly<Record<string, unknown>>
  now (): number
}

export interface PolicyDefinition<Config = any> {
  /** YAML key: 'apiKey'. Also the name in X-Auth-Methods. */
  readonly key: string
  readonly schema: TSchema
  /** Whether it establishes who the caller is (a route must have one unless `public: true`). */
  readonly authenticates: boolean
  /** Only meaningful after authentication (scopes, claims): a config error on a `public: true` route. */
  readonly needsIdentity?: boolean
  /**
   * Names the credential it reads when other methods read the same one, as its instances do (`bearer`: jwt,
   * introspection). `scopes` gives a 403 the RFC 6750 challenge when a `bearer` method authenticated the caller.
   */
  readonly credential?: string
  /** Cross-reference checks after schema validation; issue paths are relative to the policy's config. */
  check? (config: Config, env: CheckEnv): ConfigIssue[]
  /** Runs at load, once per route occurrence; may throw ConfigError. */
  create (config: Config, deps: PolicyDeps): PolicyInstance | Promise<PolicyInstance>
  /**
   * The headers that carry its credential, as configured for one occurrence (`config` as in PolicyOccurrence: read
   * it defensively). The lint refuses those the gateway strips on ingress; logs redact the `secret` ones.
   */
  credentialHeaders? (config: Readonly<Record<string, unknown>>, doc: Readonly<Record<string, unknown>>): readonly CredentialHeader[]
  /** Its own security lint rules (`authgate check`), run on a valid document after every check passed. */
  lint? (env: LintEnv): LintFinding[]
  /** Routes it adds to the admin listener, behind the admin token (`/admin/keys`). Built once, at start. */
  adminRoutes? (deps: AdminDeps): readonly AdminRoute[]
  /** Commands this policy adds to `authgate` (keys, passwd, sign, tokens...); cli/ finds them through the registry. */
  readonly commands?: readonly CommandDefinition[]
}

/** What the command line lends a policy's command. */
export interface CommandContext {
  /** The store that `configFile` configures. Refuses the in-process memory store: what it holds dies with the command. */
  openStore (configFile: string): Promise<Store>
}

/** A subcommand of `authgate` declared by a policy module. */
export interface CommandDefinition {
  /** `authgate NAME ...` */
  readonly name: string
  /** What follows the name in `authgate --help`: the arguments, then what it does (more lines indented to match). */
  readonly usage: string
  /**
   * Runs it and returns the exit code (0, 1 on failure, 2 on a usage mistake). A UsageError it throws is printed
   * with the general usage. Import the implementation inside (`await import('./cli.js')`): serving never loads it.
   */
  run (args: readonly string[], io: CommandIo, context: CommandContext): Promise<number>
}

/** A top-level section of gateway.yaml owned by a policy module (jwtProviders, signingClients...). */
export interface SectionDefinition {
  readonly key: string
  readonly schema: TSchema
  /** `env.baseDir`: the config file's folder, for sections that name files (htpasswd). */
  check? (value: unknown, config: Readonly<Record<string, unknown>>, env: { readonly baseDir: string }): ConfigIssue[]
  /** The files the section makes the gateway read (htpasswd), absolute: a change to one reloads (`start --watch`). */
  files? (value: unknown, baseDir: string): string[]
}

/** Where the gateway's own endpoints live: never routed, never forwarded (`/.authgate/login`...). */
export const RESERVED_PREFIX = '/.authgate/'

/** A request for an endpoint under RESERVED_PREFIX, as a front door describes it (proxy mode, decision mode). */
export interface ReservedRequest {
  readonly requestId: string
  readonly method: string
  /** Path and query exactly as sent. */
  readonly target: string
  readonly scheme: 'http' | 'https'
  readonly listener: string
  /** Lower-case names. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  readonly remoteAddress: string
  /** The body, at most `maxBytes` (more: rejects with BodyTooLargeError). */
  body (maxBytes: number): Promise<Buffer>
}

/** A whole answer from a reserved endpoint. */
export interface ReservedAnswer {
  readonly status: number
  /** For the access line: `ok` or the error code. */
  readonly code: string
  readonly headers: Readonly<Record<string, string | readonly string[]>>
  readonly body: string
}

/**
 * A shared object (`PolicyDeps.shared`) that serves endpoints under RESERVED_PREFIX implements this (sessions: login,
 * callback, logout). Front doors ask every one of the current generation before deciding.
 */
export interface ReservedEndpoints {
  /** undefined: not its request (the request goes on to routing). */
  serveReserved (req: ReservedRequest, now: number): Promise<ReservedAnswer | undefined>
}

/**
 * A shared object whose policy sets cookies of the gateway's own (the session cookie) implements this: those cookies
 * are removed from the `Cookie` header of every request forwarded by that generation, on every route.
 */
export interface CookieOwner {
  ownedCookies (): readonly string[]
}

/** A shared object that counts events of its own for /metrics implements this; read at scrape time. */
export interface MetricsReporter {
  reportMetrics (): readonly ReportedMetric[]
}

/** One series: a counter (since the configuration was loaded) or a gauge. */
export interface ReportedMetric {
  /** Full Prometheus name (`authgate_session_logins_total`). */
  readonly name: string
  readonly help: string
  readonly type: 'counter' | 'gauge'
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}
