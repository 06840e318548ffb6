import test from 'ava'
import fc from 'fast-check'
import { X509Certificate } from 'node:crypto'
import { createCA, issueClientCert, issueServerCert } from '../../certs/pki.js'
import { x509 } from '../../certs/x509.js'
import { DerError, dnFromDer, readCertificateNames } from './der.js'
import { DnSyntaxError, dnKey, formatDn, parseDn, type Dn } from './dn.js'

const CN = '2.5.4.3'
const O = '2.5.4.10'
const OU = '2.5.4.11'

test('RFC 4514 strings parse into RDNs in written order, with escapes undone', (t) => {
  t.deepEqual(parseDn('CN=billing-service,O=Acme'), [[{ type: CN, value: 'billing-service' }], [{ type: O, value: 'Acme' }]])
  t.deepEqual(parseDn('CN=a\\,b\\+c\\"d\\\\e\\;f\\<g\\>h'), [[{ type: CN, value: 'a,b+c"d\\e;f<g>h' }]])
  t.deepEqual(parseDn('CN=\\#x\\ ,O=\\20lead'), [[{ type: CN, value: '#x ' }], [{ type: O, value: ' lead' }]])
  t.deepEqual(parseDn('CN=Zo\\C3\\AB'), [[{ type: CN, value: 'Zoë' }]])
  t.deepEqual(parseDn('OU=x+CN=y'), [[{ type: OU, value: 'x' }, { type: CN, value: 'y' }]])
  t.deepEqual(parseDn('2.5.4.45=#0403616263'), [[{ type: '2.5.4.45', value: '0403616263', hex: true }]])
  t.deepEqual(parseDn('  cn = a b  ,  o = c '), [[{ type: CN, value: 'a b' }], [{ type: O, value: 'c' }]])
  t.deepEqual(parseDn(''), [])
})

test('malformed distinguished names are refused with a reason', (t) => {
  const bad = ['billing-service', 'CN', 'CN=a,', 'CN=a"b', 'CN=a;b', 'CN=a\\', 'CN=a\\x', 'XX=a', '=a', 'CN=#zz',
    'CN=\\C3', 'CN=a,,O=b', 'CN=a<b']
  for (const text of bad) t.throws(() => parseDn(text), { instanceOf: DnSyntaxError }, text)
})

test('equality ignores type spelling and order inside a multi-valued RDN, not RDN order or value case', (t) => {
  const key = (text: string) => dnKey(parseDn(text))
  t.is(key('CN=a,O=b'), key('commonName=a, o=b'))
  t.is(key('CN=a,O=b'), key('2.5.4.3=a,OID.2.5.4.10=b'))
  t.is(key('CN=a+OU=x,O=b'), key('OU=x+CN=a,O=b'))
  t.not(key('CN=a,O=b'), key('O=b,CN=a'))
  t.not(key('CN=a,O=b'), key('CN=A,O=b'))
  t.not(key('CN=a,O=b'), key('CN=a'))
  t.not(key('CN=a+OU=x'), key('CN=a,OU=x'))
  t.not(key('CN=#0c0161'), key('CN=\\#0c0161'))
})

test('formatting escapes specials, edges and control characters; ascii mode hex-escapes the rest', (t) => {
  const dn: Dn = [[{ type: CN, value: ' a,"b"\\c\nd ' }], [{ type: O, value: 'Zoë' }], [{ type: '1.2.3.4', value: '#x' }]]
  t.is(formatDn(dn), 'CN=\\ a\\,\\"b\\"\\\\c\\0Ad\\ ,O=Zoë,1.2.3.4=\\#x')
  t.is(formatDn(dn, { ascii: true }), 'CN=\\ a\\,\\22b\\22\\5Cc\\0Ad\\ ,O=Zo\\C3\\AB,1.2.3.4=\\#x')
})

const attribute = fc.record({
  type: fc.constantFrom(CN, O, OU, '2.5.4.6', '0.9.2342.19200300.100.1.25', '1.2.840.113549.1.9.1', '1.3.6.1.4.1.99'),
  value: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }),
})
const dnArbitrary = fc.array(fc.array(attribute, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 4 })

test('any DN survives format then parse, in both forms', (t) => {
  fc.assert(fc.property(dnArbitrary, (dn) => {
    t.is(dnKey(parseDn(formatDn(dn))), dnKey(dn))
    t.is(dnKey(parseDn(formatDn(dn, { ascii: true }))), dnKey(dn))
    t.regex(formatDn(dn, { ascii: true }), /^[\x20-\x7e]*$/)
    t.false(formatDn(dn, { ascii: true }).includes('"'))
  }), { numRuns: 300 })
})

test('DER names are read in RFC 4514 order with every string type decoded', (t) => {
  const name = new x509.Name([
    { C: [{ printableString: 'US' }] },
    { O: [{ utf8String: 'Acme, "Inc"' }] },
    { OU: [{ bmpString: 'Zoë 𝄞' }], '2.5.4.45': ['#0403616263'] },
    { E: [{ ia5String: 'ops@example.com' }] },
    { CN: [{ universalString: 'billing' }] },
  ])
  const dn = dnFromDer(new Uint8Array(name.toArrayBuffer()))
  t.is(formatDn(dn), 'CN=billing,emailAddress=ops@example.com,OU=Zoë 𝄞+2.5.4.45=#0403616263,O=Acme\\, \\"Inc\\",C=US')
  t.is(dnKey(dn), dnKey(parseDn('CN=billing,E=ops@example.com,2.5.4.45=#0403616263+OU=Zoë 𝄞,O=Acme\\, \\"Inc\\",C=US')))
})

test('truncated or non-Name DER is refused', (t) => {
  const der = new Uint8Array(new x509.Name([{ CN: [{ utf8String: 'x' }] }]).toArrayBuffer())
  t.throws(() => dnFromDer(der.subarray(0, der.length - 1)), { instanceOf: DerError })
  t.throws(() => dnFromDer(Uint8Array.from([0x04, 0x00])), { instanceOf: DerError })
})

test('certificate subjects and SANs are read from DER as OpenSSL reads them', async (t) => {
  const ca = await createCA({ commonName: 'test CA', days: 1 })
  const server = await issueServerCert(ca, { commonName: 'localhost', dnsNames: ['localhost'], ips: ['127.0.0.1', '::1', '2001:db8::A'], days: 1 })
  const client = await issueClientCert(ca, { commonName: 'c', organization: 'Acme', uris: ['spiffe://a/b'], dnsNames: ['x.y'], days: 1 })
  const names = (pem: string) => readCertificateNames(new X509Certificate(pem).raw)
  t.deepEqual(names(server.cert), {
    subject: [[{ type: CN, value: 'localhost' }]],
    sans: [{ type: 'DNS', value: 'localhost' }, { type: 'IP', value: '127.0.0.1' }, { type: 'IP', value: '::1' },
      { type: 'IP', value: '2001:db8::a' }],
  })
  t.deepEqual(names(client.cert), {
    subject: [[{ type: CN, value: 'c' }], [{ type: O, value: 'Acme' }]],
    sans: [{ type: 'URI', value: 'spiffe://a/b' }, { type: 'DNS', value: 'x.y' }],
  })
  t.is(formatDn(names(client.cert).subject), new X509Certificate(client.cert).subject.split('\n').reverse().join(','))
  t.deepEqual(names(ca.cert).sans, [])
  const raw = new X509Certificate(client.cert).raw
  for (const cut of [1, 10, 100, raw.length - 1]) {
    t.throws(() => readCertificateNames(raw.subarray(0, cut)), { instanceOf: DerError }, String(cut))
  }
})
