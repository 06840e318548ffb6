/** `authgate schema`: the JSON Schema of gateway.yaml for editors (gateway.schema.json). */
import { editorSchema } from '../gateway/config/json-schema.js'
import type { CommandIo } from './command.js'

export function schemaCommand (io: CommandIo): number {
  io.stdout.write(JSON.stringify(editorSchema(), null, 2) + '\n')
  return 0
}
