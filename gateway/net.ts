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

/**
 * What per-client counters and shares are keyed on (Basic failed attempts per IP, the password pool's share per
 * client, rate limits `by: ip`): an IPv4 address as it is; an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, also in
 * hex) as its IPv4 address; any other IPv6 address as its /64, written `2001:db8:1:2::/64`. A /64 is the smallest
 * block an IPv6 subscriber, host or container is given (RFC 6177, RFC 8273, SLAAC needs one) and it can use every
 * address in it, so keying on the full address would give one client 2^64 counters. Case, leading zeros, `::`
 * placement and a zone (`%eth0`) do not matter. Anything that is not an IP address is returned unchanged.
 */
export function clientKey (address: string): string {
  const zone = address.indexOf('%')
  const text = zone >= 0 ? address.slice(0, zone) : address
  if (isIP(text) !== 6) return address
  const groups = ipv6Groups(text)
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `${groups[6]! >> 8}.${groups[6]! & 255}.${groups[7]! >> 8}.${groups[7]! & 255}`
  }
  // The last four groups are zero, so the longest run of zeros (RFC 5952) is at the end and takes in any zero
  // groups before it.
  const prefix = groups.slice(0, 4)
  while (prefix.length > 0 && prefix[prefix.length - 1] === 0) prefix.pop()
  return `${prefix.map((g) => g.toString(16)).join(':')}::/64`
}

/** The eight 16-bit groups of an address that isIP() accepted as IPv6 (no zone). */
function ipv6Groups (text: string): number[] {
  let head = text
  const tail: number[] = []
  const last = text.lastIndexOf(':')
  if (text.includes('.', last)) {
    const [a, b, c, d] = text.slice(last + 1).split('.').map(Number) as [number, number, number, number]
    tail.push((a << 8) | b, (c << 8) | d)
    head = text.endsWith('::', last + 1) ? text.slice(0, last + 1) : text.slice(0, last)
  }
  const hex = (part: string) => part === '' ? [] : part.split(':').map((g) => parseInt(g, 16))
  const halves = head.split('::')
  const left = hex(halves[0]!)
  const right = halves.length > 1 ? hex(halves[1]!) : []
  const zeros = halves.length > 1 ? 8 - tail.length - left.length - right.length : 0
  return [...left, ...Array<number>(zeros).fill(0), ...right, ...tail]
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
