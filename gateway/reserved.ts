import type { ServerResponse } from 'node:http'
import type { ReservedAnswer } from '../policies/types.js'

/** A reserved endpoint's whole answer (`/.authgate/login`...), on any front door. */
export function writeReserved (res: ServerResponse, answer: ReservedAnswer, requestId: string): void {
  if (res.headersSent) { res.destroy(); return }
  for (const [name, value] of Object.entries(answer.headers)) res.setHeader(name, value)
  res.setHeader('Content-Length', Buffer.byteLength(answer.body))
  res.setHeader('X-Request-Id', requestId)
  res.statusCode = answer.status
  res.end(answer.body)
}
