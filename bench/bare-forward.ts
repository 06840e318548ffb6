/**
 * The "bare forward" baseline: what a Node reverse proxy costs when written the straightforward way and doing
 * nothing else. `http.createServer` -> undici `Pool.request` -> pipe the answer back. No routing, no policies, no
 * logging, no metrics. The pool is sized like the gateway's default (64 connections, no pipelining).
 *
 * `BENCH_UPSTREAM` is the upstream origin; `BENCH_TLS_CERT`/`BENCH_TLS_KEY` (PEM paths) make it an HTTPS server
 * (the baseline for the TLS scenarios). Sends `{ port }` over IPC once listening on 127.0.0.1.
 */
import { readFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { Pool } from 'undici'
import { installProfilerHook } from './lib/profiler-hook.js'

installProfilerHook()

const pool = new Pool(process.env.BENCH_UPSTREAM!, { connections: 64, pipelining: 1, keepAliveTimeout: 4_000 })

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-connection', 'expect'])

async function onRequest (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const headers: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(req.headers)) if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined
  try {
    const upstream = await pool.request({ path: req.url!, method: req.method as 'GET', headers, body: hasBody ? req : null })
    res.writeHead(upstream.statusCode, upstream.headers as http.OutgoingHttpHeaders)
    upstream.body.pipe(res)
  } catch {
    res.statusCode = 502
    res.end()
  }
}

const handler = (req: http.IncomingMessage, res: http.ServerResponse) => { void onRequest(req, res) }
const server = process.env.BENCH_TLS_CERT
  ? https.createServer({ cert: readFileSync(process.env.BENCH_TLS_CERT), key: readFileSync(process.env.BENCH_TLS_KEY!) }, handler)
  : http.createServer(handler)
server.keepAliveTimeout = 5_000
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo
  process.send?.({ port })
})
process.on('disconnect', () => process.exit(0))
