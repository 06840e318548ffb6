import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { ROOT } from './child.js'

let built: Promise<void> | undefined

/** Builds the console's static files (console/build.mjs -> dist/console/) once per test process, so tests serve the current sources. */
export function buildConsole (): Promise<void> {
  built ??= promisify(execFile)(process.execPath, [join(ROOT, 'console/build.mjs')], { cwd: ROOT }).then(() => {})
  return built
}
