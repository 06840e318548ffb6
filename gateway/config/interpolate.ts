import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import type { ConfigIssue } from '../errors.js'

const REFERENCE = /\$\{(env|file):([^}]*)\}/g

/**
 * Replaces `${env:NAME}`, `${env:NAME:-default}` and `${file:path}` in every string of the parsed document.
 * A missing variable or unreadable file is an issue at that value's path; the value itself is never reported.
 */
export function interpolate (value: unknown, env: NodeJS.ProcessEnv, baseDir: string, issues: ConfigIssue[],
  path: Array<string | number> = [], secrets: Map<string, string> = new Map()): unknown {
  if (typeof value === 'string') return interpolateString(value, env, baseDir, issues, path, secrets)
  if (Array.isArray(value)) return value.map((item, i) => interpolate(item, env, baseDir, issues, [...path, i], secrets))
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const [key, item] of Object.entries(value)) out[key] = interpolate(item, env, baseDir, issues, [...path, key], secrets)
    return out
  }
  return value
}

function interpolateString (text: string, env: NodeJS.ProcessEnv, baseDir: string, issues: ConfigIssue[],
  path: Array<string | number>, secrets: Map<string, string>): string {
  if (!text.includes('${')) return text
  return text.replace(REFERENCE, (_, kind: string, ref: string) => {
    if (kind === 'env') {
      const sep = ref.indexOf(':-')
      const name = sep === -1 ? ref : ref.slice(0, sep)
      const value = env[name]
      if (value !== undefined && (value !== '' || sep === -1)) return remember(secrets, value, `\${env:${name}}`)
      if (sep !== -1) return ref.slice(sep + 2)
      issues.push({ severity: 'error', path, message: `environment variable ${name} is not set`, fix: `export ${name}=... before starting, or write \${env:${name}:-default}` })
      return ''
    }
    const file = resolve(baseDir, ref)
    try {
      return remember(secrets, readFileSync(file, 'utf8').replace(/\r?\n$/, ''), `\${file:${ref}}`)
    } catch (error) {
      issues.push({ severity: 'error', path, message: `cannot read file ${ref} (${(error as NodeJS.ErrnoException).code ?? 'error'})`, fix: 'check the path; relative paths are relative to the config file\'s folder' })
      return ''
    }
  })
}

/** Interpolated values may be secrets: remembered so messages can show the reference instead of the value. */
function remember (secrets: Map<string, string>, value: string, reference: string): string {
  if (value.length >= 4) secrets.set(value, reference)
  return value
}

/** Replaces every interpolated value in a message by the `${env:..}`/`${file:..}` it came from. */
export function maskSecrets (text: string, secrets: ReadonlyMap<string, string>): string {
  let out = text
  for (const [value, reference] of secrets) if (out.includes(value)) out = out.split(value).join(reference)
  return out
}
