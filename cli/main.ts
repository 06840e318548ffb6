/**
 * `authgate <command> [options]`: dispatch. The built-in commands are here; the commands of policy modules (keys,
 * hash-key, passwd, sign, tokens) come from the policy registry. Each command's module is imported only when it
 * runs, so `authgate start` loads neither explain, init nor the development PKI.
 */
import { ConfigError, formatIssues } from '../gateway/errors.js'
import { commands as policyCommands } from '../policies/index.js'
import type { CommandContext, CommandDefinition } from '../policies/types.js'
import { UsageError, type CommandIo } from './command.js'
import { openConfiguredStore } from './store.js'

const BUILT_IN: readonly CommandDefinition[] = [
  {
    name: 'start',
    usage: '[-c gateway.yaml]                 run the gateway',
    run: async (args, io) => await (await import('./start.js')).startCommand(args, io),
  },
  {
    name: 'check',
    usage: '[-c gateway.yaml] [--json]        validate and lint; exit 1 on errors',
    run: async (args, io) => (await import('./check.js')).checkCommand(args, io),
  },
  {
    name: 'explain',
    usage: `[-c gateway.yaml] METHOD URL [-H 'Name: value']... [--json]
                                            the route, each policy's decision, what the upstream would get`,
    run: async (args, io) => await (await import('./explain/command.js')).explainCommand(args, io),
  },
  {
    name: 'init',
    usage: '[--scenario NAME] [--out FILE]    write a commented gateway.yaml for a scenario',
    run: async (args, io) => await (await import('./init/command.js')).initCommand(args, io),
  },
  {
    name: 'certs',
    usage: 'init [--dir certs/dev] | client NAME [--san URI]   development PKI',
    run: async (args, io) => await (await import('./certs.js')).certsCommand(args, io),
  },
  {
    name: 'schema',
    usage: '                                  print the JSON Schema of gateway.yaml (gateway.schema.json)',
    run: async (_args, io) => (await import('./schema.js')).schemaCommand(io),
  },
]

/** Every command by name: the built-in ones first, then the policies' in registry order (none replaces a built-in). */
export const COMMANDS: ReadonlyMap<string, CommandDefinition> = new Map([
  ...BUILT_IN.map((c) => [c.name, c] as const),
  ...[...policyCommands].filter(([name]) => !BUILT_IN.some((c) => c.name === name)),
])

export const USAGE = `usage: authgate <command> [options]

${[...COMMANDS.values()].map((c) => `  ${c.name.padEnd(7)} ${c.usage}`).join('\n')}
`

const context: CommandContext = { openStore: openConfiguredStore }

export async function main (argv: readonly string[], io: CommandIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [command, ...args] = argv
  try {
    if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
      io.stdout.write(USAGE)
      return command === undefined ? 2 : 0
    }
    const found = COMMANDS.get(command)
    if (!found) throw new UsageError(`unknown command "${command}"`)
    return await found.run(args, io, context)
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(`authgate: ${error.message}\n\n${USAGE}`)
      return 2
    }
    if (error instanceof ConfigError) {
      io.stderr.write(`${formatIssues(error.issues)}\n`)
      return 1
    }
    io.stderr.write(`authgate: ${(error as Error).message}\n`)
    return 1
  }
}
