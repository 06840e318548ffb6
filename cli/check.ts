/** `authgate check [-c gateway.yaml] [--json]`: validate and lint; exit 1 on errors, 0 with only warnings. */
import { checkConfig } from '../gateway/config/load.js'
import { formatIssues } from '../gateway/errors.js'
import { configFileOf, CONFIG_OPTION, parseArgs, UsageError, type CommandIo } from './command.js'

export function checkCommand (args: readonly string[], io: CommandIo): number {
  const { values, positionals } = parseArgs(args, { ...CONFIG_OPTION, json: { type: 'boolean' } })
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`)
  const file = configFileOf(values)
  const { issues } = checkConfig(file)
  if (values.json === true) {
    io.stdout.write(JSON.stringify(issues.map((i) => ({
      file: i.file ?? file, line: i.line ?? 1, col: i.col ?? 1, path: formatPathText(i.path), severity: i.severity, message: i.message, fix: i.fix ?? null,
    })), null, 2) + '\n')
  } else if (issues.length === 0) {
    io.stdout.write(`${file}: ok\n`)
  } else {
    const errors = issues.filter((i) => i.severity === 'error').length
    io.stdout.write(`${formatIssues(issues)}\n${file}: ${errors} error(s), ${issues.length - errors} warning(s)\n`)
  }
  return issues.some((i) => i.severity === 'error') ? 1 : 0
}

function formatPathText (path: ReadonlyArray<string | number>): string {
  return path.map((p, i) => typeof p === 'number' ? `[${p}]` : (i === 0 ? p : `.${p}`)).join('')
}
