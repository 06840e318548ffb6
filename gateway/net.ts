import { BlockList, isIP } from 'node:net'

/** Parses trustProxies CIDRs into a BlockList; returns the index of each bad entry for config errors. */
export function parseCidrs (cidrs: readonly string[]): { list: BlockList, bad: number[] } {
  const list = new BlockList()
  const bad: number[] = []
  cidrs.forEach((cidr, i) => {
    const [address, prefixText] = cidr.split('/')
    const family = isIP(address ?? '')
    if (family === 0) { bad.push(i); return }
    const type = family === 6 ? 'ipv6' : 'ipv4'
    const max = family === 6 ? 128 : 32
    const prefix = prefixText === undefined ? max : Number(prefixText)
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) { bad.push(i); return }
    list.addSubnet(address!, prefix, type)
  })
  return { list, bad }
}

/** `::ffff:10.0.0.1` -> `10.0.0.1`, so IPv4 CIDRs apply on dual-stack sockets. */
export function unmapAddress (address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address
}

export function isTrusted (list: BlockList, address: string): boolean {
  const plain = unmapAddress(address)
  const family = isIP(plain)
  if (family === 0) return false
  return list.check(plain, family === 6 ? 'ipv6' : 'ipv4')
}

/** `host:port` or `[v6]:port` -> parts. */
export function parseAddress (address: string): { host: string, port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address)
  if (!match) throw new RangeError(`not an address: ${address}`)
  return { host: match[1] ?? (match[2] || '0.0.0.0'), port: Number(match[3]) }
}

export function isLoopbackHost (host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host) || host === '[::1]'
}
