/**
 * Where a browser may be sent after login (`rd=`): a path on this host, or an `https://` URL whose host is listed.
 * Everything else becomes `/`. The checks are on the text as sent and on each percent-decoding of it, since
 * browsers, proxies and upstream frameworks disagree on what `/\evil`, `/%2F/evil` or `/\t/evil` mean (the classes of
 * oauth2-proxy's CVE-2020-5233, CVE-2020-4037, GHSA-4mf2-f3wh-gvf2 and Pomerium's CVE-2021-29651).
 */
export function safeRedirect (rd: string | null | undefined, allowedHosts: readonly string[]): string {
  if (typeof rd !== 'string' || rd.length === 0 || rd.length > 2048) return '/'
  // Printable ASCII only: browsers drop tabs and newlines inside URLs ("/\t/evil" is "//evil"), and other
  // whitespace or look-alikes (U+FF0F) are read differently by different parsers.
  if (!/^[\x21-\x7e]+$/.test(rd) || rd.includes('\\')) return '/'
  if (rd.startsWith('/')) return relativeOk(rd) ? rd : '/'
  if (!/^https:\/\//.test(rd)) return '/'
  let url: URL
  try {
    url = new URL(rd)
  } catch {
    return '/'
  }
  if (url.protocol !== 'https:' || url.username !== '' || url.password !== '') return '/'
  // The text must name the host the parser found, right after the scheme: no userinfo, nothing a parser skips.
  const authority = rd.slice('https://'.length).split(/[/?#]/, 1)[0]!.toLowerCase()
  if (authority !== url.host) return '/'
  const hosts = allowedHosts.map((h) => h.toLowerCase())
  return hosts.includes(url.host) ? url.href : '/'
}

function relativeOk (rd: string): boolean {
  let text = rd
  for (let i = 0; i < 4; i++) {
    // Never a second slash, backslash or blank right after the first: "//host", "/\\host", "/ /host" and "/\t/host"
    // are another host to some reader. Control characters and backslashes nowhere.
    if (!text.startsWith('/') || /^\/[/\\\s\u00a0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff]/.test(text)) return false
    // eslint-disable-next-line no-control-regex
    if (/[\x00-\x1f\x7f\\]/.test(text)) return false
    let decoded: string
    try {
      decoded = decodeURIComponent(text)
    } catch {
      return false
    }
    if (decoded === text) break
    text = decoded
  }
  // Resolved against a base, it must stay on that base's origin.
  try {
    return new URL(rd, 'https://gateway.invalid').origin === 'https://gateway.invalid'
  } catch {
    return false
  }
}
