// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata polyfill loaded first.
// Import x509 only through this module so that order always holds.
import 'reflect-metadata'
import { webcrypto } from 'node:crypto'
import * as x509 from '@peculiar/x509'

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0])

export { x509 }
