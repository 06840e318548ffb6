import test from 'ava'
import { clientKey } from './net.js'

test('clientKey: an IPv6 address counts as its /64, whatever its spelling; an IPv4-mapped one as the IPv4 address', (t) => {
  for (const address of ['2001:db8:1:2::1', '2001:db8:1:2::c', '2001:DB8:1:2:ffff:ffff:ffff:ffff', '2001:0db8:0001:0002::c', '2001:db8:1:2:3:4:1.2.3.4', '2001:db8:1:2::1%eth0']) {
    t.is(clientKey(address), '2001:db8:1:2::/64', address)
  }
  t.is(clientKey('2001:db8:1:3::1'), '2001:db8:1:3::/64', 'the next /64 is another client')
  t.is(clientKey('2001:db8::1'), '2001:db8::/64')
  t.is(clientKey('2001:db8:0:0:1::'), '2001:db8::/64')
  t.is(clientKey('0:0:0:1::5'), '0:0:0:1::/64')
  t.is(clientKey('::1'), '::/64')
  t.is(clientKey('::ffff:192.0.2.1'), '192.0.2.1')
  t.is(clientKey('::FFFF:c000:0201'), '192.0.2.1')
})

test('clientKey: IPv4 addresses and anything that is not an address are unchanged', (t) => {
  t.is(clientKey('192.0.2.1'), '192.0.2.1')
  t.is(clientKey('198.51.100.7'), '198.51.100.7')
  t.is(clientKey(''), '')
  t.is(clientKey('not-an-address'), 'not-an-address')
})
