/**
 * Summarizes a V8 CPU profile (`node --cpu-prof`): where the time goes, by component (self time) and by
 * function (self and inclusive time). `node --import tsx bench/profile.ts FILE.cpuprofile` prints it;
 * bench/run.ts --profile calls summarizeProfile().
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

interface CallFrame { readonly functionName: string, readonly url: string, readonly lineNumber: number }
interface ProfileNode { readonly id: number, readonly callFrame: CallFrame, readonly children?: readonly number[] }
export interface CpuProfile { readonly nodes: readonly ProfileNode[], readonly samples: readonly number[], readonly timeDeltas: readonly number[] }

/** The component a frame belongs to, by its script URL. */
export function component (frame: CallFrame): string {
  const { url, functionName } = frame
  if (functionName === '(garbage collector)') return 'GC'
  if (functionName === '(idle)') return 'idle'
  if (functionName === '(program)') return 'V8/native (program)'
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1]
  if (pkg) {
    if (pkg === 'pino' || pkg === 'sonic-boom' || pkg === 'fast-redact' || pkg === 'quick-format-unescaped' || pkg === 'safe-stable-stringify') return 'logging (pino)'
    if (pkg === 'ioredis' || pkg === 'redis-parser' || pkg === 'denque' || pkg === 'cluster-key-slot' || pkg === 'redis-errors' || pkg === 'standard-as-callback') return 'ioredis'
    if (pkg === 'prom-client' || pkg === 'tdigest' || pkg === 'bintrees') return 'metrics (prom-client)'
    return pkg
  }
  if (/\/gateway\//.test(url)) return 'authgate gateway/'
  if (/\/policies\//.test(url)) return 'authgate policies/'
  if (url.startsWith('node:')) {
    if (/_http_|node:http|internal\/http/.test(url)) return 'node http'
    if (/stream/.test(url)) return 'node streams'
    if (/net|tls|tcp|dns/.test(url)) return 'node net/tls'
    if (/crypto/.test(url)) return 'node crypto'
    if (/timers|process\/task_queues|async_hooks|promise/.test(url)) return 'node timers/microtasks'
    if (/events/.test(url)) return 'node events'
    return 'node other'
  }
  if (url === '') return 'V8/native builtins'
  return 'other'
}

const SYSCALL_LEAVES = new Set(['writev', 'writeLatin1String', 'writeUtf8String', 'writeString', 'writeBuffer', 'writeAsciiString', 'writeUcs2String', 'readv', 'read'])

/**
 * The part of the request a sample belongs to, from its stack (leaf first): what a reader wants to know
 * ("how much does the access log cost?") rather than which package the leaf function lives in.
 */
export function activity (stack: readonly CallFrame[]): string {
  const leaf = stack[0]!
  if (leaf.functionName === '(garbage collector)') return 'garbage collection'
  if (leaf.functionName === '(idle)') return 'idle'
  if (leaf.functionName === '(program)') return 'V8 and native, unattributed'
  const has = (re: RegExp) => stack.some((f) => re.test(f.url) || re.test(f.functionName))
  if (has(/gateway\/access-log|node_modules\/sonic-boom/)) return 'access log: building the line and writing it (access-log.ts, sonic-boom)'
  if (has(/node_modules\/(pino|@pinojs|fast-redact|quick-format)/)) return 'other log lines (pino)'
  if (has(/gateway\/(fast-)?metrics|node_modules\/prom-client/)) return 'metrics (metric-series.ts, prom-client)'
  if (has(/node_modules\/(ioredis|redis-parser|denque|cluster-key-slot)|gateway\/store\/|policies\/rate-limit\//)) return 'rate limit and Redis round trip (ioredis, store, limiter)'
  if (has(/policies\/api-key\//)) return 'API key check (parse, SHA-256, cache)'
  if (has(/policies\/(jwt|hmac|basic|mtls|scopes|claims)\//)) return 'other policies'
  if (SYSCALL_LEAVES.has(leaf.functionName) && leaf.url === '') return 'socket writes (system calls: response to the client, request to the upstream)'
  if (has(/gateway\/(server|chain|context|proxy|identity|router|log|respond|net)\b/)) return 'gateway core (JS: prepare, route, chain, headers, forward wrappers)'
  if (has(/node_modules\/undici/)) return 'undici (upstream client)'
  if (has(/^node:_http|node:http|internal\/http/)) return 'node http server'
  return 'node streams, events, microtasks, other'
}

function shortUrl (url: string): string {
  const i = url.search(/\/(gateway|policies|node_modules)\//)
  return i === -1 ? url : url.slice(i + 1)
}

export function summarizeProfile (profile: CpuProfile, top = 25, requests?: number): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  const key = (f: CallFrame) => `${f.functionName || '(anonymous)'} ${shortUrl(f.url)}${f.url ? `:${f.lineNumber + 1}` : ''}`

  const self = new Map<string, number>()
  const inclusive = new Map<string, number>()
  const components = new Map<string, number>()
  const activities = new Map<string, number>()
  let total = 0
  let idle = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0
    const node = byId.get(profile.samples[i]!)
    if (!node) continue
    total += dt
    const name = component(node.callFrame)
    if (name === 'idle') { idle += dt; continue }
    components.set(name, (components.get(name) ?? 0) + dt)
    const stack: CallFrame[] = []
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) stack.push(byId.get(id)!.callFrame)
    const what = activity(stack)
    activities.set(what, (activities.get(what) ?? 0) + dt)
    self.set(key(node.callFrame), (self.get(key(node.callFrame)) ?? 0) + dt)
    const seen = new Set<string>()
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const k = key(byId.get(id)!.callFrame)
      if (seen.has(k)) continue
      seen.add(k)
      inclusive.set(k, (inclusive.get(k) ?? 0) + dt)
    }
  }
  const busy = total - idle
  const pct = (n: number) => `${(n / busy * 100).toFixed(1).padStart(5)}%`
  const lines: string[] = []
  lines.push(`Profiled ${(total / 1e6).toFixed(1)} s, of which busy ${(busy / 1e6).toFixed(1)} s (${(busy / total * 100).toFixed(0)}%); shares below are of busy time.`)
  lines.push('', '## Where the time goes, by part of the request (a sample counts for the first part its stack names)', '')
  for (const [name, t] of [...activities].sort((a, b) => b[1] - a[1])) {
    lines.push(`- ${pct(t)}${requests ? `  ${(t / requests).toFixed(1).padStart(6)} µs/req` : ''}  ${name}`)
  }
  lines.push('', '## By component (self time)', '')
  for (const [name, t] of [...components].sort((a, b) => b[1] - a[1]).filter(([, t]) => t / busy >= 0.001)) lines.push(`- ${pct(t)}  ${name}`)
  lines.push('', `## Top ${top} functions by self time`, '')
  for (const [name, t] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`- ${pct(t)}  ${name}`)
  lines.push('', '## authgate functions by inclusive time (self + what they call)', '')
  const ours = [...inclusive].filter(([name]) => / (gateway|policies)\//.test(name)).sort((a, b) => b[1] - a[1]).slice(0, top)
  for (const [name, t] of ours) lines.push(`- ${pct(t)}  ${name}`)
  return lines.join('\n') + '\n'
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = process.argv[2]
  if (!file) { console.error('usage: node --import tsx bench/profile.ts FILE.cpuprofile'); process.exit(2) }
  console.log(summarizeProfile(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile))
}
