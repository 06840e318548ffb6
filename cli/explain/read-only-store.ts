/** The store explain reads through: lookups reach the real store, writes are skipped and listed. */
import { evaluateGcra } from '../../gateway/store/index.js'
import type { GcraCheck, GcraResult, Store } from '../../gateway/store/types.js'

/**
 * Reads go to the real store; writes are skipped and recorded. `setIfAbsent` answers as SET NX would without
 * setting (a nonce already stored is a replay), `rateLimit` evaluates GCRA on the stored state without spending,
 * `increment` and `reserve` report the count the request would reach.
 */
export class ReadOnlyStore implements Store {
  readonly skipped: string[] = []
  /** Lookups made, to tell whether the store mattered to the decision. */
  reads = 0

  constructor (private readonly inner: Store) {}

  get kind () { return this.inner.kind }
  get healthy () { return this.inner.healthy }

  get (key: string) { this.reads++; return this.inner.get(key) }
  getHash (key: string) { this.reads++; return this.inner.getHash(key) }
  members (key: string) { this.reads++; return this.inner.members(key) }
  ping () { return this.inner.ping() }
  subscribe (channel: string, handler: (message: string) => void) { return this.inner.subscribe(channel, handler) }
  close () { return this.inner.close() }

  async set (_key: string, _value: string, _ttlMs?: number) { this.note('set') }
  async delete (_key: string) { this.note('delete') }
  async setHash (_key: string, _fields: Readonly<Record<string, string>>, _ttlMs?: number) { this.note('setHash') }
  async addToSet (_key: string, _member: string) { this.note('addToSet') }
  async removeFromSet (_key: string, _member: string) { this.note('removeFromSet') }
  async publish (_channel: string, _message: string) { this.note('publish') }

  async setIfAbsent (key: string, _value: string, _ttlMs: number): Promise<boolean> {
    this.note('setIfAbsent (replay nonce)')
    return (await this.inner.get(key)) === null
  }

  async increment (key: string, windowMs: number): Promise<{ count: number, resetMs: number }> {
    this.note('increment (attempt counter)')
    const current = Number(await this.inner.get(key))
    return { count: (Number.isFinite(current) ? current : 0) + 1, resetMs: windowMs }
  }

  async reserve (key: string, limit: number, windowMs: number): Promise<{ granted: boolean, count: number, resetMs: number }> {
    this.note('reserve (attempt counter)')
    const stored = Number(await this.inner.get(key))
    const current = Number.isFinite(stored) ? stored : 0
    return current >= limit ? { granted: false, count: current, resetMs: windowMs } : { granted: true, count: current + 1, resetMs: windowMs }
  }

  async release (_key: string) { this.note('release (attempt counter)') }
  async renewOrReleaseIfHeld (_key: string, _owner: string, _ttlMs: number) { this.note('renewOrReleaseIfHeld (lock lease)'); return false }

  async rateLimit (checks: readonly GcraCheck[]): Promise<GcraResult[]> {
    this.note('rateLimit (token not spent)')
    const now = Date.now()
    const results: GcraResult[] = []
    for (const check of checks) {
      const stored = await this.inner.get(check.key)
      const tat = stored === null ? undefined : Number(stored)
      results.push(evaluateGcra(tat !== undefined && Number.isFinite(tat) ? tat : undefined, now, check).result)
    }
    return results
  }

  private note (what: string): void {
    if (!this.skipped.includes(what)) this.skipped.push(what)
  }
}

