import type { IncomingMessage, ServerResponse } from 'node:http'
import { json, readJson, type AdminRoute } from '../../gateway/admin.js'
import { StoreUnavailableError } from '../../gateway/errors.js'
import { sendProblem } from '../../gateway/problem.js'
import { KeyRequestError, type KeyService } from './service.js'

const ITEM = /^\/admin\/keys\/([^/]+)$/
const ROTATE = /^\/admin\/keys\/([^/]+)\/rotate$/

/**
 * The key lifecycle on the admin listener (the AdminServer checks the bearer token before any route runs):
 * `POST /admin/keys` → 201 create object; `GET /admin/keys` → list; `DELETE /admin/keys/ID` → 204;
 * `POST /admin/keys/ID/rotate` → 201 create object plus `replaces`. Mistakes are problem+json:
 * 400 `bad_request`, 404 `not_found` (unknown key id), 405, 503 `store_unavailable`.
 */
export function apiKeyAdminRoutes (service: KeyService): AdminRoute {
  return async function apiKeyAdmin (req, res, url, requestId) {
    const path = url.pathname
    if (path !== '/admin/keys' && !path.startsWith('/admin/keys/')) return false
    const method = req.method ?? 'GET'
    try {
      if (path === '/admin/keys') {
        if (method === 'GET') { json(res, 200, await service.list()); return true }
        if (method === 'POST') {
          const body = await objectBody(req, ['client', 'scopes', 'tier', 'expiresIn'])
          const created = await service.create({ client: body.client, scopes: body.scopes, tier: body.tier, expiresIn: body.expiresIn })
          res.setHeader('Location', `/admin/keys/${created.id}`)
          json(res, 201, created)
          return true
        }
        return notAllowed(res, 'GET, POST', requestId)
      }
      const rotate = ROTATE.exec(path)
      if (rotate) {
        if (method !== 'POST') return notAllowed(res, 'POST', requestId)
        const body = await objectBody(req, ['grace'])
        const rotated = await service.rotate(keyId(rotate[1]!), body.grace)
        res.setHeader('Location', `/admin/keys/${rotated.id}`)
        json(res, 201, rotated)
        return true
      }
      const item = ITEM.exec(path)
      if (item) {
        if (method !== 'DELETE') return notAllowed(res, 'DELETE', requestId)
        await service.revoke(keyId(item[1]!))
        res.writeHead(204, { 'Cache-Control': 'no-store' })
        res.end()
        return true
      }
      sendProblem(res, { status: 404, code: 'not_found', detail: 'no such admin endpoint' }, requestId)
      return true
    } catch (error) {
      if (error instanceof BadBody) {
        sendProblem(res, { status: 400, code: 'bad_request', detail: error.message }, requestId)
        return true
      }
      if (error instanceof KeyRequestError) {
        const status = error.problem === 'not_found' ? 404 : 400
        sendProblem(res, { status, code: status === 404 ? 'not_found' : 'bad_request', detail: error.message }, requestId)
        return true
      }
      if (error instanceof StoreUnavailableError) {
        sendProblem(res, { status: 503, code: 'store_unavailable', detail: 'the key store is unavailable' }, requestId)
        return true
      }
      throw error
    }
  }
}

class BadBody extends Error {}

/** The key id of a path segment; a malformed percent-escape is the client's mistake (400), not a fault. */
function keyId (segment: string): string {
  try {
    return decodeURIComponent(segment)
  } catch {
    throw new BadBody('malformed percent-encoding in the key id')
  }
}

async function objectBody (req: IncomingMessage, fields: readonly string[]): Promise<Record<string, unknown>> {
  const type = req.headers['content-type']
  if (type !== undefined && !/^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i.test(type)) throw new BadBody('send a JSON body (Content-Type: application/json)')
  let body: unknown
  try {
    body = await readJson(req)
  } catch (error) {
    throw new BadBody(error instanceof RangeError ? 'request body too large' : 'request body is not valid JSON')
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new BadBody('request body must be a JSON object')
  if (Object.keys(body).some((name) => !fields.includes(name))) throw new BadBody(`unknown field in the body (allowed: ${fields.join(', ')})`)
  return body as Record<string, unknown>
}

function notAllowed (res: ServerResponse, allow: string, requestId: string): true {
  sendProblem(res, { status: 405, code: 'bad_request', detail: `method not allowed here (allowed: ${allow})`, headers: { Allow: allow } }, requestId)
  return true
}
