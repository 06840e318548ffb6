import { Type, type Static } from '@sinclair/typebox'
import { Duration } from '../../gateway/config/schema.js'

export const schema = Type.Object({
  allowInsecure: Type.Boolean({ default: false, description: 'Allow this route on plain-HTTP listeners, where the password crosses the network in clear text. For local development only.' }),
  cacheTtl: Duration('How long a successful username/password check is remembered (keyed by an HMAC of the credentials, in-process) so bcrypt does not run on every request. 0 turns the cache off.', '60s'),
  maxFailuresPerUser: Type.Integer({ minimum: 1, default: 10, description: 'Failed attempts per username within `failureWindow` (counted in the store, across instances); past it every attempt, even with the right password, is 429 until the window ends.' }),
  maxFailuresPerIp: Type.Integer({ minimum: 1, default: 50, description: 'Failed attempts per client IP within `failureWindow`; past it every attempt from that IP is 429 until the window ends.' }),
  failureWindow: Duration('The fixed window in which failed attempts are counted; it starts at the first failure.', '5m'),
  maxConcurrentChecks: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024, description: 'Password hashes (bcrypt/scrypt) computed at once, on worker threads so they never block the event loop. Default: the number of cores (`os.availableParallelism()`). Up to 4 times as many more wait in a queue; beyond it a request that needs a hash is 429 `rate_limited` with `Retry-After: 1` (and is not counted as a failed attempt). One client address (IPv6: one /64) may have at most a quarter of workers + queue in progress, at least 2; past its share that address is 429 `Retry-After: 1` while other addresses are still queued. Basic routes with the same value share one set of workers (kept across reloads).' })),
}, { additionalProperties: false })
export type BasicConfig = Static<typeof schema>

export const USERNAME_PATTERN = '^[^:\\u0000-\\u001f\\u007f]{1,256}$'

export const inlineUserSchema = Type.Object({
  username: Type.String({ pattern: USERNAME_PATTERN, description: 'User name (RFC 7617: no colon, no control characters). It becomes the identity\'s subject and client.' }),
  hash: Type.String({ minLength: 1, sensitive: true, description: 'Password hash: `scrypt$N$r$p$<salt base64>$<hash base64>` (`authgate passwd --scrypt USER`) or bcrypt `$2y$...` (`authgate passwd USER`). Never the password.' }),
}, { additionalProperties: false })

export const usersSectionSchema = Type.Object({
  htpasswd: Type.Optional(Type.String({ minLength: 1, description: 'An htpasswd file (relative to the config file\'s folder) with bcrypt lines `user:$2y$...` (`authgate passwd USER` or `htpasswd -B`). Other formats (apr1/MD5, SHA-1, crypt, plain text) are refused. Read at load and on reload; an unreadable file is a config error.' })),
  inline: Type.Optional(Type.Array(inlineUserSchema, { description: 'Users listed in gateway.yaml with scrypt (or bcrypt) hashes.' })),
}, { additionalProperties: false, description: 'HTTP Basic users for the `basic` policy: an htpasswd file, inline hashes, or both (a username may appear once).' })
export type UsersSection = Static<typeof usersSectionSchema>
