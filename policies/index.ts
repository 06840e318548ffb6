import type { PolicyDefinition, SectionDefinition } from './types.js'
import { apiKey, apiKeysSection } from './api-key/index.js'

/** YAML key -> policy definition. */
export const policies: ReadonlyMap<string, PolicyDefinition> = new Map<string, PolicyDefinition>([
  [apiKey.key, apiKey],
])

/** Top-level gateway.yaml sections owned by policy modules. */
export const sections: readonly SectionDefinition[] = [
  apiKeysSection,
]
