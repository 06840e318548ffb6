import test from 'ava'
import fc from 'fast-check'
import {
  Decimal, Token, parseDictionary, parseItem, parseList, serializeDictionary, serializeItem, serializeList,
  type BareItem, type Dictionary, type Item,
} from './structured-fields.js'

test('a Signature-Input dictionary with inner lists and parameters parses and re-serializes canonically', (t) => {
  const parsed = parseDictionary('sig1=( "@method"   "@target-uri" );created=1618884473;keyid="k";alg="hmac-sha256" ,  sig2=();nonce="x\\"y"')
  if (!parsed.ok) return t.fail(parsed.error)
  t.is(serializeDictionary(parsed.value), 'sig1=("@method" "@target-uri");created=1618884473;keyid="k";alg="hmac-sha256", sig2=();nonce="x\\"y"')
})

test('byte sequences, tokens, booleans, decimals and negative integers round-trip', (t) => {
  const text = 'a=:cHJldGVuZCB0aGlzIGlzIGJpbmFyeQ==:, b=token/x:y, c=?0, d=?1;p, e=-12.5, f=-999999999999999, g=1.0, *h'
  const parsed = parseDictionary(text)
  if (!parsed.ok) return t.fail(parsed.error)
  const a = parsed.value.get('a') as Item
  t.true(Buffer.isBuffer(a.value))
  t.is((a.value as Buffer).toString(), 'pretend this is binary')
  t.true((parsed.value.get('b') as Item).value instanceof Token)
  t.true((parsed.value.get('g') as Item).value instanceof Decimal)
  t.is(serializeDictionary(parsed.value), 'a=:cHJldGVuZCB0aGlzIGlzIGJpbmFyeQ==:, b=token/x:y, c=?0, d;p, e=-12.5, f=-999999999999999, g=1.0, *h')
})

test('malformed fields are error values, never exceptions', (t) => {
  const bad = [
    'a=', 'a=1,', ',a=1', 'A=1', 'a=(1 2', 'a=(1  2)x', 'a="unterminated', 'a="bad\\escape"', 'a=:not base64!:',
    'a=:abc', 'a=?2', 'a=1234567890123456', 'a=1.2345', 'a=1234567890123.5', 'a=1.', 'a=-', 'a=1;', 'a=1;B=2',
    'a=1 b=2', 'a=é', 'a="\u0001"', 'a=@1',
  ]
  for (const text of bad) {
    const result = parseDictionary(text)
    t.false(result.ok, text)
  }
  t.true(parseDictionary('').ok, 'an empty field is an empty dictionary')
  t.true(parseDictionary('a=1, a=2').ok)
  t.false(parseDictionary('a=1, a=2', { duplicates: 'error' }).ok)
  t.false(parseDictionary('a=1;p=1;p=2', { duplicates: 'error' }).ok)
  t.is(serializeDictionary((parseDictionary('a=1, b=2, a=3') as { value: Dictionary }).value), 'a=3, b=2', 'a later key overwrites in place (RFC 8941 §4.2.2)')
})

test('lists and items parse like RFC 8941 shows', (t) => {
  const list = parseList('sugar, tea, rum')
  t.true(list.ok && serializeList(list.value) === 'sugar, tea, rum')
  const inner = parseList('("foo" "bar");lvl=5, ("baz");lvl=1, ()')
  t.true(inner.ok && serializeList(inner.value) === '("foo" "bar");lvl=5, ("baz");lvl=1, ()')
  const item = parseItem('  "text";a=?1  ')
  t.true(item.ok && serializeItem(item.value) === '"text";a')
  t.false(parseItem('1 2').ok)
})

const bareItem: fc.Arbitrary<BareItem> = fc.oneof(
  fc.integer({ min: -1e15 + 1, max: 1e15 - 1 }),
  fc.stringMatching(/^[\x20-\x7e]{0,20}$/),
  fc.stringMatching(/^[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]{0,10}$/).map((s) => new Token(s)),
  fc.uint8Array({ maxLength: 24 }).map((bytes) => Buffer.from(bytes)),
  fc.boolean(),
)
const key = fc.stringMatching(/^[a-z*][a-z0-9_.*-]{0,8}$/)

test('serialize then parse is the identity for generated dictionaries', (t) => {
  t.notThrows(() => fc.assert(fc.property(fc.uniqueArray(fc.tuple(key, bareItem, fc.uniqueArray(fc.tuple(key, bareItem), { selector: ([k]) => k, maxLength: 3 })), { selector: ([k]) => k, maxLength: 5 }), (members) => {
    const dict: Dictionary = new Map(members.map(([k, value, params]) => [k, { value, params: new Map(params) }]))
    const text = serializeDictionary(dict)
    const parsed = parseDictionary(text, { duplicates: 'error' })
    return parsed.ok && serializeDictionary(parsed.value) === text
  })))
})

test('the parser never throws on arbitrary input', (t) => {
  t.notThrows(() => fc.assert(fc.property(fc.string({ maxLength: 60 }), (text) => {
    parseDictionary(text)
    parseList(text)
    parseItem(text)
  })))
})
