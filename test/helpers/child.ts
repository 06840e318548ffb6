import { spawn, type ChildProcess } from 'node:child_process'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { until } from './until.js'

/** `authgate` as a real child process (through tsx), for tests of signals, exit codes and workers. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const RUN_CLI = join(ROOT, 'test/helpers/run-cli.ts')

export interface Child {
  process: ChildProcess
  output: () => string
  /** Resolves with the exit code (or the signal's name). */
  exited: Promise<number | string>
  /** Resolves when the output contains `text`. */
  waitForOutput (text: string): Promise<void>
}

const children = new Set<ChildProcess>()

export function runCli (args: string[]): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', RUN_CLI, ...args], {
    cwd: ROOT,
    env: { ...process.env, NODE_ENV: 'test', AUTHGATE_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.add(child)
  let output = ''
  const waiters: Array<{ text: string, resolve: () => void }> = []
  const onData = (chunk: Buffer) => {
    output += chunk.toString()
    for (const waiter of waiters.splice(0)) {
      if (output.includes(waiter.text)) waiter.resolve()
      else waiters.push(waiter)
    }
  }
  child.stdout!.on('data', onData)
  child.stderr!.on('data', onData)
  const exited = new Promise<number | string>((resolvePromise) => {
    child.once('exit', (code, signal) => { children.delete(child); resolvePromise(code ?? signal ?? 'unknown') })
  })
  return {
    process: child,
    output: () => output,
    exited,
    waitForOutput (text) {
      if (output.includes(text)) return Promise.resolve()
      return new Promise((resolvePromise) => waiters.push({ text, resolve: resolvePromise }))
    },
  }
}

/** Kills every child still running: call from `test.after.always`. */
export function killChildren (): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
}

/** Polls until `url` answers 200 (there is no event for "listening" to await); fails at once when the process exits. */
export async function waitUntilServing (child: Child, url: string, timeoutMs = 90_000): Promise<void> {
  let exit: number | string | undefined
  void child.exited.then((code) => { exit = code })
  await until(async () => {
    if (exit !== undefined) throw new Error(`the gateway exited (${exit}) before serving:\n${child.output()}`)
    try { return (await fetch(url)).status === 200 } catch { return false } // not listening yet
  }, { timeoutMs, intervalMs: 100, message: `${url} to answer:\n${child.output()}` })
}
