/** RFC 7617 `Authorization: Basic <base64(user-id ":" password)>`, parsed without ever throwing. */

export type BasicCredentials =
  /** Not a Basic credential (another scheme): for `basic`, the credential is absent. */
  | { readonly kind: 'other' }
  /** A Basic credential that cannot be read: 401 invalid_credentials. */
  | { readonly kind: 'malformed' }
  | { readonly kind: 'ok', readonly username: string, readonly password: string }

/** Longest credential accepted: 4 KiB once decoded. */
export const MAX_CREDENTIAL_BYTES = 4096

// RFC 9110 §11.4: auth-scheme is a token, then 1*SP token68.
const AUTHORIZATION = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+)(?:[ \t]+(.*))?$/s
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/
// RFC 7617 §2: user-id and password contain no control characters.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/
const utf8 = new TextDecoder('utf-8', { fatal: true })

export function parseBasic (value: string): BasicCredentials {
  const match = AUTHORIZATION.exec(value)
  if (!match) return { kind: 'other' }
  if (match[1]!.toLowerCase() !== 'basic') return { kind: 'other' }
  const token = (match[2] ?? '').trim()
  if (token === '' || token.length > Math.ceil(MAX_CREDENTIAL_BYTES / 3) * 4) return { kind: 'malformed' }
  if (!BASE64.test(token) || token.length % 4 === 1) return { kind: 'malformed' }
  // RFC 4648 §3.5: padding, when present, must complete the last quantum.
  if (token.includes('=') && token.length % 4 !== 0) return { kind: 'malformed' }
  let text: string
  try {
    text = utf8.decode(Buffer.from(token, 'base64'))
  } catch {
    return { kind: 'malformed' }
  }
  const colon = text.indexOf(':')
  if (colon <= 0) return { kind: 'malformed' }
  const username = text.slice(0, colon)
  const password = text.slice(colon + 1)
  if (CONTROL.test(username) || CONTROL.test(password)) return { kind: 'malformed' }
  return { kind: 'ok', username, password }
}
