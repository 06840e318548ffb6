import { Type, type Static } from '@sinclair/typebox'
import { Duration, Size } from '../../gateway/config/schema.js'

export const SessionsSchema = Type.Object({
  secret: Type.Optional(Type.String({ minLength: 1, sensitive: true, description: 'At least 32 bytes, from `${env:..}` or `${file:..}`. Encrypts session records at rest (AES-256-GCM) and binds logins to the browser; changing it ends every session.' })),
  cookie: Type.String({ default: '__Host-authgate', pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$', description: 'Name of the session cookie (HttpOnly, Secure, Path=/). `__Host-` makes the browser keep it to this very host. On a loopback plain-HTTP listener (`allowInsecure`) the name loses its `__Host-` prefix and the cookie its Secure flag.' }),
  allowInsecure: Type.Boolean({ default: false, description: 'Also serve sessions on loopback plain-HTTP listeners, for local development (the cookies lose Secure and `__Host-`). Never on a listener other machines reach.' }),
  sameSite: Type.Union([Type.Literal('lax'), Type.Literal('strict'), Type.Literal('none')], { default: 'lax', description: '`lax` (default) or `strict`. `none` is refused by `check`: it would send the cookie on cross-site requests.' }),
  idleTimeout: Duration('A session unused this long ends (sliding).', '30m'),
  absoluteTimeout: Duration('A session ends this long after login, whatever its use.', '12h'),
  loginsPerMinute: Type.Integer({ minimum: 1, maximum: 10000, default: 60, description: 'Logins (`/.authgate/login`) one client address (IPv6: its /64) may start per minute; each writes a transaction record that lives 10 minutes. Above it: 429 with Retry-After.' }),
}, { additionalProperties: false, description: 'Browser sessions (the `session` policy): authgate as the backend-for-frontend of a web app.' })

export type SessionsConfig = Static<typeof SessionsSchema>

export const OidcClientSchema = Type.Object({
  issuer: Type.String({ minLength: 1, description: 'The OpenID Provider\'s issuer URL, exactly; its endpoints and keys are found by discovery (`<issuer>/.well-known/openid-configuration`).' }),
  clientId: Type.String({ minLength: 1, description: 'This gateway\'s client id at the provider.' }),
  clientSecret: Type.Optional(Type.String({ minLength: 1, sensitive: true, description: 'Client secret (client_secret_basic), from `${env:..}`. Or `privateKeyJwt`.' })),
  privateKeyJwt: Type.Optional(Type.Object({
    key: Type.String({ minLength: 1, description: 'File of the client\'s PKCS#8 PEM private key, relative to the config file.' }),
    alg: Type.Union([Type.Literal('ES256'), Type.Literal('ES384'), Type.Literal('RS256'), Type.Literal('PS256'), Type.Literal('EdDSA')], { default: 'ES256', description: 'Signing algorithm of the client assertion.' }),
    kid: Type.Optional(Type.String({ minLength: 1, description: 'Key id put in the assertion\'s header.' })),
  }, { additionalProperties: false, description: 'Client authentication by a signed assertion (private_key_jwt, RFC 7523) instead of a secret.' })),
  redirectUri: Type.String({ minLength: 1, description: 'Absolute `https://HOST/.authgate/callback` registered at the provider; never derived from Host. The session routes of this client are served on HOST.' }),
  postLogoutRedirectUri: Type.Optional(Type.String({ minLength: 1, description: 'Where the provider sends the browser after logout (registered at the provider).' })),
  scopes: Type.Array(Type.String({ minLength: 1 }), { default: ['openid', 'profile', 'email', 'offline_access'], minItems: 1, uniqueItems: true, description: 'Requested scopes; `openid` is required, `offline_access` asks for a refresh token.' }),
  prompt: Type.Optional(Type.String({ minLength: 1, description: 'OIDC `prompt` sent at login (`consent`: some providers issue refresh tokens for offline_access only then).' })),
  allowedRedirectHosts: Type.Array(Type.String({ minLength: 1 }), { default: [], description: 'Hosts of absolute `https://` `rd=` targets allowed after login, besides relative paths.' }),
  timeout: Duration('Time allowed for one request to the provider.', '10s'),
  maxResponseBytes: Size('Largest provider response accepted.', '512KiB'),
}, { additionalProperties: false })

export type OidcClientConfig = Static<typeof OidcClientSchema>

export const schema = Type.Object({
  client: Type.String({ minLength: 1, description: 'Name of the `oidcClients` entry users log in with.' }),
  forwardAccessToken: Type.Boolean({ default: false, description: 'Send the session\'s access token upstream as `Authorization: Bearer`.' }),
  csrfHeader: Type.Optional(Type.String({ minLength: 1, pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$', description: 'A header every unsafe request (POST, PUT, PATCH, DELETE) must carry, e.g. `X-Requested-With` (a static-header CSRF defence).' })),
}, { additionalProperties: false })

export type SessionPolicyConfig = Static<typeof schema>
