/**
 * Runs the authgate CLI from source (through tsx), as bench/run.ts's gateway child:
 * `node --import tsx bench/gateway-main.ts start -c FILE`. The same code path as `bin/authgate.js start`,
 * without needing a fresh `npm run build`; node:cluster workers inherit the tsx loader. With `BENCH_PROFILE`,
 * the parent can profile a window of the run (lib/profiler-hook.ts).
 */
import { main } from '../cli/main.js'
import { installProfilerHook } from './lib/profiler-hook.js'

installProfilerHook()

process.exitCode = await main(process.argv.slice(2))
