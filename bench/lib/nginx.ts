/**
 * nginx beside authgate (issue 15): one nginx process (master + one worker, `daemon off`, everything under a temporary
 * prefix) with two servers:
 *
 * - `alone`: proxy_pass to the bench upstream over a keep-alive pool: what nginx costs by itself;
 * - `authgate`: `auth_request` to authgate's decision listener (`/nginx`, keep-alive pool), the identity headers of
 *   the answer copied onto the upstream request, then proxy_pass to the same upstream: nginx + authgate decision mode.
 *
 * nginx comes from `NGINX_BIN` when set, else /usr/sbin/nginx, else `nginx` on PATH; none: the scenarios are skipped.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export interface NginxBinary {
  readonly path: string
  readonly version: string
  /** Built with ngx_http_auth_request_module. */
  readonly authRequest: boolean
}

/** The nginx binary and what it was built with, or undefined when there is none. */
export function findNginx (): NginxBinary | undefined {
  // NGINX_BIN, when set, is the only candidate (NGINX_BIN=/nonexistent runs the bench as on a machine without nginx).
  const candidates = process.env.NGINX_BIN ? [process.env.NGINX_BIN] : ['/usr/sbin/nginx', 'nginx']
  for (const path of candidates) {
    if (path.includes('/') && !existsSync(path)) continue
    const probe = spawnSync(path, ['-V'])
    if (probe.status !== 0) continue
    // nginx -V writes to stderr.
    const text = `${probe.stdout?.toString() ?? ''}${probe.stderr?.toString() ?? ''}`
    return {
      path,
      version: text.match(/nginx\/([\d.]+)/)?.[1] ?? 'unknown',
      authRequest: text.includes('--with-http_auth_request_module'),
    }
  }
  return undefined
}

export interface NginxPorts {
  readonly alone: number
  readonly authgate: number
}

/** The identity headers authgate's decision answers carry (identity.headers defaults, and the signed identity). */
const IDENTITY = [
  ['X-Auth-Subject', 'x_auth_subject'],
  ['X-Auth-Client', 'x_auth_client'],
  ['X-Auth-Methods', 'x_auth_methods'],
  ['X-Auth-Scopes', 'x_auth_scopes'],
  ['X-Auth-Tier', 'x_auth_tier'],
  ['X-Auth-Identity', 'x_auth_identity'],
] as const

/** Writes `dir`/nginx.conf (and the temp folders nginx needs); returns the file. */
export function writeNginxConfig (dir: string, options: { ports: NginxPorts, upstreamPort: number, decisionPort: number | undefined }): string {
  for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, sub), { recursive: true })
  const upstreamHeaders = [
    'proxy_http_version 1.1;',
    'proxy_set_header Connection "";',
    'proxy_set_header Host $host;',
    'proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;',
  ]
  const authgateServer = options.decisionPort === undefined
    ? ''
    : `
    upstream authgate {
      server 127.0.0.1:${options.decisionPort};
      keepalive 64;
      keepalive_requests 1000000;
      # Below authgate's own 5 s keep-alive timeout: nginx closes an idle connection before authgate does.
      keepalive_timeout 4s;
    }
    server {
      listen 127.0.0.1:${options.ports.authgate};
      location = /_authgate {
        internal;
        proxy_pass http://authgate/nginx;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header X-Original-Method $request_method;
        proxy_set_header X-Original-URI $request_uri;
        proxy_set_header X-Forwarded-Host $host;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-For $remote_addr;
      }
      location / {
        auth_request /_authgate;
${IDENTITY.map(([, variable]) => `        auth_request_set $${variable} $upstream_http_${variable};`).join('\n')}
        proxy_pass http://backend;
${upstreamHeaders.map((line) => `        ${line}`).join('\n')}
        # Set from the decision unconditionally (empty when absent): what the client sent never reaches the upstream.
${IDENTITY.map(([header, variable]) => `        proxy_set_header ${header} $${variable};`).join('\n')}
      }
    }`
  const text = `# Written by bench/lib/nginx.ts for one benchmark run.
${process.getuid?.() === 0 ? 'user root root;\n' : ''}worker_processes 1;
daemon off;
pid ${join(dir, 'nginx.pid')};
error_log stderr warn;
events {
  worker_connections 4096;
}
http {
  access_log /dev/null;
  client_body_temp_path ${join(dir, 'client_body')};
  proxy_temp_path ${join(dir, 'proxy')};
  fastcgi_temp_path ${join(dir, 'fastcgi')};
  uwsgi_temp_path ${join(dir, 'uwsgi')};
  scgi_temp_path ${join(dir, 'scgi')};
  keepalive_requests 1000000;
  upstream backend {
    server 127.0.0.1:${options.upstreamPort};
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 4s;
  }
  server {
    listen 127.0.0.1:${options.ports.alone};
    location / {
      proxy_pass http://backend;
${upstreamHeaders.map((line) => `      ${line}`).join('\n')}
    }
  }${authgateServer}
}
`
  const file = join(dir, 'nginx.conf')
  writeFileSync(file, text)
  return file
}
