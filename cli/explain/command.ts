/**
 * `authgate explain -c FILE METHOD URL [-H 'Name: value']...`: the command line and the printed report. What is
 * decided, and how, is decision.ts.
 */
import { readFileSync } from 'node:fs'
import { checkConfig } from '../../gateway/config/load.js'
import { formatIssues } from '../../gateway/errors.js'
import { configFileOf, CONFIG_OPTION, parseArgs, UsageError, type CommandIo } from '../command.js'
import { explainRequest } from './decision.js'
import { formatReport, type ExplainOptions, type ExplainReport } from './report.js'
import { ExplainInputError } from './request.js'

export const EXPLAIN_USAGE = `usage: authgate explain [-c gateway.yaml] METHOD URL [-H 'Name: value']... [options]

  URL                 /path?query, or http(s)://host[:port]/path?query (sets Host and picks a listener)
  -H 'Name: value'    a request header (repeatable)
  -d, --data TEXT     a request body; @FILE reads it from a file
  --listener NAME     the listener the request arrives on (default: from the URL's scheme and port)
  --remote ADDRESS    the client's address (default 127.0.0.1)
  --cert FILE         a client certificate (PEM) presented on a TLS listener, verified against its clientCA
  --decide DIALECT    the request is a proxy's decision request (nginx, forward or envoy) to a decision listener:
                      e.g. GET /nginx -H 'X-Original-Method: GET' -H 'X-Original-URI: /v1/x' -H 'X-Forwarded-Host: api'
  --json              print the report as JSON
`

/** Parses the command line and prints the report; exit 0 when the report was made, 1 on a config error, 2 on usage. */
export async function explainCommand (args: readonly string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs(args, {
    ...CONFIG_OPTION,
    json: { type: 'boolean' },
    header: { type: 'string', short: 'H', multiple: true },
    data: { type: 'string', short: 'd' },
    listener: { type: 'string' },
    remote: { type: 'string' },
    cert: { type: 'string' },
    decide: { type: 'string' },
  })
  if (positionals.length !== 2) throw new UsageError('explain needs METHOD and URL, e.g. authgate explain GET /v1/orders -H "X-API-Key: ..."')
  const [method, url] = positionals as [string, string]
  const headers: Array<[string, string]> = []
  for (const line of values.header ?? []) {
    const colon = line.indexOf(':')
    if (colon <= 0) throw new UsageError(`-H needs 'Name: value', got "${line.slice(0, 40)}"`)
    headers.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()])
  }
  const { data, listener, remote, cert, decide } = values
  if (decide !== undefined && decide !== 'nginx' && decide !== 'forward' && decide !== 'envoy') {
    throw new UsageError(`--decide takes nginx, forward or envoy, got "${decide.slice(0, 20)}"`)
  }
  const file = configFileOf(values)
  return await explain(file, method, url, headers, io, {
    ...(data !== undefined ? { body: data.startsWith('@') ? readFileSync(data.slice(1)) : Buffer.from(data, 'utf8') } : {}),
    ...(listener !== undefined ? { listener } : {}),
    ...(remote !== undefined ? { remoteAddress: remote } : {}),
    ...(cert !== undefined ? { certFile: cert } : {}),
    ...(decide !== undefined ? { decide } : {}),
    json: values.json === true,
  })
}

/** Loads the configuration, explains one request, prints the report (text or --json). */
export async function explain (configFile: string, method: string, url: string, headers: Array<[string, string]>,
  io: CommandIo, options: ExplainOptions = {}): Promise<number> {
  const { issues, config } = checkConfig(configFile, { ...(options.env ? { env: options.env } : {}) })
  if (!config) {
    io.stderr.write(`${formatIssues(issues.filter((i) => i.severity === 'error'))}\n`)
    return 1
  }
  let report: ExplainReport
  try {
    report = await explainRequest(config, method, url, headers, options)
  } catch (error) {
    if (error instanceof ExplainInputError) {
      io.stderr.write(`authgate explain: ${error.message}\n`)
      return 2
    }
    throw error
  }
  io.stdout.write(options.json === true ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report))
  return 0
}
