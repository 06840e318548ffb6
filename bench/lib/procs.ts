/**
 * Child processes of the benchmark: spawning Node scripts (through tsx) with an IPC channel, optional CPU
 * pinning, CPU time and RSS from /proc, free loopback ports, and cleanup when the benchmark exits.
 */
import { spawn, execFileSync, type ChildProcess, type StdioOptions } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const BENCH_DIR = fileURLToPath(new URL('..', import.meta.url))
export const ROOT_DIR = fileURLToPath(new URL('../..', import.meta.url))

const children = new Set<ChildProcess>()
process.once('exit', () => { for (const child of children) child.kill('SIGKILL') })
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    for (const child of children) child.kill('SIGKILL')
    process.exit(130)
  })
}

export interface SpawnOptions {
  /** Extra node flags (before the script), e.g. --cpu-prof. */
  readonly nodeArgs?: readonly string[]
  readonly env?: Record<string, string>
  /** Pin to these CPUs (taskset -c). */
  readonly cpus?: string | undefined
  /** Where stdout goes: 'ignore' (default) or 'pipe'. */
  readonly stdout?: 'ignore' | 'pipe' | number
  /** Run from this compiled copy instead of the default one (--compare). */
  readonly buildDir?: string
}

let buildDir: string | undefined

/** Children run from this compiled copy of the sources (lib/build.ts) instead of through tsx. */
export function useBuild (dir: string | undefined): void {
  buildDir = dir
}

/**
 * `node SCRIPT ...args` with an IPC channel: SCRIPT (relative to the repository, e.g. `bench/upstream.ts`) runs
 * from the compiled copy when there is one, else through tsx. stderr is kept (last 8 KiB) for error messages.
 */
export function spawnNode (script: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess & { stderrText (): string } {
  const dir = options.buildDir ?? buildDir
  const entry = dir ? [join(dir, script.replace(/\.ts$/, '.js'))] : ['--import', 'tsx', join(ROOT_DIR, script)]
  const nodeArgs = [...options.nodeArgs ?? [], ...entry, ...args]
  return spawnTracked(process.execPath, nodeArgs, { ...options, ipc: true })
}

/**
 * Any program (e.g. nginx), pinned with taskset when `cpus` is given, killed when the benchmark exits; stderr is
 * kept (last 8 KiB) for error messages. With `ipc`, an IPC channel (Node children).
 */
export function spawnTracked (program: string, args: readonly string[], options: SpawnOptions & { readonly ipc?: boolean } = {}): ChildProcess & { stderrText (): string } {
  const [command, commandArgs] = options.cpus !== undefined
    ? ['taskset', ['-c', options.cpus, program, ...args]]
    : [program, [...args]]
  const stdio: StdioOptions = ['ignore', options.stdout ?? 'ignore', 'pipe', ...(options.ipc ? ['ipc' as const] : [])]
  const child = spawn(command, commandArgs, { cwd: ROOT_DIR, stdio, env: { ...process.env, ...options.env } })
  children.add(child)
  child.once('exit', () => children.delete(child))
  let stderr = ''
  child.stderr!.on('data', (chunk: Buffer) => { stderr = (stderr + chunk.toString()).slice(-8192) })
  return Object.assign(child, { stderrText: () => stderr })
}

/** Resolves with the first IPC message that has `key`; rejects if the child exits or the time passes. */
export function waitForMessage<T> (child: ChildProcess & { stderrText (): string }, key: string, timeoutMs = 60_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { cleanup(); reject(new Error(`no "${key}" from child ${child.pid} within ${timeoutMs} ms\n${child.stderrText()}`)) }, timeoutMs)
    const onMessage = (message: Record<string, unknown>) => {
      if (message && typeof message === 'object' && key in message) { cleanup(); resolve(message as T) }
    }
    const onExit = (code: number | null, signal: string | null) => {
      cleanup()
      reject(new Error(`child ${child.pid} exited (${signal ?? code}) before sending "${key}"\n${child.stderrText()}`))
    }
    const cleanup = () => { clearTimeout(timer); child.off('message', onMessage); child.off('exit', onExit) }
    child.on('message', onMessage)
    child.once('exit', onExit)
  })
}

/** Sends SIGTERM and waits for the exit (SIGKILL after `graceMs`). */
export function stopChild (child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), graceMs)
    child.once('exit', () => { clearTimeout(force); resolve() })
    child.kill('SIGTERM')
  })
}

/** A port the OS just handed out on 127.0.0.1. */
export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port. */
export async function waitForPort (port: number, child: ChildProcess & { stderrText (): string }, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`process ${child.pid} exited (${child.signalCode ?? child.exitCode}) before listening on ${port}\n${child.stderrText()}`)
    }
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port })
      socket.once('connect', () => { socket.destroy(); resolve(true) })
      socket.once('error', () => resolve(false))
    })
    if (open) return
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms\n${child.stderrText()}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

let clockTicks: number | undefined

/** Clock ticks per second of /proc's utime/stime (usually 100). */
export function ticksPerSecond (): number {
  if (clockTicks === undefined) {
    try { clockTicks = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100 } catch { clockTicks = 100 }
  }
  return clockTicks
}

interface ProcStat { readonly ppid: number, readonly ticks: number, readonly userTicks: number }

function readStat (pid: number): ProcStat | undefined {
  let text: string
  try { text = readFileSync(`/proc/${pid}/stat`, 'utf8') } catch { return undefined }
  // Field 2 (comm) may contain spaces and parentheses: split after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  // fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
  return { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]), userTicks: Number(fields[11]) }
}

/** The pid and its direct children (node:cluster workers). */
export function processTree (pid: number): number[] {
  const pids = [pid]
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const stat = readStat(Number(entry))
    if (stat?.ppid === pid) pids.push(Number(entry))
  }
  return pids
}

/** User + system CPU time in microseconds of these processes (those that exited since are left out). */
export function cpuMicros (pids: readonly number[]): number {
  let ticks = 0
  for (const pid of pids) ticks += readStat(pid)?.ticks ?? 0
  return ticks * 1_000_000 / ticksPerSecond()
}

/** User-mode CPU time in microseconds (the rest of cpuMicros is kernel time: system calls, network stack). */
export function userCpuMicros (pids: readonly number[]): number {
  let ticks = 0
  for (const pid of pids) ticks += readStat(pid)?.userTicks ?? 0
  return ticks * 1_000_000 / ticksPerSecond()
}

/** Resident set size in bytes (VmRSS), summed over the pids. */
export function rssBytes (pids: readonly number[]): number {
  let total = 0
  for (const pid of pids) {
    try {
      const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
      if (match) total += Number(match[1]) * 1024
    } catch {}
  }
  return total
}

/** read(2)/write(2)-family system calls made so far (/proc/PID/io syscr, syscw), summed over the pids. */
export function syscalls (pids: readonly number[]): { read: number, write: number } {
  let read = 0
  let write = 0
  for (const pid of pids) {
    try {
      const text = readFileSync(`/proc/${pid}/io`, 'utf8')
      read += Number(/syscr: (\d+)/.exec(text)?.[1] ?? 0)
      write += Number(/syscw: (\d+)/.exec(text)?.[1] ?? 0)
    } catch {}
  }
  return { read, write }
}
