// Micro-benchmark: the upstream request headers (identity headers stripped, hop-by-hop removed, consumed
// credentials removed, X-Forwarded-* and identity set), and the pieces it is made of.
// Run: node --import tsx bench/micro/headers.ts
import type { IncomingMessage } from 'node:http'
import { BlockList } from 'node:net'
import { addIdentity, connectionTokens, identityHeaders, HOP_BY_HOP } from '../../gateway/identity.js'
import { upstreamHeaders, type ForwardPeer } from '../../gateway/pipeline/forward-headers.js'
import type { ChainResult } from '../../gateway/pipeline/chain.js'
import type { CompiledRoute, Generation } from '../../gateway/generation.js'
import { bench, section } from './harness.js'

const identity = identityHeaders({
  headers: { subject: 'X-Auth-Subject', client: 'X-Auth-Client', methods: 'X-Auth-Methods', scopes: 'X-Auth-Scopes', tier: 'X-Auth-Tier' },
  stripInbound: ['X-User-Id'],
} as never)
const runtime = { identity, trustsAnyProxy: false, trustProxies: new BlockList() } as unknown as Generation
const route = { consumed: new Set(['x-api-key']), connectionProtected: new Set(['x-api-key']), upstream: { preserveHost: false, host: '127.0.0.1:9000' } } as unknown as CompiledRoute

/** What a browser-ish client sends: 12 headers, one of them a credential and one a spoofed identity header. */
const inbound = {
  host: 'api.example.com',
  'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36',
  accept: 'application/json',
  'accept-encoding': 'gzip, deflate, br',
  'accept-language': 'en-US,en;q=0.9',
  connection: 'keep-alive',
  'x-api-key': 'agk_0123456789abcdef_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg',
  'x-auth-subject': 'admin',
  'x-request-id': 'c0ffee',
  'cache-control': 'no-cache',
  'sec-fetch-mode': 'cors',
  referer: 'https://app.example.com/',
}
const req = { headers: inbound } as unknown as IncomingMessage
const ctx: ForwardPeer = { peerAddress: '10.1.2.3', scheme: 'https', authority: 'api.example.com', trustedPeer: false }
const result: ChainResult = {
  identity: { subject: 'demo-client', client: 'demo-client', methods: ['apiKey'], scopes: ['read', 'write'], claims: {} },
  responseHeaders: {},
  upstreamHeaders: {},
}

section('upstream headers')
const N = 500_000
bench('upstreamHeaders: 12 inbound headers, apiKey identity', N, () => upstreamHeaders(runtime, route, req, ctx, result))
bench('upstreamHeaders: 12 inbound headers, public route (no identity)', N, () => upstreamHeaders(runtime, route, req, ctx, undefined))
bench('connectionTokens("keep-alive")', N, () => connectionTokens('keep-alive'))
bench('connectionTokens(undefined)', N, () => connectionTokens(undefined))
bench('copy 12 headers with 3 Set lookups each (the loop alone)', N, () => {
  const out: Record<string, string> = {}
  for (const name in inbound) {
    if (HOP_BY_HOP.has(name) || identity.strip.has(name) || route.consumed.has(name)) continue
    out[name] = inbound[name as keyof typeof inbound]
  }
  return out
})
bench('addIdentity (4 headers, two joins)', N, () => {
  const out: Record<string, string | string[]> = {}
  addIdentity(out, result.identity, identity)
  return out
})
