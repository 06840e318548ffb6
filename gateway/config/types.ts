/** The validated gateway.yaml (after interpolation and defaults). Policy-owned sections are read by their modules. */

export type DurationValue = string | number
export type SizeValue = string | number

export interface TlsConfig {
  cert: string
  key: string
  clientCA?: string
  clientCert?: 'optional' | 'required'
  crl?: string
  minVersion?: 'TLSv1.2' | 'TLSv1.3'
}

export interface Http2LimitsConfig { maxConcurrentStreams: number, maxHeaderListBytes?: SizeValue, maxResetsPerSecond: number }

export interface ListenerConfig {
  name: string
  address: string
  tls?: TlsConfig
  http2?: boolean | 'prior-knowledge'
  http2Limits?: Http2LimitsConfig
  mode?: 'forward' | 'decide'
  /** Decision listeners: who may ask (default loopback). */
  trustProxies?: string[]
  /** Decision listeners: verifies client certificates forwarded by the proxy. */
  clientCA?: string
  crl?: string
}

export interface UpstreamConfig {
  url?: string
  echo?: boolean
  timeout: DurationValue
  connectTimeout: DurationValue
  connections: number
  pipelining: number
  preserveHost: boolean
  ca?: string
  protocol: 'http1' | 'h2' | 'h2c'
}

export interface LimitsConfig {
  maxBodyBytes: SizeValue
  maxHeaderBytes: SizeValue
  maxHeaderCount?: number
  headersTimeout: DurationValue
  requestTimeout: DurationValue
  bufferBodyBytes: SizeValue
  bodyIdleTimeout: DurationValue
}

export type PolicyStep = Record<string, unknown>

export interface RouteConfig {
  name: string
  match: { path: string, host?: string | string[], methods?: string[], listener?: string | string[] }
  /** Absent on a route that only serves decisions. */
  upstream?: string
  public?: boolean
  policies?: PolicyStep[]
  limits?: Partial<LimitsConfig>
  stripPrefix?: string
  cors?: { preflight: 'authenticated' | 'public' }
}

export interface IdentityConfig {
  headers: { subject: string, client: string, methods: string, scopes: string, tier: string }
  signed?: { header: string, ttl: DurationValue, issuer: string, algorithm: 'ES256' | 'EdDSA', keyFile?: string }
  stripInbound: string[]
}

export interface StoreConfig {
  redis?: string | { cluster: string[] }
  prefix: string
  onError: 'deny' | 'allow'
  timeout: DurationValue
}

export interface GatewayDocument {
  version: 1
  listeners: ListenerConfig[]
  admin?: { address: string, token?: string }
  store: StoreConfig
  trustProxies: string[]
  upstreams: Record<string, UpstreamConfig>
  rateLimitTiers: Record<string, string>
  limits: LimitsConfig
  realm: string
  identity: IdentityConfig
  workers: 'auto' | number
  log: { level: string }
  shutdownTimeout: DurationValue
  routes: RouteConfig[]
  [section: string]: unknown
}

export interface LoadedConfig {
  /** Path of the file as given (for messages) and its folder (relative paths). */
  readonly file: string
  readonly baseDir: string
  readonly doc: GatewayDocument
  /** SHA-256 of the file text: shown on /readyz and in metrics. */
  readonly hash: string
  readonly loadedAt: Date
  readonly warnings: readonly import('../errors.js').ConfigIssue[]
}
