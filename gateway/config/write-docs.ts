/**
 * Writes docs/configuration.md from the schema: `node --import tsx gateway/config/write-docs.ts`.
 * Run it after changing any schema (core or policy); test/config/docs.test.ts fails until you do.
 */
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { configurationReference } from './docs.js'

const target = fileURLToPath(new URL('../../docs/configuration.md', import.meta.url))
writeFileSync(target, configurationReference())
process.stdout.write(`wrote ${target}\n`)
