import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import test from 'ava'
import { editorSchema } from '../../gateway/config/json-schema.js'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..')

test('gateway.schema.json is the schema generated from the current code (regenerate with npm run schema)', (t) => {
  const committed = JSON.parse(readFileSync(join(ROOT, 'gateway.schema.json'), 'utf8')) as unknown
  t.deepEqual(committed, JSON.parse(JSON.stringify(editorSchema())))
})

test('the editor schema knows every policy and refuses unknown keys at the top level', (t) => {
  const schema = editorSchema() as { additionalProperties?: boolean, $defs: { step: { properties: Record<string, unknown> } } }
  t.is(schema.additionalProperties, false)
  for (const key of ['apiKey', 'basic', 'jwt', 'introspection', 'hmac', 'mtls', 'scopes', 'claims', 'rateLimit', 'anyOf']) {
    t.truthy(schema.$defs.step.properties[key], key)
  }
})
