import type { BlockList } from 'node:net'
import { isTrusted, unmapAddress } from '../net.js'

/** X-Forwarded-For is read only from trusted proxies: the client is the rightmost address that is not one. */
export function clientAddress (trustProxies: BlockList, peer: string, forwardedFor: string | undefined): string {
  if (!forwardedFor || !isTrusted(trustProxies, peer)) return peer
  const hops = forwardedFor.split(',').map((h) => h.trim()).filter(Boolean)
  for (let i = hops.length - 1; i >= 0; i--) {
    if (!isTrusted(trustProxies, hops[i]!)) return unmapAddress(hops[i]!)
  }
  return hops[0] ?? peer
}
