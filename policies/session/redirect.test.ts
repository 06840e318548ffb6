import test from 'ava'
import { safeRedirect } from './redirect.js'

const allowed = ['app.example.com', 'docs.example.com']

/**
 * Open-redirect vectors: the classes behind oauth2-proxy's CVE-2020-5233 (`/\`), CVE-2020-4037 (`/\t/`),
 * GHSA-4mf2-f3wh-gvf2 (encoded and control characters), Pomerium CVE-2021-29651 (parser differentials), and the usual
 * scheme, userinfo, look-alike and whitespace tricks. Every one must land on `/`.
 */
const VECTORS = [
  '//evil.example', '//evil.example/', '//evil.example/path', '///evil.example', '////evil.example',
  '/\\evil.example', '/\\/evil.example', '\\/evil.example', '\\\\evil.example', '/\\\\evil.example',
  '/\t/evil.example', '/\n/evil.example', '/\r/evil.example', '/\r\n/evil.example', '\t//evil.example',
  '/ /evil.example', ' //evil.example', '/\u000b/evil.example', '/\u000c/evil.example', '/\u0000/evil.example',
  '/%2fevil.example', '/%2Fevil.example', '/%2f%2fevil.example', '%2f%2fevil.example', '/%5cevil.example',
  '/%5Cevil.example', '/%5c%5cevil.example', '/%09/evil.example', '/%0a/evil.example', '/%0d/evil.example',
  '/%0d%0a/evil.example', '/%00/evil.example', '/%20/evil.example', '/%252f%252fevil.example', '/%25252f/evil.example',
  '/%252fevil.example', '/%5C%5Cevil.example', '/%2F%5Cevil.example', '/%5C%2Fevil.example', '/%2f/evil.example',
  'http://evil.example', 'https://evil.example', 'HTTPS://evil.example', 'https:evil.example', 'https:/evil.example',
  'https:\\\\evil.example', 'https:/\\evil.example', 'http://app.example.com', 'HTTPS://app.example.com', 'ftp://app.example.com',
  'javascript:alert(1)', 'JavaScript:alert(1)', 'java\tscript:alert(1)', 'data:text/html,<script>alert(1)</script>', 'vbscript:msgbox(1)',
  'https://app.example.com@evil.example', 'https://app.example.com:@evil.example', 'https://user:pass@app.example.com/',
  'https://evil.example@app.example.com', 'https://evil.example#@app.example.com', 'https://evil.example?@app.example.com',
  'https://evil.example\\@app.example.com', 'https://evil.example\\.app.example.com', 'https://app.example.com.evil.example',
  'https://evil-app.example.com', 'https://appXexample.com', 'https://app.example.com%2e.evil.example', 'https://app.example.com%40evil.example',
  'https://evil.example/app.example.com', 'https://evil.example/https://app.example.com', 'https://%61pp.example.com.evil.example',
  'https://app.example.com\u3002evil.example', 'https://ａｐｐ.example.com', 'https://app.example.com\u0000.evil.example',
  'https://[::1]/', 'https://127.0.0.1/', 'https://0x7f.1/', 'https://2130706433/', 'https://evil.example:443@app.example.com',
  ' https://app.example.com', 'https://app.example.com ', '\thttps://app.example.com', 'https://app.example.com\t',
  '/\u2215evil.example', '/\u2044evil.example', '/\uff0fevil.example', '\uff0f\uff0fevil.example', '/\u3000/evil.example',
  '/\u00a0/evil.example', '/\u200b/evil.example', '/\u2028/evil.example', '/\ufeff/evil.example', '\u202e//evil.example',
  'evil.example', 'evil.example/path', '.evil.example', '@evil.example', ':evil.example',
  '', ' ', '\\', '/\\', '%2f', '?next=//evil.example', '#//evil.example', '..//evil.example', './/evil.example',
  '/' + 'a'.repeat(3000), '/%', '/%zz', '/%E0%A4%A', 'https://', 'https:///evil.example', 'https:////evil.example',
]

test(`rd: ${VECTORS.length} open-redirect vectors all land on /`, (t) => {
  t.true(VECTORS.length >= 100)
  for (const rd of VECTORS) t.is(safeRedirect(rd, allowed), '/', JSON.stringify(rd))
})

test('rd: local paths and listed https hosts are kept', (t) => {
  const kept = [
    '/', '/app', '/app/page?x=1&y=2', '/app/page#frag', '/a/b/../c', '/search?q=a%20b', '/%7Euser', '/app/%2e%2e/x',
    '/path;param', '/a:b', '/@user', '/app?next=//evil.example',
  ]
  for (const rd of kept) t.is(safeRedirect(rd, allowed), rd, rd)
  t.is(safeRedirect('https://app.example.com/after?x=1', allowed), 'https://app.example.com/after?x=1')
  t.is(safeRedirect('https://DOCS.example.com/', allowed), 'https://docs.example.com/')
  t.is(safeRedirect('https://app.example.com', allowed), 'https://app.example.com/')
  t.is(safeRedirect('https://app.example.com:8443/', ['app.example.com:8443']), 'https://app.example.com:8443/')
  t.is(safeRedirect('https://app.example.com:8443/', allowed), '/', 'the host with its port must be listed')
  t.is(safeRedirect(null, allowed), '/')
  t.is(safeRedirect(undefined, allowed), '/')
})
