/** The CLI from source, for tests that spawn it: `node --import tsx test/helpers/run-cli.ts start -c FILE`. */
import { main } from '../../cli/main.js'

process.exitCode = await main(process.argv.slice(2))
