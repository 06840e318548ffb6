/**
 * Just enough DER to read a certificate's subject and subject alternative names (RFC 5280 §4.1, §4.2.1.6).
 * The certificate has already been verified by OpenSSL, so this reads well-formed input; it still checks every length
 * and throws DerError rather than read past a boundary. (A general ASN.1 library costs ~1 ms per certificate here.)
 */
import type { Dn, DnAttribute } from './dn.js'

export type SanType = 'DNS' | 'URI' | 'IP' | 'email'

export interface San {
  readonly type: SanType
  readonly value: string
}

export class DerError extends Error {
  override name = 'DerError'
}

interface Tlv {
  readonly tag: number
  /** Offset of the tag byte. */
  readonly from: number
  /** Offset of the contents. */
  readonly start: number
  readonly end: number
}

const SEQUENCE = 0x30
const SET = 0x31
const OID = 0x06
const SAN_OID = '2.5.29.17'

/** The subject (RFC 4514 order) and the DNS, URI, IP and email SANs of a DER certificate. */
export function readCertificateNames (der: Uint8Array): { subject: Dn, sans: San[] } {
  const certificate = expect(der, 0, SEQUENCE)
  if (certificate.end !== der.length) throw new DerError('trailing bytes after the certificate')
  const tbs = expect(der, certificate.start, SEQUENCE)
  const fields = children(der, tbs)
  // version [0] is optional; then serial, signature, issuer, validity, subject, subjectPublicKeyInfo.
  const offset = fields[0]?.tag === 0xa0 ? 1 : 0
  const subject = fields[offset + 4]
  if (subject === undefined || subject.tag !== SEQUENCE) throw new DerError('no subject')
  const extensions = fields.slice(offset + 6).find((field) => field.tag === 0xa3)
  return { subject: readName(der, subject), sans: extensions ? readSans(der, extensions) : [] }
}

/** A DER `Name` alone (RFC 5280 §4.1.2.4), in RFC 4514 order. */
export function dnFromDer (der: Uint8Array): Dn {
  const name = expect(der, 0, SEQUENCE)
  if (name.end !== der.length) throw new DerError('trailing bytes after the name')
  return readName(der, name)
}

// Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value ANY }. DER order is least specific first: RFC 4514 reverses it.
function readName (der: Uint8Array, name: Tlv): Dn {
  return children(der, name).map((set): DnAttribute[] => {
    if (set.tag !== SET) throw new DerError('an RDN is not a SET')
    const attributes = children(der, set).map((pair) => {
      const [type, value, extra] = pair.tag === SEQUENCE ? children(der, pair) : []
      if (type?.tag !== OID || value === undefined || extra !== undefined) throw new DerError('bad attribute')
      return decodeAttribute(readOid(der, type), der, value)
    })
    if (attributes.length === 0) throw new DerError('an RDN is empty')
    return attributes
  }).reverse()
}

// Extensions ::= [3] EXPLICIT SEQUENCE OF SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
function readSans (der: Uint8Array, wrapper: Tlv): San[] {
  const list = expect(der, wrapper.start, SEQUENCE)
  for (const extension of children(der, list)) {
    const parts = extension.tag === SEQUENCE ? children(der, extension) : []
    if (parts[0]?.tag !== OID || readOid(der, parts[0]) !== SAN_OID) continue
    const octets = parts.at(-1)
    if (octets?.tag !== 0x04) throw new DerError('bad subjectAltName extension')
    const names = expect(der, octets.start, SEQUENCE)
    if (names.end !== octets.end) throw new DerError('bad subjectAltName extension')
    const sans: San[] = []
    for (const name of children(der, names)) {
      const bytes = Buffer.from(der.subarray(name.start, name.end))
      // GeneralName, implicitly tagged: [1] rfc822Name, [2] dNSName, [6] URI, [7] iPAddress (IA5 strings / octets).
      if (name.tag === 0x81) sans.push({ type: 'email', value: bytes.toString('latin1') })
      else if (name.tag === 0x82) sans.push({ type: 'DNS', value: bytes.toString('latin1') })
      else if (name.tag === 0x86) sans.push({ type: 'URI', value: bytes.toString('latin1') })
      else if (name.tag === 0x87) sans.push({ type: 'IP', value: formatIp(bytes) })
    }
    return sans
  }
  return []
}

function formatIp (bytes: Buffer): string {
  if (bytes.length === 4) return [...bytes].join('.')
  if (bytes.length !== 16) return `#${bytes.toString('hex')}` // a name constraint's address/mask: never an address
  const groups: string[] = []
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16))
  // RFC 5952 form via the URL parser: compressed, lower-case.
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1)
}

function decodeAttribute (type: string, der: Uint8Array, value: Tlv): DnAttribute {
  const bytes = Buffer.from(der.subarray(value.start, value.end))
  switch (value.tag) {
    case 0x0c: return { type, value: new TextDecoder('utf-8', { fatal: true }).decode(bytes) } // UTF8String
    case 0x12: case 0x13: case 0x16: case 0x1a: // Numeric, Printable, IA5, Visible
    case 0x14: return { type, value: bytes.toString('latin1') } // TeletexString: read as Latin-1, as OpenSSL does
    case 0x1e: // BMPString: UTF-16BE
      if (bytes.length % 2 !== 0) throw new DerError('bad BMPString')
      return { type, value: bytes.swap16().toString('utf16le') }
    case 0x1c: { // UniversalString: UTF-32BE
      if (bytes.length % 4 !== 0) throw new DerError('bad UniversalString')
      let text = ''
      for (let i = 0; i < bytes.length; i += 4) {
        const code = bytes.readUInt32BE(i)
        if (code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) throw new DerError('bad UniversalString')
        text += String.fromCodePoint(code)
      }
      return { type, value: text }
    }
    // RFC 4514 §2.4: any other type is written as # and the hex of its whole encoding.
    default: return { type, value: Buffer.from(der.subarray(value.from, value.end)).toString('hex'), hex: true }
  }
}

function readOid (der: Uint8Array, tlv: Tlv): string {
  const arcs: number[] = []
  let value = 0
  for (let i = tlv.start; i < tlv.end; i++) {
    const byte = der[i]!
    value = value * 128 + (byte & 0x7f)
    if (!Number.isSafeInteger(value)) throw new DerError('OID arc too large')
    if ((byte & 0x80) !== 0) continue
    if (arcs.length === 0) arcs.push(value < 80 ? Math.floor(value / 40) : 2, value < 80 ? value % 40 : value - 80)
    else arcs.push(value)
    value = 0
  }
  if (arcs.length < 2 || (der[tlv.end - 1]! & 0x80) !== 0) throw new DerError('bad OID')
  return arcs.join('.')
}

function expect (der: Uint8Array, at: number, tag: number): Tlv {
  const tlv = readTlv(der, at, der.length)
  if (tlv.tag !== tag) throw new DerError(`expected tag 0x${tag.toString(16)} at ${at}`)
  return tlv
}

function children (der: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = []
  for (let at = parent.start; at < parent.end;) {
    const child = readTlv(der, at, parent.end)
    out.push(child)
    at = child.end
  }
  return out
}

function readTlv (der: Uint8Array, from: number, limit: number): Tlv {
  const tag = der[from]
  const first = der[from + 1]
  if (tag === undefined || first === undefined || from + 2 > limit) throw new DerError('truncated DER')
  if ((tag & 0x1f) === 0x1f) throw new DerError('high tag numbers are not used in certificates')
  let start = from + 2
  let length = first
  if (first >= 0x80) {
    const count = first & 0x7f
    if (count === 0 || count > 4) throw new DerError('unsupported DER length')
    length = 0
    for (let i = 0; i < count; i++) {
      const byte = der[start + i]
      if (byte === undefined) throw new DerError('truncated DER')
      length = length * 256 + byte
    }
    start += count
  }
  const end = start + length
  if (end > limit) throw new DerError('truncated DER')
  return { tag, from, start, end }
}
