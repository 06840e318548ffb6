/**
 * What every command shares: its IO, its usage error and the one argument parser (`node:util` parseArgs).
 * A leaf module: it imports nothing of the project, so policy modules that declare commands may use it
 * without depending on the rest of cli/.
 */
import { parseArgs as parseNodeArgs } from 'node:util'

/** Where a command writes. Commands never touch process.stdout directly, so tests capture both streams. */
export interface CommandIo {
  readonly stdout: { write (text: string): unknown }
  readonly stderr: { write (text: string): unknown }
}

/** A mistake in how a command was called: exit code 2, with the usage. */
export class UsageError extends Error {}

export interface OptionSpec {
  readonly type: 'string' | 'boolean'
  readonly short?: string
  /** Repeatable: every occurrence is kept, in order. */
  readonly multiple?: boolean
}

export type OptionSpecs = Readonly<Record<string, OptionSpec>>

type ValueOf<S extends OptionSpec> = S['type'] extends 'boolean'
  ? (S['multiple'] extends true ? boolean[] : boolean)
  : (S['multiple'] extends true ? string[] : string)

export interface ParsedArgs<O extends OptionSpecs> {
  readonly values: { [K in keyof O]?: ValueOf<O[K]> }
  readonly positionals: string[]
}

/**
 * `--name value`, `--name=value`, `-c value`, booleans, and `--` before positionals that start with `-`.
 * Unknown options, a missing value and a value given to a boolean throw UsageError.
 */
export function parseArgs<const O extends OptionSpecs> (args: readonly string[], options: O): ParsedArgs<O> {
  try {
    const { values, positionals } = parseNodeArgs({ args: [...args], options: options as never, allowPositionals: true, strict: true })
    return { values: values as ParsedArgs<O>['values'], positionals }
  } catch (error) {
    throw new UsageError(usageMessage(error as Error & { code?: string }))
  }
}

/** node:util's messages, said the way the rest of authgate's usage errors are. */
function usageMessage (error: Error & { code?: string }): string {
  const text = error.message
  if (error.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const name = /^Unknown option '([^']+)'/.exec(text)?.[1]
    if (name !== undefined) return `unknown option ${name}`
  }
  if (error.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    const missing = /^Option '([^']+?)(?: <value>)?' argument missing/.exec(text)?.[1]
    if (missing !== undefined) return `${missing} needs a value`
    const boolean = /^Option '([^']+)' does not take an argument/.exec(text)?.[1]
    if (boolean !== undefined) return `${boolean} takes no value`
    const ambiguous = /^Option '([^']+)' argument is ambiguous/.exec(text)?.[1]
    if (ambiguous !== undefined) return `${ambiguous} needs a value (for one that starts with "-", write ${ambiguous}=VALUE)`
  }
  return text.charAt(0).toLowerCase() + text.slice(1)
}

/** The configuration file a command works on: `-c` / `--config`, else $AUTHGATE_CONFIG, else gateway.yaml. */
export function configFileOf (values: { readonly config?: string | undefined }): string {
  return values.config ?? process.env.AUTHGATE_CONFIG ?? 'gateway.yaml'
}

/** `-c FILE` / `--config FILE`: the option of every command that reads gateway.yaml. */
export const CONFIG_OPTION = { config: { type: 'string', short: 'c' } } as const satisfies OptionSpecs
