import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import type { ScryptOptions } from 'node:crypto'

/** What a worker is asked: one password against one hash (the dummy for unknown users). */
export interface CheckRequest {
  readonly password: string
  readonly hash:
    | { readonly kind: 'bcrypt', readonly text: string }
    | { readonly kind: 'scrypt', readonly salt: Uint8Array, readonly hash: Uint8Array, readonly options: ScryptOptions }
}
export type CheckReply = { readonly ok: boolean } | { readonly error: string }

/**
 * A check refused at once, and the caller answers 429 with `Retry-After: 1`: every worker is busy and the queue is full
 * (`pool`), or the client already has its share of the pool in progress (`client`).
 */
export class PoolFullError extends Error {
  constructor (readonly scope: 'pool' | 'client' = 'pool') {
    super(scope === 'pool' ? 'too many password checks in progress' : 'too many password checks in progress for this client')
    this.name = 'PoolFullError'
  }
}

/** One client's place in the pool (PasswordPool.admit), held until `release()` (idempotent). */
export interface Place {
  release (): void
}

interface Job {
  readonly request: CheckRequest
  resolve (ok: boolean): void
  reject (error: Error): void
}

/** Queued checks allowed per worker: a short queue (about 4 hash times of waiting), then 429. */
export const QUEUE_PER_WORKER = 4

/**
 * Checks one client may have in progress at once: a quarter of what the pool holds (workers + queue), at least 2.
 * One client alone never fills the pool, so other clients' checks are still queued (and wait at most about a
 * quarter of the pool's hash times behind it). With the default queue that is max(2, ceil(1.25 × concurrency)).
 */
export function clientShareOf (concurrency: number, queueSize: number): number {
  return Math.max(2, Math.ceil((concurrency + queueSize) / 4))
}

/**
 * From dist/ the worker is password-worker.js. Under tsx (tests, benchmarks) this module is TypeScript and so is the
 * worker, but a worker thread does not inherit tsx's loader hooks (an inherited `--import tsx` is not enough on
 * Node 20): a two-line bootstrap registers tsx in the worker, then imports the worker module.
 */
function startWorker (): Worker {
  const source = import.meta.url.endsWith('.ts')
  const url = new URL(source ? './password-worker.ts' : './password-worker.js', import.meta.url)
  if (!source) return new Worker(url)
  const tsx = import.meta.resolve('tsx/esm/api')
  return new Worker(`import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(url.href)}) })`, { eval: true })
}

/**
 * bcrypt/scrypt on worker threads, so password checks never block the event loop (DESIGN.md "Password checks").
 * At most `concurrency` checks run at once (one per worker, started on first use); up to `queueSize` more wait;
 * beyond that `check` rejects with PoolFullError at once. Idle workers are unref'd (they never keep the process
 * alive), busy ones are ref'd (a pending check does); close() terminates them.
 *
 * Fairness: a caller first takes a place for its client (`admit`, keyed by clientKey of the address) and holds it
 * until its check has ended; a client holds at most `clientShare` places, so one client cannot fill the workers and
 * the queue and leave every other client a 429.
 */
export class PasswordPool {
  readonly concurrency: number
  readonly queueSize: number
  readonly clientShare: number
  readonly #idle: Worker[] = []
  readonly #busy = new Map<Worker, Job>()
  readonly #queue: Job[] = []
  /** Places held per client; an entry exists only while its count is above 0 (so at most one per pending check). */
  readonly #places = new Map<string, number>()
  #closed = false

  constructor (concurrency = availableParallelism(), queueSize = QUEUE_PER_WORKER * concurrency, clientShare = clientShareOf(concurrency, queueSize)) {
    if (!Number.isSafeInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be an integer >= 1, got ${concurrency}`)
    if (!Number.isSafeInteger(clientShare) || clientShare < 1) throw new RangeError(`clientShare must be an integer >= 1, got ${clientShare}`)
    this.concurrency = concurrency
    this.queueSize = queueSize
    this.clientShare = clientShare
  }

  /** True when a new check would be refused: every worker busy and the queue full. */
  get saturated (): boolean {
    return this.#busy.size >= this.concurrency && this.#queue.length >= this.queueSize
  }

  /**
   * A place for one check of `client`, or the PoolFullError to answer with: `pool` when saturated, `client` when the
   * client already holds `clientShare` places. Release it when the check has ended (or was never started).
   */
  admit (client: string): Place | PoolFullError {
    if (this.saturated) return new PoolFullError('pool')
    const held = this.#places.get(client) ?? 0
    if (held >= this.clientShare) return new PoolFullError('client')
    this.#places.set(client, held + 1)
    let released = false
    return {
      release: () => {
        if (released) return
        released = true
        const left = (this.#places.get(client) ?? 1) - 1
        if (left > 0) this.#places.set(client, left)
        else this.#places.delete(client)
      },
    }
  }

  /** Places `client` holds (for tests). */
  placesOf (client: string): number {
    return this.#places.get(client) ?? 0
  }

  /** Checks in progress and waiting (for tests and metrics). */
  get pending (): number {
    return this.#busy.size + this.#queue.length
  }

  /** Resolves with whether the password matches; rejects with PoolFullError when saturated. */
  check (request: CheckRequest): Promise<boolean> {
    if (this.#closed) return Promise.reject(new Error('password pool is closed'))
    if (this.saturated) return Promise.reject(new PoolFullError())
    return new Promise<boolean>((resolve, reject) => {
      const job = { request, resolve, reject }
      const worker = this.#idle.pop() ?? (this.#busy.size < this.concurrency ? this.#spawn() : undefined)
      if (worker) this.#run(worker, job)
      else this.#queue.push(job)
    })
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const closed = new Error('password pool is closed')
    for (const job of this.#queue.splice(0)) job.reject(closed)
    const workers = [...this.#idle.splice(0), ...this.#busy.keys()]
    for (const job of this.#busy.values()) job.reject(closed)
    this.#busy.clear()
    await Promise.all(workers.map(async (worker) => await worker.terminate()))
  }

  #spawn (): Worker {
    const worker = startWorker()
    worker.on('message', (reply: CheckReply) => {
      const job = this.#busy.get(worker)
      if (!job) return
      this.#busy.delete(worker)
      if ('ok' in reply) job.resolve(reply.ok)
      else job.reject(new Error(`password check failed in the worker (${reply.error})`))
      this.#next(worker)
    })
    let gone = false
    const lost = (error: Error) => {
      if (gone) return // 'error' is followed by 'exit'
      gone = true
      const job = this.#busy.get(worker)
      this.#busy.delete(worker)
      const at = this.#idle.indexOf(worker)
      if (at >= 0) this.#idle.splice(at, 1)
      job?.reject(error)
      // A replacement takes the next waiting check, if any.
      if (!this.#closed && this.#queue.length > 0) this.#run(this.#spawn(), this.#queue.shift()!)
    }
    worker.on('error', lost)
    worker.on('exit', (code) => { if (!this.#closed) lost(new Error(`password worker exited (code ${code})`)) })
    return worker
  }

  #run (worker: Worker, job: Job): void {
    this.#busy.set(worker, job)
    worker.ref()
    worker.postMessage(job.request)
  }

  #next (worker: Worker): void {
    const job = this.#queue.shift()
    if (job) { this.#run(worker, job); return }
    worker.unref()
    this.#idle.push(worker)
  }
}

const shared = new Map<number, { readonly pool: PasswordPool, holders: number }>()

/**
 * The process's pool of this size, shared by every basic route and every config generation that asks for it: a
 * reload keeps the warm workers, and the bound holds for the process. Each `release()` (idempotent) drops one
 * holder; the last one closes the pool.
 */
export function acquirePool (concurrency: number): { readonly pool: PasswordPool, release (): Promise<void> } {
  let entry = shared.get(concurrency)
  if (!entry) shared.set(concurrency, entry = { pool: new PasswordPool(concurrency), holders: 0 })
  const held = entry
  held.holders++
  let released = false
  return {
    pool: held.pool,
    async release () {
      if (released) return
      released = true
      if (--held.holders > 0) return
      if (shared.get(concurrency) === held) shared.delete(concurrency)
      await held.pool.close()
    },
  }
}
