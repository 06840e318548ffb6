import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
import type { TSchema } from '@sinclair/typebox'
import type { ConfigIssue } from '../errors.js'
import { didYouMean } from './positions.js'
import { DURATION_PATTERN, RATE_PATTERN, SIZE_PATTERN } from './units.js'

// verbose: errors carry parentSchema, which the messages below read (known keys, formats, union literals).
const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false, coerceTypes: false, verbose: true })
ajv.addKeyword({ keyword: 'sensitive', schemaType: 'boolean' })
for (const name of ['duration', 'rate', 'size']) ajv.addFormat(name, true)
ajv.addFormat('date-time', (text: string) => /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/.test(text) && !Number.isNaN(Date.parse(text)))
ajv.addFormat('uri', (text: string) => { try { return Boolean(new URL(text)) } catch { return false } })

const compiled = new WeakMap<TSchema, ValidateFunction>()

export function validatorFor (schema: TSchema): ValidateFunction {
  let validate = compiled.get(schema)
  if (!validate) {
    validate = ajv.compile(schema)
    compiled.set(schema, validate)
  }
  return validate
}

/** An issue whose path is inside the document, plus whether it points at a key (unknown key) rather than a value. */
export interface PathIssue extends ConfigIssue { readonly keyName?: string }

/**
 * Validates (applying defaults in place) and turns ajv's errors into issues that a person can act on:
 * unknown keys with a did-you-mean, enums listed, units explained. Union noise is folded into one issue.
 */
export function validate (schema: TSchema, value: unknown, basePath: ReadonlyArray<string | number>): PathIssue[] {
  const fn = validatorFor(schema)
  if (fn(value)) return []
  const errors = fn.errors ?? []
  // Fold branch errors of a union into one issue at the union's own path.
  const unionPaths = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath))
  const issues: PathIssue[] = []
  const seen = new Set<string>()
  for (const error of errors) {
    // A union's branch errors at the union's own path are folded into the union's one issue.
    if (error.keyword !== 'anyOf' && unionPaths.has(error.instancePath) && error.schemaPath.includes('/anyOf/')) continue
    const issue = toIssue(error, basePath)
    if (!issue) continue
    const id = `${issue.path.join('/')}|${issue.keyName ?? ''}|${issue.message}`
    if (seen.has(id)) continue
    seen.add(id)
    issues.push(issue)
  }
  return issues
}

function toIssue (error: ErrorObject, basePath: ReadonlyArray<string | number>): PathIssue | undefined {
  const path = [...basePath, ...pointerToPath(error.instancePath)]
  const params = error.params as Record<string, unknown>
  const schema = error.parentSchema as Record<string, unknown> | undefined
  switch (error.keyword) {
    case 'additionalProperties': {
      const key = String(params.additionalProperty)
      const known = Object.keys((schema?.properties as object | undefined) ?? {})
      const guess = didYouMean(key, known)
      return { severity: 'error', path, keyName: key, message: `unknown key "${key}"${guess ? `; did you mean "${guess}"?` : ''}`, fix: guess ? `rename it to ${guess}` : (known.length > 0 ? `known keys: ${known.join(', ')}` : 'remove it') }
    }
    case 'required':
      return { severity: 'error', path, message: `missing required key "${String(params.missingProperty)}"`, fix: `add ${String(params.missingProperty)}: ...` }
    case 'type':
      return { severity: 'error', path, message: `must be ${article(String(params.type))}` }
    case 'const':
      return { severity: 'error', path, message: `must be ${JSON.stringify(params.allowedValue)}` }
    case 'enum':
      return { severity: 'error', path, message: `must be one of: ${(params.allowedValues as unknown[]).join(', ')}` }
    case 'anyOf': {
      const branches = (schema?.anyOf as Array<Record<string, unknown>> | undefined) ?? []
      const literals = branches.filter((b) => 'const' in b).map((b) => String(b.const))
      if (literals.length === branches.length && literals.length > 0) return { severity: 'error', path, message: `must be one of: ${literals.join(', ')}` }
      const format = schema?.format
      if (format === 'duration') return { severity: 'error', path, message: 'not a duration', fix: 'write it like 250ms, 30s, 5m, 1h or 1d' }
      if (format === 'size') return { severity: 'error', path, message: 'not a size', fix: 'write it like 512, 64KiB or 1MiB' }
      return { severity: 'error', path, message: `must be ${branches.map((b) => describe(b)).join(' or ')}` }
    }
    case 'pattern': {
      const pattern = String(params.pattern)
      if (pattern === DURATION_PATTERN) return undefined // reported by the enclosing union
      if (pattern === SIZE_PATTERN) return undefined
      if (pattern === RATE_PATTERN) return { severity: 'error', path, message: 'not a rate', fix: 'write it like 100/min (N/sec, N/min, N/hour, N/day)' }
      return { severity: 'error', path, message: `has the wrong form (${describePattern(pattern)})` }
    }
    case 'minItems': return { severity: 'error', path, message: `needs at least ${String(params.limit)} item(s)` }
    case 'maxItems': return { severity: 'error', path, message: `takes at most ${String(params.limit)} item(s)` }
    case 'minLength': return { severity: 'error', path, message: 'must not be empty' }
    case 'minimum': case 'maximum': case 'exclusiveMinimum': case 'exclusiveMaximum':
      return { severity: 'error', path, message: `must be ${String(params.comparison)} ${String(params.limit)}` }
    case 'minProperties': case 'maxProperties':
      return { severity: 'error', path, message: 'must name exactly one policy, like `- apiKey: {}`' }
    default:
      return { severity: 'error', path, message: error.message ?? 'is not valid' }
  }
}

function describe (schema: Record<string, unknown>): string {
  if ('const' in schema) return JSON.stringify(schema.const)
  if (schema.type === 'array') return 'a list'
  if (schema.type === 'object') return 'a mapping'
  return article(String(schema.type ?? 'value'))
}

function article (type: string): string {
  const words: Record<string, string> = { string: 'a string', number: 'a number', integer: 'a whole number', boolean: 'true or false', array: 'a list', object: 'a mapping', null: 'empty' }
  return type.split(',').map((t) => words[t] ?? t).join(' or ')
}

function describePattern (pattern: string): string {
  if (pattern.startsWith('^(\\[')) return 'host:port, like 127.0.0.1:8080'
  if (pattern === '^/') return 'must start with /'
  if (pattern === '^https?://') return 'an http:// or https:// URL'
  if (pattern.startsWith('^[A-Za-z0-9]')) return 'letters, digits, _ . - only'
  return `must match ${pattern}`
}

function pointerToPath (pointer: string): Array<string | number> {
  if (pointer === '') return []
  return pointer.slice(1).split('/').map((part) => {
    const key = part.replace(/~1/g, '/').replace(/~0/g, '~')
    return /^\d+$/.test(key) ? Number(key) : key
  })
}
