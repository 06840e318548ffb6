/**
 * Structured Field Values for HTTP (RFC 8941): the subset that HTTP Message Signatures (RFC 9421)
 * and Digest Fields (RFC 9530) need — Dictionaries, Lists, Inner Lists, Items and Parameters with
 * Integer, Decimal, String, Token, Byte Sequence and Boolean values.
 *
 * Parsers are strict and never throw: malformed input gives `{ ok: false, error }`. Serializers
 * throw a TypeError only for values no parser could have produced (a programming mistake).
 */

/** A Token (RFC 8941 §3.3.4), kept apart from String so that it serializes back without quotes. */
export class Token {
  readonly value: string
  constructor (value: string) {
    this.value = value
  }
}

/** A Decimal (RFC 8941 §3.3.2), kept apart from Integer so that `1.0` serializes back as `1.0`. */
export class Decimal {
  readonly value: number
  constructor (value: number) {
    this.value = value
  }
}

/** Integer: number; String: string; Byte Sequence: Buffer. */
export type BareItem = number | Decimal | string | Token | Buffer | boolean
/** Ordered; a key set twice keeps its first position (RFC 8941 §4.2.3.2). */
export type Parameters = Map<string, BareItem>
export interface Item { readonly value: BareItem, readonly params: Parameters }
export interface InnerList { readonly items: Item[], readonly params: Parameters }
export type Member = Item | InnerList
export type List = Member[]
export type Dictionary = Map<string, Member>

export type ParseResult<T> = { readonly ok: true, readonly value: T } | { readonly ok: false, readonly error: string }

export interface ParseOptions {
  /**
   * RFC 8941 lets a later dictionary key or parameter overwrite an earlier one. Fields that carry
   * credentials (Signature, Signature-Input, Content-Digest) must not be ambiguous: 'error' refuses them.
   */
  readonly duplicates?: 'overwrite' | 'error'
}

export function isInnerList (member: Member): member is InnerList {
  return 'items' in member
}

class SfError extends Error {}

const DIGIT = /[0-9]/
const ALPHA = /[A-Za-z]/
const LCALPHA = /[a-z]/
const KEY_CHAR = /[a-z0-9_.*-]/
const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z:/]/
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

class Parser {
  private pos = 0
  private readonly input: string
  private readonly duplicates: 'overwrite' | 'error'

  constructor (input: string, options: ParseOptions) {
    this.input = input
    this.duplicates = options.duplicates ?? 'overwrite'
  }

  /** RFC 8941 §4.2: leading and trailing SP are ignored, anything else left over fails. */
  run<T> (parse: () => T): T {
    // eslint-disable-next-line no-control-regex
    if (/[^\x20-\x7e\t]/.test(this.input)) throw new SfError('structured field contains a non-ASCII or control character')
    this.skipSp()
    const value = parse()
    this.skipSp()
    if (this.pos < this.input.length) throw new SfError(`unexpected ${JSON.stringify(this.peek())} at offset ${this.pos}`)
    return value
  }

  parseList (): List {
    const members: List = []
    while (this.pos < this.input.length) {
      members.push(this.parseItemOrInnerList())
      if (!this.afterMember()) return members
    }
    return members
  }

  parseDictionary (): Dictionary {
    const dict: Dictionary = new Map()
    while (this.pos < this.input.length) {
      const key = this.parseKey()
      let member: Member
      if (this.peek() === '=') {
        this.pos++
        member = this.parseItemOrInnerList()
      } else {
        member = { value: true, params: this.parseParameters() }
      }
      if (dict.has(key) && this.duplicates === 'error') throw new SfError(`dictionary key "${key}" appears twice`)
      dict.set(key, member)
      if (!this.afterMember()) return dict
    }
    return dict
  }

  parseItem (): Item {
    const value = this.parseBareItem()
    return { value, params: this.parseParameters() }
  }

  /** OWS "," OWS between members; false at the end of input; a trailing comma fails. */
  private afterMember (): boolean {
    this.skipOws()
    if (this.pos >= this.input.length) return false
    if (this.peek() !== ',') throw new SfError(`expected "," at offset ${this.pos}`)
    this.pos++
    this.skipOws()
    if (this.pos >= this.input.length) throw new SfError('trailing comma')
    return true
  }

  private parseItemOrInnerList (): Member {
    return this.peek() === '(' ? this.parseInnerList() : this.parseItem()
  }

  private parseInnerList (): InnerList {
    this.pos++ // (
    const items: Item[] = []
    while (this.pos < this.input.length) {
      this.skipSp()
      if (this.peek() === ')') {
        this.pos++
        return { items, params: this.parseParameters() }
      }
      items.push(this.parseItem())
      const next = this.peek()
      if (next !== ' ' && next !== ')') throw new SfError(`expected " " or ")" in inner list at offset ${this.pos}`)
    }
    throw new SfError('inner list is not closed')
  }

  private parseParameters (): Parameters {
    const params: Parameters = new Map()
    while (this.peek() === ';') {
      this.pos++
      this.skipSp()
      const key = this.parseKey()
      let value: BareItem = true
      if (this.peek() === '=') {
        this.pos++
        value = this.parseBareItem()
      }
      if (params.has(key) && this.duplicates === 'error') throw new SfError(`parameter "${key}" appears twice`)
      params.set(key, value)
    }
    return params
  }

  private parseKey (): string {
    const first = this.peek()
    if (first === undefined || !(LCALPHA.test(first) || first === '*')) throw new SfError(`expected a key at offset ${this.pos}`)
    const start = this.pos
    while (this.pos < this.input.length && KEY_CHAR.test(this.input[this.pos]!)) this.pos++
    return this.input.slice(start, this.pos)
  }

  private parseBareItem (): BareItem {
    const c = this.peek()
    if (c === undefined) throw new SfError('expected an item at the end of input')
    if (c === '-' || DIGIT.test(c)) return this.parseNumber()
    if (c === '"') return this.parseString()
    if (c === '*' || ALPHA.test(c)) return this.parseToken()
    if (c === ':') return this.parseByteSequence()
    if (c === '?') return this.parseBoolean()
    throw new SfError(`unexpected ${JSON.stringify(c)} at offset ${this.pos}`)
  }

  /** RFC 8941 §4.2.4: at most 15 integer digits; decimals at most 12 + 3 digits. */
  private parseNumber (): number | Decimal {
    let sign = 1
    if (this.peek() === '-') {
      sign = -1
      this.pos++
    }
    if (!DIGIT.test(this.peek() ?? '')) throw new SfError(`expected a digit at offset ${this.pos}`)
    let digits = ''
    let decimal = false
    while (this.pos < this.input.length) {
      const c = this.input[this.pos]!
      if (DIGIT.test(c)) {
        digits += c
      } else if (!decimal && c === '.') {
        if (digits.length > 12) throw new SfError('decimal has too many integer digits')
        digits += c
        decimal = true
      } else {
        break
      }
      this.pos++
      if (!decimal && digits.length > 15) throw new SfError('integer has more than 15 digits')
      if (decimal && digits.length > 16) throw new SfError('decimal is too long')
    }
    if (!decimal) return sign * Number(digits)
    if (digits.endsWith('.')) throw new SfError('decimal ends with "."')
    if (digits.length - digits.indexOf('.') - 1 > 3) throw new SfError('decimal has more than 3 fraction digits')
    return new Decimal(sign * Number(digits))
  }

  private parseString (): string {
    this.pos++ // "
    let out = ''
    while (this.pos < this.input.length) {
      const c = this.input[this.pos++]!
      if (c === '\\') {
        const next = this.input[this.pos++]
        if (next !== '"' && next !== '\\') throw new SfError('invalid escape in string')
        out += next
      } else if (c === '"') {
        return out
      } else if (c < ' ' || c > '~') {
        throw new SfError('invalid character in string')
      } else {
        out += c
      }
    }
    throw new SfError('string is not closed')
  }

  private parseToken (): Token {
    const start = this.pos++
    while (this.pos < this.input.length && TCHAR.test(this.input[this.pos]!)) this.pos++
    return new Token(this.input.slice(start, this.pos))
  }

  /** RFC 8941 §4.2.7; missing "=" padding is tolerated as the RFC advises, other characters are not. */
  private parseByteSequence (): Buffer {
    const end = this.input.indexOf(':', this.pos + 1)
    if (end === -1) throw new SfError('byte sequence is not closed')
    const text = this.input.slice(this.pos + 1, end)
    if (!BASE64.test(text) || text.length % 4 === 1) throw new SfError('byte sequence is not base64')
    this.pos = end + 1
    return Buffer.from(text, 'base64')
  }

  private parseBoolean (): boolean {
    const c = this.input[this.pos + 1]
    if (c !== '0' && c !== '1') throw new SfError('boolean must be ?0 or ?1')
    this.pos += 2
    return c === '1'
  }

  private peek (): string | undefined {
    return this.input[this.pos]
  }

  private skipSp () {
    while (this.input[this.pos] === ' ') this.pos++
  }

  private skipOws () {
    while (this.input[this.pos] === ' ' || this.input[this.pos] === '\t') this.pos++
  }
}

function attempt<T> (input: string, options: ParseOptions, parse: (parser: Parser) => T): ParseResult<T> {
  const parser = new Parser(input, options)
  try {
    return { ok: true, value: parser.run(() => parse(parser)) }
  } catch (err) {
    if (err instanceof SfError) return { ok: false, error: err.message }
    return { ok: false, error: 'malformed structured field' }
  }
}

export function parseDictionary (input: string, options: ParseOptions = {}): ParseResult<Dictionary> {
  return attempt(input, options, (p) => p.parseDictionary())
}

export function parseList (input: string, options: ParseOptions = {}): ParseResult<List> {
  return attempt(input, options, (p) => p.parseList())
}

export function parseItem (input: string, options: ParseOptions = {}): ParseResult<Item> {
  return attempt(input, options, (p) => p.parseItem())
}

/** Several field lines of one structured field are one value joined with ", " (RFC 8941 §4.2). */
export function joinFieldLines (lines: readonly string[]): string {
  return lines.map((line) => line.trim()).join(', ')
}

// Serialization (RFC 8941 §4.1)

export function serializeBareItem (value: BareItem): string {
  if (typeof value === 'boolean') return value ? '?1' : '?0'
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || Math.abs(value) > 999_999_999_999_999) throw new TypeError(`not a structured field integer: ${value}`)
    return String(value)
  }
  if (typeof value === 'string') {
    if (/[^\x20-\x7e]/.test(value)) throw new TypeError('structured field strings are printable ASCII only')
    return `"${value.replace(/[\\"]/g, '\\$&')}"`
  }
  if (value instanceof Token) {
    if (!/^[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*$/.test(value.value)) throw new TypeError('not a structured field token')
    return value.value
  }
  if (value instanceof Decimal) return serializeDecimal(value.value)
  if (Buffer.isBuffer(value)) return `:${value.toString('base64')}:`
  throw new TypeError('not a structured field value')
}

function serializeDecimal (value: number): string {
  if (!Number.isFinite(value)) throw new TypeError('not a structured field decimal')
  const rounded = value.toFixed(3)
  const [whole, fraction] = rounded.split('.') as [string, string]
  if (whole.replace('-', '').length > 12) throw new TypeError('structured field decimal is too large')
  return `${whole}.${fraction.replace(/0+$/, '') || '0'}`
}

function serializeKey (key: string): string {
  if (!/^[a-z*][a-z0-9_.*-]*$/.test(key)) throw new TypeError(`not a structured field key: ${JSON.stringify(key)}`)
  return key
}

export function serializeParams (params: Parameters): string {
  let out = ''
  for (const [key, value] of params) out += value === true ? `;${serializeKey(key)}` : `;${serializeKey(key)}=${serializeBareItem(value)}`
  return out
}

export function serializeItem (item: Item): string {
  return serializeBareItem(item.value) + serializeParams(item.params)
}

export function serializeInnerList (list: InnerList): string {
  return `(${list.items.map(serializeItem).join(' ')})${serializeParams(list.params)}`
}

export function serializeMember (member: Member): string {
  return isInnerList(member) ? serializeInnerList(member) : serializeItem(member)
}

export function serializeList (list: List): string {
  return list.map(serializeMember).join(', ')
}

export function serializeDictionary (dict: Dictionary): string {
  const parts: string[] = []
  for (const [key, member] of dict) {
    if (!isInnerList(member) && member.value === true) parts.push(serializeKey(key) + serializeParams(member.params))
    else parts.push(`${serializeKey(key)}=${serializeMember(member)}`)
  }
  return parts.join(', ')
}
