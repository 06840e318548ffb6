/**
 * Distinguished names as RFC 4514 strings: parsing (config allow-lists) and formatting (identity, XFCC).
 *
 * Order: RFC 4514 §2.1 writes the RDNs in reverse of their order in the certificate, so the most specific one comes
 * first: a certificate whose subject is encoded O=Acme then CN=billing-service reads `CN=billing-service,O=Acme`
 * (as OpenSSL's `-nameopt RFC2253`, Go and Java print it, and as Envoy puts it into X-Forwarded-Client-Cert).
 *
 * Equality: the same RDNs in the same order; inside one multi-valued RDN (`CN=a+UID=b`) the order does not matter.
 * Attribute types compare case-insensitively and by OID (`cn`, `CN`, `commonName` and `2.5.4.3` are one type);
 * values compare exactly (case-sensitive, after unescaping). A configured DN must name every RDN of the certificate's
 * subject: `CN=billing-service` does not match `CN=billing-service,O=Acme`.
 */

export interface DnAttribute {
  /** Dotted OID. */
  readonly type: string
  /** The unescaped value; for `hex`, the lower-case hex of the value's encoding without `#`. */
  readonly value: string
  /** A value that is not a string type (RFC 4514 §2.4 `#hexstring`). */
  readonly hex?: boolean
}
export type Rdn = readonly DnAttribute[]
/** RFC 4514 order: most specific RDN first. */
export type Dn = readonly Rdn[]

// The first name is the one we print (OpenSSL's RFC 2253 names); the rest are accepted when parsing.
const TYPE_NAMES: ReadonlyArray<readonly [string, ...string[]]> = [
  ['2.5.4.3', 'CN', 'commonName'],
  ['2.5.4.6', 'C', 'countryName'],
  ['2.5.4.7', 'L', 'localityName'],
  ['2.5.4.8', 'ST', 'stateOrProvinceName', 'S'],
  ['2.5.4.9', 'STREET', 'streetAddress'],
  ['2.5.4.10', 'O', 'organizationName'],
  ['2.5.4.11', 'OU', 'organizationalUnitName'],
  ['0.9.2342.19200300.100.1.25', 'DC', 'domainComponent'],
  ['0.9.2342.19200300.100.1.1', 'UID', 'userId'],
  ['2.5.4.5', 'serialNumber'],
  ['2.5.4.4', 'SN', 'surname'],
  ['2.5.4.42', 'GN', 'givenName'],
  ['2.5.4.43', 'initials'],
  ['2.5.4.12', 'title'],
  ['2.5.4.65', 'pseudonym'],
  ['2.5.4.15', 'businessCategory'],
  ['2.5.4.17', 'postalCode'],
  ['2.5.4.97', 'organizationIdentifier'],
  ['1.2.840.113549.1.9.1', 'emailAddress', 'E', 'email'],
]
const OID_BY_NAME = new Map<string, string>()
const NAME_BY_OID = new Map<string, string>()
for (const [oid, ...names] of TYPE_NAMES) {
  NAME_BY_OID.set(oid, names[0]!)
  for (const name of names) OID_BY_NAME.set(name.toLowerCase(), oid)
}

export class DnSyntaxError extends Error {
  override name = 'DnSyntaxError'
}

/** The OID for an attribute type name or dotted OID (`OID.` prefix allowed); undefined when unknown. */
export function attributeOid (type: string): string | undefined {
  const bare = type.replace(/^oid\./i, '')
  if (/^\d+(\.\d+)+$/.test(bare)) return bare
  return OID_BY_NAME.get(type.toLowerCase())
}

/** Parses an RFC 4514 string. Lenient about spaces around `,` `+` `=`; strict about unescaped specials. */
export function parseDn (text: string): Dn {
  const dn: DnAttribute[][] = []
  let rdn: DnAttribute[] = []
  let i = 0
  const skipSpaces = () => { while (text[i] === ' ') i++ }

  skipSpaces()
  if (i === text.length) return []
  for (;;) {
    skipSpaces()
    const typeMatch = /^(?:(?:oid\.)?\d+(?:\.\d+)+|[A-Za-z][A-Za-z0-9-]*)/i.exec(text.slice(i))
    if (!typeMatch) throw new DnSyntaxError(`expected an attribute type at position ${i + 1}`)
    const typeName = typeMatch[0]
    const type = attributeOid(typeName)
    if (type === undefined) throw new DnSyntaxError(`unknown attribute type "${typeName}" (use its dotted OID)`)
    i += typeName.length
    skipSpaces()
    if (text[i] !== '=') throw new DnSyntaxError(`expected "=" after "${typeName}"`)
    i++
    skipSpaces()

    let attribute: DnAttribute
    if (text[i] === '#') {
      const hexMatch = /^#((?:[0-9A-Fa-f]{2})+)/.exec(text.slice(i))
      if (!hexMatch) throw new DnSyntaxError(`"#" must start hex pairs in the value of "${typeName}" (escape it as "\\#")`)
      i += hexMatch[0].length
      attribute = { type, value: hexMatch[1]!.toLowerCase(), hex: true }
      skipSpaces()
    } else {
      const bytes: number[] = []
      let trailingSpaces = 0
      while (i < text.length && text[i] !== ',' && text[i] !== '+') {
        const char = text[i]!
        if (char === '\\') {
          const next = text[i + 1]
          if (next !== undefined && /[0-9A-Fa-f]/.test(next) && /[0-9A-Fa-f]/.test(text[i + 2] ?? '')) {
            bytes.push(Number.parseInt(text.slice(i + 1, i + 3), 16))
            i += 3
          } else if (next !== undefined && '"+,;<>\\ #='.includes(next)) {
            bytes.push(next.charCodeAt(0))
            i += 2
          } else {
            throw new DnSyntaxError(`bad escape "\\${next ?? ''}" in the value of "${typeName}"`)
          }
          trailingSpaces = 0
          continue
        }
        if ('";<>\0'.includes(char)) {
          throw new DnSyntaxError(`unescaped ${JSON.stringify(char)} in the value of "${typeName}" (write "\\${char === '\0' ? '00' : char}")`)
        }
        const code = text.codePointAt(i)!
        const encoded = Buffer.from(String.fromCodePoint(code), 'utf8')
        bytes.push(...encoded)
        trailingSpaces = char === ' ' ? trailingSpaces + 1 : 0
        i += code > 0xffff ? 2 : 1
      }
      // Unescaped trailing spaces are separators' padding (`CN=a , O=b`), not part of the value.
      const kept = bytes.slice(0, bytes.length - trailingSpaces)
      let value: string
      try {
        value = new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(kept))
      } catch {
        throw new DnSyntaxError(`the value of "${typeName}" is not valid UTF-8 after unescaping`)
      }
      attribute = { type, value }
    }

    rdn.push(attribute)
    if (i === text.length) {
      dn.push(rdn)
      return dn
    }
    if (text[i] === ',') {
      dn.push(rdn)
      rdn = []
    } else if (text[i] !== '+') {
      throw new DnSyntaxError(`expected "," or "+" at position ${i + 1}`)
    }
    i++
    if (i === text.length) throw new DnSyntaxError('the name ends with a separator')
  }
}

/**
 * Formats a DN as RFC 4514. `ascii: true` also writes `"`, `\`, and every non-ASCII byte as `\XX` hex pairs, so the
 * result is plain printable ASCII without quotes (a safe HTTP header value). Control characters are always hex-escaped.
 */
export function formatDn (dn: Dn, options: { ascii?: boolean } = {}): string {
  return dn.map((rdn) => rdn.map((attribute) => {
    const name = NAME_BY_OID.get(attribute.type) ?? attribute.type
    return `${name}=${attribute.hex === true ? `#${attribute.value}` : escapeValue(attribute.value, options.ascii === true)}`
  }).join('+')).join(',')
}

/** A string that is equal for two DNs exactly when they are equal (see the module comment). */
export function dnKey (dn: Dn): string {
  return JSON.stringify(dn.map((rdn) => rdn.map((a) => `${a.type}\u0000${a.hex === true ? '#' : '='}${a.value}`).sort()))
}

function escapeValue (value: string, ascii: boolean): string {
  let out = ''
  const chars = [...value]
  chars.forEach((char, index) => {
    const code = char.codePointAt(0)!
    if (code < 0x20 || code === 0x7f || (ascii && (code > 0x7e || char === '"' || char === '\\'))) {
      for (const byte of Buffer.from(char, 'utf8')) out += `\\${byte.toString(16).toUpperCase().padStart(2, '0')}`
    } else if ('"+,;<>\\'.includes(char) ||
      (index === 0 && (char === ' ' || char === '#')) || (index === chars.length - 1 && char === ' ')) {
      out += `\\${char}`
    } else {
      out += char
    }
  })
  return out
}
