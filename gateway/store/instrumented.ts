import { StoreUnavailableError } from '../errors.js'
import type { Metrics } from '../metrics.js'
import type { GcraCheck, GcraResult, Store } from './types.js'

/**
 * The store as policies see it: every call timed into `authgate_store_duration_seconds{op}` and every failure
 * counted in `authgate_store_errors_total`, including failures a policy handles itself (onError: allow).
 */
export class InstrumentedStore implements Store {
  constructor (private readonly inner: Store, private readonly metrics: Metrics) {}

  get kind () { return this.inner.kind }
  get healthy () { return this.inner.healthy }

  private async timed<T> (op: string, call: () => Promise<T>): Promise<T> {
    const started = performance.now()
    try {
      return await call()
    } catch (error) {
      if (error instanceof StoreUnavailableError) this.metrics.storeErrors.inc()
      throw error
    } finally {
      this.metrics.storeDuration.observe({ op }, (performance.now() - started) / 1000)
    }
  }

  get (key: string) { return this.timed('get', () => this.inner.get(key)) }
  set (key: string, value: string, ttlMs?: number) { return this.timed('set', () => this.inner.set(key, value, ttlMs)) }
  setIfAbsent (key: string, value: string, ttlMs: number) { return this.timed('setIfAbsent', () => this.inner.setIfAbsent(key, value, ttlMs)) }
  delete (key: string) { return this.timed('delete', () => this.inner.delete(key)) }
  getHash (key: string) { return this.timed('getHash', () => this.inner.getHash(key)) }
  setHash (key: string, fields: Readonly<Record<string, string>>, ttlMs?: number) { return this.timed('setHash', () => this.inner.setHash(key, fields, ttlMs)) }
  addToSet (key: string, member: string) { return this.timed('addToSet', () => this.inner.addToSet(key, member)) }
  removeFromSet (key: string, member: string) { return this.timed('removeFromSet', () => this.inner.removeFromSet(key, member)) }
  members (key: string) { return this.timed('members', () => this.inner.members(key)) }
  increment (key: string, windowMs: number) { return this.timed('increment', () => this.inner.increment(key, windowMs)) }
  reserve (key: string, limit: number, windowMs: number) { return this.timed('reserve', () => this.inner.reserve(key, limit, windowMs)) }
  renewOrReleaseIfHeld (key: string, owner: string, ttlMs: number) { return this.timed('lease', () => this.inner.renewOrReleaseIfHeld(key, owner, ttlMs)) }
  release (key: string) { return this.timed('release', () => this.inner.release(key)) }
  rateLimit (checks: readonly GcraCheck[]): Promise<GcraResult[]> { return this.timed('rateLimit', () => this.inner.rateLimit(checks)) }
  publish (channel: string, message: string) { return this.timed('publish', () => this.inner.publish(channel, message)) }
  subscribe (channel: string, handler: (message: string) => void) { return this.inner.subscribe(channel, handler) }
  ping () { return this.timed('ping', () => this.inner.ping()) }
  close () { return this.inner.close() }
}
