import type { ConfigIssue } from '../errors.js'
import type { GatewayDocument } from './types.js'

/** Hash of the demo API key shipped in gateway.yaml and the README. It must never guard production traffic. */
export const DEMO_KEY_HASH = 'sha256:c09cff330e6131e58df507b6cecb6000fa41496875210f303a5c822b14e2f8ee'
const PLACEHOLDER_SECRETS = ['changeme', 'change-me', 'secret', 'demo', 'password', 'admin', 'test']

/** "No placeholder secrets": with NODE_ENV=production, demo secrets and an admin API without a token are refused. */
export function productionIssues (config: GatewayDocument, env: NodeJS.ProcessEnv = process.env): ConfigIssue[] {
  if (env.NODE_ENV !== 'production') return []
  const issues: ConfigIssue[] = []
  if (config.admin && !config.admin.token) {
    issues.push({ severity: 'error', path: ['admin'], message: 'the admin API has no token (NODE_ENV=production)', fix: 'token: ${env:AUTHGATE_ADMIN_TOKEN}' })
  }
  if (config.admin?.token && (PLACEHOLDER_SECRETS.includes(config.admin.token.toLowerCase()) || config.admin.token.length < 16)) {
    issues.push({ severity: 'error', path: ['admin', 'token'], message: 'the admin token is a placeholder or shorter than 16 characters (NODE_ENV=production)', fix: 'generate one: openssl rand -base64 32' })
  }
  const keys = (config.apiKeys as Array<{ hash: string }> | undefined) ?? []
  keys.forEach((key, i) => {
    if (key.hash.toLowerCase() === DEMO_KEY_HASH) {
      issues.push({ severity: 'error', path: ['apiKeys', i, 'hash'], message: 'this is the published demo API key (NODE_ENV=production)', fix: 'create a real key: authgate keys create --client NAME' })
    }
  })
  return issues
}
