import { readFileSync } from 'node:fs'
import test from 'ava'
import { configurationReference } from '../../gateway/config/docs.js'
import { editorSchema } from '../../gateway/config/json-schema.js'
import { policies } from '../../policies/index.js'

const committed = () => readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8')

test('docs/configuration.md is the reference generated from the current schema', (t) => {
  t.true(committed() === configurationReference(),
    'docs/configuration.md is stale: run `node --import tsx gateway/config/write-docs.ts` and commit the result')
})

test('the reference has every top-level key, every policy, and every key of a nested mapping', (t) => {
  const text = configurationReference()
  const schema = editorSchema()
  for (const key of Object.keys(schema.properties as object)) t.true(text.includes(`| \`${key}\` |`), key)
  for (const key of policies.keys()) t.true(text.includes(`\n### ${key}\n`), key)
  for (const key of ['listeners[].tls.clientCert', 'upstreams.<name>.timeout', 'routes[].match.path', 'store.onError', 'identity.signed.ttl']) {
    t.true(text.includes(`| \`${key}\` |`), key)
  }
})

test('defaults, secrets and required keys are marked', (t) => {
  const text = configurationReference()
  t.regex(text, /^\| `limits\.maxBodyBytes` \| size \| `1MiB` \| /m)
  t.regex(text, /^\| `admin\.token` \| string \| {2}\| \*\*Secret\.\*\* /m)
  t.regex(text, /^\| `listeners\[\]\.address` \| string \| {2}\| \*\*Required\.\*\* /m)
  t.regex(text, /^\| `store\.onError` \| `deny` \\\| `allow` \| `deny` \| /m)
})
