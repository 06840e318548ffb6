import { StoreUnavailableError } from '../../gateway/errors.js'
import type { Logger } from '../../gateway/log.js'
import type { Store } from '../../gateway/store/types.js'

export interface FailureLimits {
  readonly perUser: number
  readonly perIp: number
  readonly windowMs: number
}

/** Store keys of the counters (fixed windows, shared by every instance and every basic route). */
export function userKey (username: string): string {
  return `basic:fail:user:${encodeURIComponent(username)}`
}

export function ipKey (address: string): string {
  return `basic:fail:ip:${address}`
}

/**
 * Failed Basic attempts per username and per client IP, counted in the store so guessing is slow across
 * instances. With `store.onError: allow`, a failing store falls back to per-instance counters; with `deny`
 * the StoreUnavailableError propagates (503).
 */
export class FailureCounters {
  private readonly local = new Map<string, { count: number, endsAt: number }>()
  private warned = false

  constructor (private readonly store: Store, private readonly onError: 'deny' | 'allow', private readonly log: Logger,
    private readonly now: () => number = Date.now) {}

  /** Milliseconds until the window of an exhausted counter ends, or undefined when neither limit is reached. */
  async lockedFor (username: string, address: string, limits: FailureLimits): Promise<number | undefined> {
    const keys = [userKey(username), ipKey(address)] as const
    const counts = await this.guard(() => Promise.all(keys.map(async (k) => Number(await this.store.get(k) ?? 0))),
      () => keys.map((k) => this.localCount(k)))
    const exhausted = keys.filter((_k, i) => counts[i]! >= (i === 0 ? limits.perUser : limits.perIp))
    if (exhausted.length === 0) return undefined
    // An attempt while locked out is a failure too; counting it also tells when the window ends.
    const resets = await Promise.all(exhausted.map((k) => this.increment(k, limits.windowMs)))
    return Math.max(...resets)
  }

  /** Counts one failed attempt for the user and for the address. */
  async record (username: string, address: string, limits: FailureLimits): Promise<void> {
    await Promise.all([this.increment(userKey(username), limits.windowMs), this.increment(ipKey(address), limits.windowMs)])
  }

  private async increment (key: string, windowMs: number): Promise<number> {
    return await this.guard(async () => (await this.store.increment(key, windowMs)).resetMs, () => this.localIncrement(key, windowMs))
  }

  private async guard<T> (remote: () => Promise<T>, fallback: () => T): Promise<T> {
    try {
      const result = await remote()
      this.warned = false
      return result
    } catch (error) {
      if (!(error instanceof StoreUnavailableError) || this.onError !== 'allow') throw error
      if (!this.warned) this.log.warn('store unavailable: counting failed Basic attempts per instance (store.onError: allow)')
      this.warned = true
      return fallback()
    }
  }

  private localCount (key: string): number {
    const entry = this.local.get(key)
    return entry && entry.endsAt > this.now() ? entry.count : 0
  }

  private localIncrement (key: string, windowMs: number): number {
    const now = this.now()
    let entry = this.local.get(key)
    if (!entry || entry.endsAt <= now) {
      if (this.local.size >= 10_000) {
        for (const [k, e] of this.local) if (e.endsAt <= now) this.local.delete(k)
        if (this.local.size >= 10_000) this.local.delete(this.local.keys().next().value!)
      }
      entry = { count: 0, endsAt: now + windowMs }
      this.local.set(key, entry)
    }
    entry.count++
    return entry.endsAt - now
  }
}
