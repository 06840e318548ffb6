/**
 * With `workers: N` every worker answers for itself; what the admin listener shows (/metrics, the console's traffic)
 * must be the sum over all of them, whichever worker answers. The worker that is asked sends a `collect` to the
 * primary; the primary asks every connected worker for its `report` of that kind and hands the list back. The
 * primary keeps no data of its own. Outside a cluster (`workers: 1`, tests) collect() is the local report alone.
 *
 * The same channel carries `broadcast`s: a message the primary relays to every worker (a console sign-out).
 */
import cluster, { type Worker } from 'node:cluster'

const TAG = 'authgate:cluster'
/** A worker that does not answer within this time (starting, stuck) is left out of the sum. */
const REPORT_TIMEOUT_MS = 1_500

type Message =
  | { tag: typeof TAG, op: 'collect', id: number, kind: string }
  | { tag: typeof TAG, op: 'report', id: number, kind: string }
  | { tag: typeof TAG, op: 'reported', id: number, data: unknown }
  | { tag: typeof TAG, op: 'collected', id: number, data: unknown[] }
  | { tag: typeof TAG, op: 'broadcast', kind: string, data: unknown }

function isMessage (message: unknown): message is Message {
  return typeof message === 'object' && message !== null && (message as { tag?: unknown }).tag === TAG
}

function ignoreSendError (): void {}

/** One worker's side of the channel (also used, without a cluster, by a single process). */
export class ClusterLink {
  private readonly reporters = new Map<string, () => unknown>()
  private readonly listeners = new Map<string, Set<(data: unknown) => void>>()
  private readonly pending = new Map<number, (data: unknown[]) => void>()
  private nextId = 0
  private readonly onMessage = (message: unknown): void => { void this.handle(message) }
  readonly clustered = cluster.isWorker && typeof process.send === 'function'

  constructor () {
    if (this.clustered) process.on('message', this.onMessage)
  }

  /** What this process answers when the data of `kind` is collected. */
  report (kind: string, reporter: () => unknown): void { this.reporters.set(kind, reporter) }

  /** Called with the data of every broadcast of `kind` (this process's own included). */
  on (kind: string, listener: (data: unknown) => void): void {
    let set = this.listeners.get(kind)
    if (!set) this.listeners.set(kind, set = new Set())
    set.add(listener)
  }

  /** The reports of every worker (this one's included); a worker that does not answer in time is missing. */
  async collect (kind: string): Promise<unknown[]> {
    if (!this.clustered) return [await this.reporters.get(kind)?.()].filter((d) => d !== undefined)
    const id = this.nextId++
    return await new Promise<unknown[]>((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        // The primary did not answer (it is going away): this worker's own report at least.
        Promise.resolve(this.reporters.get(kind)?.()).then((own) => resolve(own === undefined ? [] : [own]), () => resolve([]))
      }, REPORT_TIMEOUT_MS * 2)
      timer.unref()
      this.pending.set(id, (data) => { clearTimeout(timer); resolve(data) })
      process.send!({ tag: TAG, op: 'collect', id, kind } satisfies Message, undefined, {}, ignoreSendError)
    })
  }

  /** Sends `data` to every worker (through the primary), this one included. */
  broadcast (kind: string, data: unknown): void {
    if (!this.clustered) { this.deliver(kind, data); return }
    process.send!({ tag: TAG, op: 'broadcast', kind, data } satisfies Message, undefined, {}, ignoreSendError)
  }

  close (): void {
    if (this.clustered) process.off('message', this.onMessage)
    for (const resolve of this.pending.values()) resolve([])
    this.pending.clear()
  }

  private deliver (kind: string, data: unknown): void {
    for (const listener of this.listeners.get(kind) ?? []) listener(data)
  }

  private async handle (message: unknown): Promise<void> {
    if (!isMessage(message)) return
    if (message.op === 'report') {
      let data: unknown = null
      try { data = (await this.reporters.get(message.kind)?.()) ?? null } catch { data = null }
      process.send?.({ tag: TAG, op: 'reported', id: message.id, data } satisfies Message, undefined, {}, ignoreSendError)
    } else if (message.op === 'collected') {
      const resolve = this.pending.get(message.id)
      this.pending.delete(message.id)
      resolve?.(message.data.filter((d) => d !== null))
    } else if (message.op === 'broadcast') {
      this.deliver(message.kind, message.data)
    }
  }
}

/** The primary's side: relays collects and broadcasts between workers. Call once in the primary. */
export function relayBetweenWorkers (): void {
  let nextId = 0
  const waiting = new Map<number, { replies: unknown[], expected: number, done: () => void }>()
  const workers = (): Worker[] => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected())
  cluster.on('message', (from, message: unknown) => {
    if (!isMessage(message)) return
    if (message.op === 'broadcast') {
      for (const worker of workers()) worker.send(message, undefined, ignoreSendError)
    } else if (message.op === 'collect') {
      const id = nextId++
      const asked = workers()
      const entry = {
        replies: [] as unknown[],
        expected: asked.length,
        done: () => {
          if (!waiting.delete(id)) return
          clearTimeout(timer)
          if (from.isConnected()) from.send({ tag: TAG, op: 'collected', id: message.id, data: entry.replies } satisfies Message, undefined, ignoreSendError)
        },
      }
      const timer = setTimeout(entry.done, REPORT_TIMEOUT_MS)
      waiting.set(id, entry)
      for (const worker of asked) {
        worker.send({ tag: TAG, op: 'report', id, kind: message.kind } satisfies Message, undefined, (error: Error | null) => {
          if (error) { entry.expected--; if (entry.replies.length >= entry.expected) entry.done() }
        })
      }
      if (asked.length === 0) entry.done()
    } else if (message.op === 'reported') {
      const entry = waiting.get(message.id)
      if (!entry) return
      entry.replies.push(message.data)
      if (entry.replies.length >= entry.expected) entry.done()
    }
  })
}
