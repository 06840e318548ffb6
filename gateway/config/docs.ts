/**
 * docs/configuration.md, generated from the same schema that validates gateway.yaml (editorSchema: the core, the
 * policy-owned sections, every policy block), so the reference cannot drift from what the loader accepts.
 * Regenerate with `node --import tsx gateway/config/write-docs.ts`; test/config/docs.test.ts fails when it is stale.
 */
import { editorSchema } from './json-schema.js'

type Schema = Record<string, any>

interface Row {
  readonly key: string
  readonly type: string
  readonly default: string
  readonly description: string
}

const TITLE = `# gateway.yaml reference

<!-- Generated from the configuration schema by \`node --import tsx gateway/config/write-docs.ts\`. Do not edit by hand:
     test/config/docs.test.ts fails when this file and the schema disagree. -->

Every key \`authgate check\` accepts, with its type, default and meaning. Keys in \`code\` are written as paths:
\`listeners[].tls.cert\` is the \`cert\` key of the \`tls\` mapping of an entry of the \`listeners\` list, and
\`upstreams.<name>.url\` is the \`url\` of any named upstream.

- **Required** keys have no default and must be written. Every other key may be left out.
- **Secret** keys take their value from \`\${env:NAME}\` or \`\${file:path}\` (never inline); they are redacted wherever the
  configuration is shown.
- **Durations**: \`250ms\`, \`30s\`, \`5m\`, \`1h\`, \`1d\` (a bare number is seconds). **Sizes**: \`512\`, \`64KiB\`, \`1MiB\`.
  **Rates**: \`N/sec\`, \`N/min\`, \`N/hour\`, \`N/day\`.
- \`\${env:NAME}\` and \`\${file:path}\` work in any string value; \`\${env:NAME:-default}\` may be empty. Relative paths are
  relative to the configuration file's folder.
`

/** The whole reference as Markdown. Deterministic: the same schema gives the same text. */
export function configurationReference (): string {
  const schema = editorSchema() as Schema
  const out: string[] = [TITLE]
  const top = schema.properties as Record<string, Schema>
  const required = new Set<string>(schema.required ?? [])
  out.push('## Top level\n')
  out.push(table(Object.entries(top).map(([key, value]) => row(key, value, required.has(key)))))
  for (const [key, value] of Object.entries(top)) {
    const rows = nestedRows(value, key)
    if (rows.length === 0) continue
    out.push(`## ${key}\n`)
    if (value.description) out.push(`${oneLine(value.description)}\n`)
    out.push(table(rows))
  }

  const policyDefs = (schema.$defs?.policy?.properties ?? {}) as Record<string, Schema>
  out.push(`## Policies

A route's \`policies\` is a list of steps, run in order; all must pass. A step is one policy, \`- apiKey: { header: X-API-Key }\`,
or a group \`- anyOf: [ ... ]\` that passes when one member authenticates (a member whose credential is absent is
skipped; a present but invalid credential rejects at once). Each policy's own keys:
`)
  for (const [key, value] of Object.entries(policyDefs)) {
    out.push(`### ${key}\n`)
    if (value.description) out.push(`${oneLine(value.description)}\n`)
    // A policy whose value is not a mapping (scopes: [a, b]) gets a row for the value itself; its description is above.
    const rows = value.properties !== undefined ? nestedRows(value, '') : [row('(value)', { ...value, description: undefined }, true), ...nestedRows(value, '')]
    out.push(rows.length > 0 ? table(rows) : '_No options: write `{}`._\n')
  }
  return `${out.join('\n').trimEnd()}\n`
}

/** Rows for the keys under a schema (object properties, list items, named entries), depth first. */
function nestedRows (schema: Schema, path: string): Row[] {
  const rows: Row[] = []
  const join = (key: string) => path === '' ? key : `${path}.${key}`
  for (const branch of objectBranches(schema)) {
    if (branch.properties) {
      const required = new Set<string>(branch.required ?? [])
      for (const [key, value] of Object.entries(branch.properties as Record<string, Schema>)) {
        rows.push(row(join(key), value, required.has(key)))
        rows.push(...nestedRows(value, join(key)))
      }
    }
    if (branch.patternProperties) {
      for (const value of Object.values(branch.patternProperties as Record<string, Schema>)) {
        const name = join('<name>')
        if (objectBranches(value).length > 0 || value.type === 'array') rows.push(...nestedRows(value, name))
      }
    }
  }
  if (schema.type === 'array' && schema.items && !schema.items.$ref) rows.push(...nestedRows(schema.items, `${path}[]`))
  for (const branch of schema.anyOf ?? []) {
    if (branch.type === 'array' && branch.items) rows.push(...nestedRows(branch.items, `${path}[]`))
  }
  return rows
}

/** The mapping-shaped parts of a schema: itself, or the object branches of a union. */
function objectBranches (schema: Schema): Schema[] {
  if (schema.type === 'object') return [schema]
  return (schema.anyOf ?? []).filter((b: Schema) => b.type === 'object')
}

function row (key: string, schema: Schema, required: boolean): Row {
  const notes: string[] = []
  if (required && schema.default === undefined) notes.push('**Required.**')
  if (schema.sensitive === true) notes.push('**Secret.**')
  if (schema.description) notes.push(oneLine(schema.description))
  return { key: `\`${key}\``, type: typeOf(schema), default: schema.default === undefined ? '' : `\`${render(schema.default)}\``, description: notes.join(' ') }
}

function typeOf (schema: Schema): string {
  if (schema.$ref) return schema.$ref === '#/$defs/step' ? 'policy step (see [Policies](#policies))' : 'policy'
  if (schema.format === 'duration') return 'duration'
  if (schema.format === 'size') return 'size'
  if (schema.format === 'rate') return 'rate'
  if (schema.const !== undefined) return `\`${render(schema.const)}\``
  if (Array.isArray(schema.enum)) return schema.enum.map((v: unknown) => `\`${render(v)}\``).join(' \\| ')
  if (Array.isArray(schema.anyOf)) {
    const parts = schema.anyOf.map((b: Schema) => typeOf(b))
    return [...new Set(parts)].join(' \\| ')
  }
  switch (schema.type) {
    case 'array': {
      const item = schema.items ? typeOf(schema.items) : 'values'
      return `list of ${item.includes(' \\| ') ? `(${item})` : item}`
    }
    case 'object':
      if (schema.patternProperties) {
        const [value] = Object.values(schema.patternProperties as Record<string, Schema>)
        return `map of name → ${value ? typeOf(value) : 'value'}`
      }
      return 'mapping'
    case 'integer': return bounds('integer', schema)
    case 'number': return bounds('number', schema)
    case 'boolean': return 'boolean'
    case 'string': return 'string'
    default: return 'value'
  }
}

function bounds (type: string, schema: Schema): string {
  const min = schema.minimum
  const max = schema.maximum
  if (min !== undefined && max !== undefined) return `${type} ${min}–${max}`
  if (min !== undefined) return `${type} ≥ ${min}`
  return type
}

/** A value as YAML-ish inline text, safe inside a table cell's code span. */
function render (value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value)
  return text.replace(/\|/g, '\\|').replace(/`/g, "'")
}

// The unit hints the schema helpers append (Duration(), Size(), Rate()): the type column and the introduction say it.
const UNIT_HINTS = / (Duration: 250ms, 30s, 5m, 1h, 1d \(a bare number is seconds\)|Size: 512, 64KiB, 1MiB|Rate: N\/sec, N\/min, N\/hour or N\/day)\./g

function oneLine (text: string): string {
  return String(text).replace(UNIT_HINTS, '').replace(/\s*\n\s*/g, ' ').replace(/\|/g, '\\|').trim()
}

function table (rows: readonly Row[]): string {
  const lines = ['| key | type | default | description |', '|---|---|---|---|']
  for (const r of rows) lines.push(`| ${r.key} | ${r.type} | ${r.default} | ${r.description} |`)
  return `${lines.join('\n')}\n`
}
