import test, { type ExecutionContext } from 'ava'
import fc from 'fast-check'
import { normalizePath } from './normalize.js'

/** Fail the test with fast-check's report (seed, counterexample) when the property does not hold. */
function holds (t: ExecutionContext, property: fc.IProperty<any>, params: fc.Parameters<any> = {}) {
  const details = fc.check(property, { numRuns: 2000, ...params })
  t.false(details.failed, fc.defaultReportMessage(details) ?? '')
}

const accepted: Array<[string, string, string?]> = [
  // [raw target, normalized path, raw query]
  ['/', '/'],
  ['/v1/orders', '/v1/orders'],
  ['/v1/orders/', '/v1/orders/'],
  ['/v1/orders?status=open&x=%2F', '/v1/orders', 'status=open&x=%2F'],
  ['/v1?', '/v1', ''],
  ['/v1?a?b', '/v1', 'a?b'],
  ['/v1?a=../../b;c\\d', '/v1', 'a=../../b;c\\d'],
  ['/%61dmin', '/admin'],
  ['/%41%5a%30%39%2d%5f%7e', '/AZ09-_~'],
  ['/%2561', '/%2561'],
  ['/%25', '/%25'],
  // An escaped % is an ordinary character unless the next decoding would give a refused escape.
  ['/files/100%25', '/files/100%25'],
  ['/files/100%25/x', '/files/100%25/x'],
  ['/a/%2520b', '/a/%2520b'],
  ['/a/%25%32%30', '/a/%2520'],
  ['/a/%2525', '/a/%2525'],
  ['/a/%252', '/a/%252'],
  ['/a/%2541', '/a/%2541'],
  // Non-ASCII whose compatibility form is no path syntax: full-width A, the euro sign.
  ['/a/%EF%BC%A1', '/a/%EF%BC%A1'],
  ['/a/%e2%82%ac', '/a/%E2%82%AC'],
  ['//v1//x', '/v1/x'],
  ['///', '/'],
  ['/v1//', '/v1/'],
  ['/a/%c3%a9', '/a/%C3%A9'],
  ['/a/%C3%A9', '/a/%C3%A9'],
  ['/a%20b', '/a%20b'],
  ['/a%3f', '/a%3F'],
  ['/a%23b', '/a%23b'],
  ['/a/...', '/a/...'],
  ['/a/.b', '/a/.b'],
  ['/a/..b', '/a/..b'],
  ['/a/b.', '/a/b.'],
  ['/a/~user/file.txt', '/a/~user/file.txt'],
  ['/a:b@c!$&\'()*+,=', '/a:b@c!$&\'()*+,='],
  ['/Admin', '/Admin'],
  ['http://api.example.com/v1/data?x=1', '/v1/data', 'x=1'],
  ['HTTPS://api.example.com:8443//v1/%61', '/v1/a', ''],
  ['http://api.example.com', '/', ''],
  ['http://api.example.com?x', '/', 'x'],
]

for (const [raw, path, rawQuery = ''] of accepted) {
  test(`${JSON.stringify(raw)} is accepted as ${JSON.stringify(path)}`, (t) => {
    const result = normalizePath(raw)
    t.like(result, { ok: true, path, rawQuery })
  })
}

test('an absolute-form target returns its authority exactly as sent, and origin-form none', (t) => {
  t.like(normalizePath('http://API.example.com:80/a'), { ok: true, path: '/a', authority: 'API.example.com:80' })
  t.like(normalizePath('http://[::1]:8080/a'), { ok: true, path: '/a', authority: '[::1]:8080' })
  const origin = normalizePath('/a')
  t.true(origin.ok && origin.authority === undefined)
})

const refused: Array<[string, string]> = [
  ['/public/../v1/data', 'dot segment in path'],
  ['/public/%2e%2e/v1/data', 'encoded dot in path'],
  ['/public/%2E%2E/v1/data', 'encoded dot in path'],
  ['/public/.%2e/v1/data', 'encoded dot in path'],
  ['/a/%2ejson', 'encoded dot in path'],
  ['/a/./b', 'dot segment in path'],
  ['/a/.', 'dot segment in path'],
  ['/a/..', 'dot segment in path'],
  ['/..', 'dot segment in path'],
  ['/./', 'dot segment in path'],
  ['//..//admin', 'dot segment in path'],
  ['/a/..?x', 'dot segment in path'],
  ['/a/%2fb', 'encoded slash in path'],
  ['/a/%2Fb', 'encoded slash in path'],
  ['/a%5cb', 'encoded backslash in path'],
  ['/a%5Cb', 'encoded backslash in path'],
  ['/a\\b', 'backslash in path'],
  ['/a;b', 'semicolon in path'],
  ['/admin;jsessionid=1', 'semicolon in path'],
  ['/a%3bb', 'encoded semicolon in path'],
  ['/a%3Bb', 'encoded semicolon in path'],
  ['/a%00', 'NUL in path'],
  ['/a\u0000', 'NUL in path'],
  ['/a%0a', 'control character in path'],
  ['/a%1F', 'control character in path'],
  ['/a%7f', 'control character in path'],
  ['/a\tb', 'control character in path'],
  ['/a\r\nX: y', 'control character in path'],
  ['/a\u007f', 'control character in path'],
  ['/a b', 'space in path'],
  ['/café', 'non-ASCII character in path (percent-encode it)'],
  ['/a\u00ff', 'non-ASCII character in path (percent-encode it)'],
  ['/a#f', 'fragment in request target'],
  ['/a?x#f', 'fragment in request target'],
  ['/a%', 'malformed percent-encoding in path'],
  ['/a%4', 'malformed percent-encoding in path'],
  ['/a%zz', 'malformed percent-encoding in path'],
  ['/a%4g/b', 'malformed percent-encoding in path'],
  ['/a%%61', 'malformed percent-encoding in path'],
  ['/a%4?x', 'malformed percent-encoding in path'],
  ['/a/%c0%ae%c0%ae/admin', 'percent-encoded bytes in path are not UTF-8'],
  ['/a/%e9', 'percent-encoded bytes in path are not UTF-8'],
  ['/a/%c3', 'percent-encoded bytes in path are not UTF-8'],
  ['/a/%ed%a0%80', 'percent-encoded bytes in path are not UTF-8'],
  ['/public/%252e%252e/admin', 'double-encoded character in path'],
  ['/a/%252E', 'double-encoded character in path'],
  ['/a/%252f', 'double-encoded character in path'],
  ['/a/%252F', 'double-encoded character in path'],
  ['/a/%255c', 'double-encoded character in path'],
  ['/a/%255C', 'double-encoded character in path'],
  ['/a/%253b', 'double-encoded character in path'],
  ['/a/%2500', 'double-encoded character in path'],
  ['/a/%250a', 'double-encoded character in path'],
  ['/a/%257F', 'double-encoded character in path'],
  ['/a/%25%32%65', 'double-encoded character in path'],
  ['/a/%25%32e', 'double-encoded character in path'],
  ['/a/%25252e', 'double-encoded character in path'],
  ['/a/%252525%32%66', 'double-encoded character in path'],
  ['/a/%25%252e', 'double-encoded character in path'],
  ['/a/%EF%BC%8E%EF%BC%8E/admin', 'full-width or compatibility form of . / \\ ; % ? # in path'],
  ['/a/%ef%bc%8fadmin', 'full-width or compatibility form of . / \\ ; % ? # in path'],
  ['/a/%EF%BC%BC', 'full-width or compatibility form of . / \\ ; % ? # in path'],
  ['/a/%EF%B9%A8', 'full-width or compatibility form of . / \\ ; % ? # in path'],
  ['/a/%EF%BC%9B', 'full-width or compatibility form of . / \\ ; % ? # in path'],
  ['/a/%EF%BC%85%32%65', 'full-width or compatibility form of . / \\ ; % ? # in path'],
  ['/a/%EF%BC%9Fx', 'full-width or compatibility form of . / \\ ; % ? # in path'],
  ['/a/%EF%BC%83x', 'full-width or compatibility form of . / \\ ; % ? # in path'],
  ['/a/%E2%80%A4%E2%80%A4', 'full-width or compatibility form of . / \\ ; % ? # in path'],
  ['/a/%E2%80%A5', 'full-width or compatibility form of . / \\ ; % ? # in path'],
  ['/a/%EF%B9%92', 'full-width or compatibility form of . / \\ ; % ? # in path'],
  ['/a/\uff0e\uff0e/admin', 'non-ASCII character in path (percent-encode it)'],
  ['/a?b c', 'invalid character in query'],
  ['/a?b\u0000', 'invalid character in query'],
  ['/a?é', 'invalid character in query'],
  ['', 'empty request target'],
  ['*', 'request target must be a path starting with /'],
  ['a/b', 'request target must be a path starting with /'],
  ['?x=1', 'request target must be a path starting with /'],
  ['ftp://host/a', 'request target must be a path starting with /'],
  ['http:/a', 'request target must be a path starting with /'],
  ['http:///a', 'absolute-form request target without a host'],
  ['http://host/../admin', 'dot segment in path'],
  ['http://user@host/a', 'invalid host in absolute-form request target'],
  ['http://host\\..\\admin', 'invalid host in absolute-form request target'],
  ['http://host%2f/a', 'invalid host in absolute-form request target'],
]

for (const [raw, reason] of refused) {
  test(`${JSON.stringify(raw)} is refused: ${reason}`, (t) => {
    t.deepEqual(normalizePath(raw), { ok: false, reason })
  })
}

const REASONS = new Set(refused.map(([, reason]) => reason))

// Pieces that path tricks are made of, around a protected prefix `/admin`.
const PIECES = [
  '/', '//', '///', '/admin', 'admin', '/admin/', '/public', 'public', '/public/', 'x', 'a', 'dmin', 'ADMIN',
  '.', '..', '/.', '/..', '/../', '/./', '...', '.x',
  '%2e', '%2E', '%2e%2e', '.%2e', '%2f', '%2F', '%5c', '%5C', '\\', ';', ';x=1', '%3b', '%3B',
  '%61', '%41', '%61dmin', '%64%6d%69%6e', '%2561', '%252e', '%252f', '%25', '%', '%zz', '%4', '%6',
  '%00', '%0a', '%0D', '%09', '%7f', '%7F', '\u0000', '\t', '\n', ' ', '%20', '#', '%23', '?', '?x=1', '%3f',
  'é', '%c3%a9', '%C3%A9', '%c0%ae', '%c0%af', '%e0%80%ae', '~', '%7e', '-', '_', '%5f', '%2d', '@', ':', '+',
  '%252E', '%255c', '%255C', '%253b', '%2500', '%250a', '%2525', '%25%32%65', '%25%32', '%32%65', '%2520', '%2541',
  '%EF%BC%8E', '%ef%bc%8f', '%EF%BC%BC', '%EF%BC%85', '%EF%BC%A1', '%E2%80%A4', '%E2%80%A5', '%EF%B9%92', '\uff0e',
]
const tricky = fc.array(fc.constantFrom(...PIECES), { maxLength: 12 }).map((parts) => parts.join(''))
const trickyTarget = fc.oneof(
  tricky.map((s) => '/' + s),
  tricky.map((s) => '/admin' + s),
  tricky.map((s) => '/public' + s),
  tricky.map((s) => 'http://host' + s),
)
const anyString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: fc.constantFrom('/', '.', '%', '2', 'e', 'E', 'f', 'F', '5', 'c', '3', 'b', 'a', '0', '?', '#', ';', '\\', 'é', ' '), maxLength: 30 }).map((s) => '/' + s),
)
const anyTarget = fc.oneof(trickyTarget, anyString)

/**
 * How a lenient upstream could read a path: every escape decoded once, `\` as `/`, `;params` dropped from each
 * segment, the path cut at a NUL, `//` merged, dot segments resolved (RFC 3986 §5.2.4).
 */
function lenientView (target: string): string {
  let path = target
  if (!path.startsWith('/')) path = path.replace(/^[a-z]+:\/\/[^/?#]*/i, '') || '/'
  path = path.split(/[?#]/)[0]!
  const bytes: number[] = []
  for (let i = 0; i < path.length; i++) {
    if (path[i] === '%' && /^[0-9a-f]{2}$/i.test(path.slice(i + 1, i + 3))) {
      bytes.push(parseInt(path.slice(i + 1, i + 3), 16))
      i += 2
    } else {
      bytes.push(path.charCodeAt(i) & 0xff)
    }
  }
  let decoded = Buffer.from(bytes).toString('latin1')
  decoded = decoded.split('\u0000')[0]!.replace(/\\/g, '/')
  const output: string[] = []
  const segments = decoded.split('/').map((segment) => segment.split(';')[0]!)
  for (const [i, segment] of segments.entries()) {
    const last = i === segments.length - 1
    if (segment === '..') {
      output.pop()
      if (last) output.push('')
    } else if (segment === '.') {
      if (last) output.push('')
    } else if (segment !== '' || last) {
      output.push(segment)
    }
  }
  return '/' + output.join('/')
}

function underAdmin (path: string): boolean {
  return path === '/admin' || path.startsWith('/admin/')
}

test('the lenient reading used by the properties resolves the classic tricks', (t) => {
  t.is(lenientView('/public/../admin/x'), '/admin/x')
  t.is(lenientView('/public/%2e%2e/admin'), '/admin')
  t.is(lenientView('/public/..%2fadmin'), '/admin')
  t.is(lenientView('/public/..%5cadmin'), '/admin')
  t.is(lenientView('/public/..;/admin'), '/admin')
  t.is(lenientView('/%61dmin'), '/admin')
  t.is(lenientView('/%2561dmin'), '/%61dmin')
  t.is(lenientView('/admin%00/../public'), '/admin')
})

test('normalization is idempotent', (t) => {
  holds(t, fc.property(anyTarget, (raw) => {
    const first = normalizePath(raw)
    if (!first.ok) return true
    const second = normalizePath(first.path)
    return second.ok && second.path === first.path && second.rawQuery === ''
  }))
})

test('an accepted path has no dot segment, backslash, semicolon, encoded separator or control character', (t) => {
  holds(t, fc.property(anyTarget, (raw) => {
    const result = normalizePath(raw)
    if (!result.ok) return true
    const { path } = result
    return path.startsWith('/') &&
      !path.includes('//') &&
      !path.split('/').some((segment) => segment === '.' || segment === '..') &&
      !/[\\;\s#?\u0000-\u001f\u007f-\uffff]/.test(path) &&
      !/%(2e|2f|5c|3b|0[0-9a-f]|1[0-9a-f]|7f)/i.test(path) &&
      // every remaining escape is well-formed, upper-case, and not of an unreserved character
      (path.match(/%../g) ?? []).every((escape) => /^%[0-9A-F]{2}$/.test(escape) &&
        !/[A-Za-z0-9\-._~]/.test(String.fromCharCode(parseInt(escape.slice(1), 16))))
  }))
})

test('a path outside /admin after normalization is outside /admin for a lenient upstream too', (t) => {
  holds(t, fc.property(trickyTarget, (raw) => {
    const result = normalizePath(raw)
    if (!result.ok) return true
    return underAdmin(result.path) === underAdmin(lenientView(raw))
  }), { numRuns: 10000 })
})

test('an upstream reading the forwarded path sees what a lenient reading of the raw request sees', (t) => {
  holds(t, fc.property(anyTarget, (raw) => {
    const result = normalizePath(raw)
    if (!result.ok) return true
    return lenientView(result.path) === lenientView(raw)
  }), { numRuns: 5000 })
})

/** Every escape decoded once, as bytes read as UTF-8 (lenient: invalid sequences become U+FFFD). */
function decodeOnce (path: string): string {
  const bytes: number[] = []
  for (let i = 0; i < path.length; i++) {
    if (path[i] === '%' && /^[0-9a-f]{2}$/i.test(path.slice(i + 1, i + 3))) {
      bytes.push(parseInt(path.slice(i + 1, i + 3), 16))
      i += 2
    } else {
      bytes.push(...Buffer.from(path[i]!, 'utf8'))
    }
  }
  return Buffer.from(bytes).toString('utf8')
}

test('an upstream that decodes the forwarded path twice finds no escape a path may not carry', (t) => {
  holds(t, fc.property(anyTarget, (raw) => {
    const result = normalizePath(raw)
    if (!result.ok) return true
    let once = decodeOnce(result.path)
    // however many times: `%25` decoded again is `%`, which must never start a refused escape
    for (let level = 0; level < 4; level++) {
      if (/%(2e|2f|5c|3b|[01][0-9a-f]|7f)/i.test(once)) return false
      once = decodeOnce(once)
    }
    return true
  }), { numRuns: 5000 })
})

test('an upstream that applies NFKC to the decoded path finds no more . / \\ ; % ? # than were there', (t) => {
  const structural = (text: string) => text.match(/[./\\;%?#]/g)?.length ?? 0
  holds(t, fc.property(anyTarget, (raw) => {
    const result = normalizePath(raw)
    if (!result.ok) return true
    const decoded = decodeOnce(result.path)
    return structural(decoded.normalize('NFKC')) === structural(decoded)
  }), { numRuns: 5000 })
})

test('refusals never throw and never echo the input, only fixed reasons', (t) => {
  holds(t, fc.property(anyTarget, (raw) => {
    const result = normalizePath(raw)
    return result.ok || REASONS.has(result.reason)
  }))
})

test('the query is returned exactly as sent', (t) => {
  holds(t, fc.property(fc.string({ unit: fc.constantFrom('a', '=', '&', '%', '2', 'F', '.', '/', ';', '?', '\\', '+'), maxLength: 30 }), (query) => {
    const result = normalizePath('/v1/x?' + query)
    return result.ok && result.path === '/v1/x' && result.rawQuery === query
  }))
})
