import { policies, sections } from '../../policies/index.js'
import { gatewaySchema } from './schema.js'

/**
 * The whole gateway.yaml schema for editors (yaml-language-server, VS Code): the core, the policy-owned
 * sections, and each policy's own block. Published as gateway.schema.json; a test keeps the file current.
 */
export function editorSchema (): Record<string, unknown> {
  const top = JSON.parse(JSON.stringify(gatewaySchema(Object.fromEntries(sections.map((s) => [s.key, s.schema]))))) as Record<string, any>
  const policyProperties = Object.fromEntries([...policies.values()].map((p) => [p.key, JSON.parse(JSON.stringify(p.schema))]))
  const single = {
    type: 'object',
    minProperties: 1,
    maxProperties: 1,
    additionalProperties: false,
    properties: policyProperties,
    description: 'One policy: `{ policyName: config }`.',
  }
  top.$defs = {
    policy: single,
    step: {
      type: 'object',
      minProperties: 1,
      maxProperties: 1,
      additionalProperties: false,
      properties: {
        ...policyProperties,
        anyOf: { type: 'array', minItems: 2, items: { $ref: '#/$defs/policy' }, description: 'Passes when one member authenticates; a present but invalid credential rejects at once.' },
      },
    },
  }
  top.properties.routes.items.properties.policies.items = { $ref: '#/$defs/step' }
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: 'https://authgate.dev/gateway.schema.json',
    title: 'authgate gateway.yaml',
    ...top,
  }
}
