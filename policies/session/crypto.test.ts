import test from 'ava'
import { pkceChallenge, SessionKeys } from './crypto.js'

const keys = new SessionKeys('s'.repeat(48))

test('a sealed record opens under its own key only, and not with another secret or once altered', (t) => {
  const sealed = keys.seal('{"sub":"alice"}', 'session:s:abc')
  t.false(sealed.includes('alice'))
  t.is(keys.open(sealed, 'session:s:abc'), '{"sub":"alice"}')
  t.is(keys.open(sealed, 'session:s:other'), undefined, 'moved under another store key')
  t.is(new SessionKeys('t'.repeat(48)).open(sealed, 'session:s:abc'), undefined, 'another secret')
  const raw = Buffer.from(sealed.slice(3), 'base64url')
  raw[20] = raw[20]! ^ 1
  t.is(keys.open('v1.' + raw.toString('base64url'), 'session:s:abc'), undefined, 'one bit flipped')
  t.is(keys.open('v1.short', 'session:s:abc'), undefined)
  t.is(keys.open('v0.' + sealed.slice(3), 'session:s:abc'), undefined)
  t.not(keys.seal('x', 'k'), keys.seal('x', 'k'), 'a fresh IV each time')
})

test('the browser binding matches only the same browser value and state', (t) => {
  const bind = keys.bind('browser-a', 'state-1')
  t.true(keys.matches(bind, 'browser-a', 'state-1'))
  t.false(keys.matches(bind, 'browser-b', 'state-1'))
  t.false(keys.matches(bind, 'browser-a', 'state-2'))
})

test('PKCE S256 (RFC 7636 appendix B)', (t) => {
  t.is(pkceChallenge('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk'), 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM')
})
