import type { PolicyDefinition, SectionDefinition } from './types.js'
import { apiKey, apiKeysSection } from './api-key/index.js'
import { mtls } from './mtls/index.js'

/** YAML key -> policy definition. */
export const policies: ReadonlyMap<string, PolicyDefinition> = new Map<string, PolicyDefinition>([
  [apiKey.key, apiKey],
  [mtls.key, mtls],
])

/** Top-level gateway.yaml sections owned by policy modules. */
export const sections: readonly SectionDefinition[] = [
  apiKeysSection,
]
