/**
 * What the benchmark's gateway needs, made at run time: API keys, JWT keys and tokens, an HMAC signing client,
 * a Basic user, a PKI for (m)TLS, and the gateway.yaml that puts one route per scenario in front of the upstream.
 */
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import bcrypt from 'bcryptjs'
import { SignJWT, exportJWK, generateKeyPair } from 'jose'
import { stringify } from 'yaml'
import { digestApiKey, hashApiKey, newApiKey } from '../../policies/api-key/format.js'
import { mintPki, type Pki } from '../../test/helpers/pki.js'

export interface Material {
  readonly staticKey: { readonly id: string, readonly key: string, readonly hash: string }
  readonly dynamicKey: { readonly id: string, readonly key: string, readonly digest: Buffer }
  readonly hsSecret: string
  readonly hsToken: string
  readonly esToken: string
  readonly jwks: string
  readonly hmac: { readonly keyId: string, readonly secret: string }
  readonly basic: { readonly user: string, readonly password: string, readonly htpasswd: string }
  readonly pki: Pki
  /** 1 KiB of JSON-ish text: the body of the signed (POST) scenarios. */
  readonly body1k: string
}

export async function makeMaterial (): Promise<Material> {
  const staticKey = newApiKey()
  const dynamicKey = newApiKey()
  const hsSecret = randomBytes(32).toString('base64url')
  const now = Math.floor(Date.now() / 1000)
  const claims = { scope: 'read write', client_id: 'bench-client' }
  const hsToken = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256' })
    .setSubject('bench-user').setAudience('bench').setIssuedAt(now).setExpirationTime(now + 4 * 3600)
    .sign(Buffer.from(hsSecret, 'utf8'))
  const es = await generateKeyPair('ES256', { extractable: true })
  const jwk = { ...await exportJWK(es.publicKey), kid: 'bench-es', alg: 'ES256', use: 'sig' }
  const esToken = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'bench-es' })
    .setSubject('bench-user').setAudience('bench').setIssuedAt(now).setExpirationTime(now + 4 * 3600)
    .sign(es.privateKey)
  const password = randomBytes(12).toString('base64url')
  const body = JSON.stringify({ items: Array.from({ length: 64 }, (_, i) => ({ id: i, sku: `SKU-${String(i).padStart(6, '0')}` })) })
  return {
    staticKey: { ...staticKey, hash: hashApiKey(staticKey.key) },
    dynamicKey: { ...dynamicKey, digest: digestApiKey(dynamicKey.key) },
    hsSecret,
    hsToken,
    esToken,
    jwks: JSON.stringify({ keys: [jwk] }),
    hmac: { keyId: 'bench-signer', secret: randomBytes(32).toString('hex') },
    basic: { user: 'bench', password, htpasswd: `bench:${bcrypt.hashSync(password, 10)}\n` },
    pki: await mintPki(),
    body1k: body.padEnd(1024, ' ').slice(0, 1024),
  }
}

export interface GatewayPorts {
  readonly plain: number
  readonly tls: number
  /** The decision listener (`mode: decide`, issue 15): the same routes, answered for another proxy. */
  readonly decide?: number
  /** A second TLS listener with `http2: false` (issue 17: HTTP/1.1 clients on an h2 listener against an h1-only one). */
  readonly tlsH1?: number
  /** A plain listener with `http2: prior-knowledge` (h2c): the gRPC rows, without TLS like their direct twin. */
  readonly h2c?: number
}

/** Scenario routes; each lists the policies it needs (a route whose policy is not registered is left out). */
export interface RouteSpec {
  readonly name: string
  readonly path: string
  readonly needs: readonly string[]
  /** The upstream it forwards to: the HTTP/1.1 responder (default) or the gRPC server (`protocol: h2c`). */
  readonly upstream?: 'up' | 'grpc'
  readonly route: Record<string, unknown>
}

const RATE = '1000000/sec' // far above what one machine sends: never 429

export function routeSpecs (): RouteSpec[] {
  return [
    { name: 'public', path: '/public/**', needs: [], route: { public: true } },
    { name: 'apikey', path: '/apikey/**', needs: ['apiKey'], route: { policies: [{ apiKey: {} }] } },
    { name: 'jwt-hs', path: '/jwt-hs/**', needs: ['jwt'], route: { policies: [{ jwt: { provider: 'hs' } }] } },
    { name: 'jwt-es', path: '/jwt-es/**', needs: ['jwt'], route: { policies: [{ jwt: { provider: 'es' } }] } },
    { name: 'hmac', path: '/hmac/**', needs: ['hmac'], route: { methods: ['POST'], policies: [{ hmac: { scheme: 'hmac-sha256' } }] } },
    { name: 'basic', path: '/basic/**', needs: ['basic'], route: { policies: [{ basic: { allowInsecure: true } }] } },
    { name: 'mtls', path: '/mtls/**', needs: ['mtls'], route: { listener: 'tls', policies: [{ mtls: {} }] } },
    { name: 'ratelimit', path: '/rl/**', needs: ['apiKey', 'rateLimit'], route: { policies: [{ apiKey: {} }, { rateLimit: { by: 'client', limit: RATE } }] } },
    { name: 'ratelimit-lease', path: '/rl-lease/**', needs: ['apiKey', 'rateLimit'], route: { policies: [{ apiKey: {} }, { rateLimit: { by: 'client', limit: RATE, lease: 100 } }] } },
    {
      name: 'full',
      path: '/full/**',
      needs: ['mtls', 'hmac', 'jwt', 'rateLimit'],
      route: {
        listener: 'tls',
        methods: ['POST'],
        policies: [{ mtls: {} }, { hmac: { scheme: 'hmac-sha256' } }, { jwt: { provider: 'hs' } }, { rateLimit: { by: 'client', limit: RATE } }],
      },
    },
    // Issue 17: a gRPC unary method (bench/grpc-upstream.ts) behind an API key.
    { name: 'grpc', path: '/bench.Echo/*', needs: ['apiKey'], upstream: 'grpc', route: { policies: [{ apiKey: {} }] } },
  ]
}

export interface ConfigOptions {
  readonly dir: string
  readonly ports: GatewayPorts
  readonly upstreamPort: number
  /** The gRPC upstream (bench/grpc-upstream.ts); without it the `grpc` route is left out. */
  readonly grpcUpstreamPort?: number
  readonly redisUrl: string
  readonly prefix: string
  readonly workers: number
  /** Access log level (default info: one line per request, as in production). */
  readonly logLevel?: string
  /** Registered policy keys. */
  readonly available: ReadonlySet<string>
  /** Only these routes (default: every route whose policies are available). */
  readonly only?: readonly string[]
}

/** Writes gateway.yaml (and users.htpasswd) into `dir`; returns the file path and the routes it has. */
export function writeGatewayConfig (material: Material, options: ConfigOptions): { file: string, routes: Set<string> } {
  const routes = new Set<string>()
  const routeList: Array<Record<string, unknown>> = []
  for (const spec of routeSpecs()) {
    if (options.only && !options.only.includes(spec.name)) continue
    if (!spec.needs.every((key) => options.available.has(key))) continue
    if (spec.upstream === 'grpc' && options.grpcUpstreamPort === undefined) continue
    const { listener, methods, ...rest } = spec.route as { listener?: string, methods?: string[] }
    routeList.push({
      name: spec.name,
      match: { path: spec.path, ...(methods ? { methods } : {}), ...(listener ? { listener } : {}) },
      upstream: spec.upstream ?? 'up',
      ...rest,
    })
    routes.add(spec.name)
  }
  const uses = (key: string) => [...routes].some((name) => routeSpecs().find((s) => s.name === name)!.needs.includes(key))
  writeFileSync(join(options.dir, 'users.htpasswd'), material.basic.htpasswd)
  writeFileSync(join(options.dir, 'server.crt'), material.pki.server.cert)
  writeFileSync(join(options.dir, 'server.key'), material.pki.server.key)
  writeFileSync(join(options.dir, 'ca.crt'), material.pki.ca.cert)
  // Both TLS listeners alike, so that only `http2` differs between them.
  const tls = { cert: 'server.crt', key: 'server.key', clientCA: 'ca.crt', clientCert: 'optional' }
  const doc: Record<string, unknown> = {
    version: 1,
    workers: options.workers,
    log: { level: options.logLevel ?? 'info' },
    listeners: [
      { name: 'plain', address: `127.0.0.1:${options.ports.plain}` },
      // http2: true is a TLS listener's default (ALPN h2 and http/1.1); said here because the h2 rows depend on it.
      { name: 'tls', address: `127.0.0.1:${options.ports.tls}`, tls, http2: true },
      ...(options.ports.tlsH1 !== undefined ? [{ name: 'tls-h1', address: `127.0.0.1:${options.ports.tlsH1}`, tls, http2: false }] : []),
      ...(options.ports.h2c !== undefined ? [{ name: 'h2c', address: `127.0.0.1:${options.ports.h2c}`, http2: 'prior-knowledge' }] : []),
      // Default trust (loopback): the load generator and nginx ask from 127.0.0.1.
      ...(options.ports.decide !== undefined ? [{ name: 'decide', address: `127.0.0.1:${options.ports.decide}`, mode: 'decide' }] : []),
    ],
    store: { redis: options.redisUrl, prefix: options.prefix },
    upstreams: {
      up: { url: `http://127.0.0.1:${options.upstreamPort}` },
      // The protocol is always explicit (http2.md): gRPC needs h2 or h2c.
      ...(routes.has('grpc') ? { grpc: { url: `http://127.0.0.1:${options.grpcUpstreamPort!}`, protocol: 'h2c' } } : {}),
    },
    ...(uses('apiKey') ? { apiKeys: [{ id: material.staticKey.id, hash: material.staticKey.hash, client: 'bench-static', scopes: ['read'] }] } : {}),
    ...(uses('jwt')
      ? {
          jwtProviders: {
            hs: { secret: material.hsSecret, algorithms: ['HS256'], audience: 'bench' },
            es: { jwksUri: `http://127.0.0.1:${options.upstreamPort}/jwks.json`, algorithms: ['ES256'], audience: 'bench' },
          },
        }
      : {}),
    ...(uses('hmac') ? { signingClients: [{ keyId: material.hmac.keyId, client: 'bench-signer', secret: material.hmac.secret, scopes: ['write'] }] } : {}),
    ...(uses('basic') ? { users: { htpasswd: 'users.htpasswd' } } : {}),
    routes: routeList,
  }
  const file = join(options.dir, 'gateway.yaml')
  writeFileSync(file, stringify(doc))
  return { file, routes }
}
