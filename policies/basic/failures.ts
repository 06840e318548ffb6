import { StoreUnavailableError } from '../../gateway/errors.js'
import type { Logger } from '../../gateway/log.js'
import { clientKey } from '../../gateway/net.js'
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

/** Per client address: an IPv6 address counts as its /64 (clientKey), or one client would have 2^64 counters. */
export function ipKey (address: string): string {
  return `basic:fail:ip:${clientKey(address)}`
}

/** An attempt reserved before the hash check, or refused because a counter is exhausted. */
export type Reservation =
  | { readonly granted: true, release (): Promise<void> }
  | { readonly granted: false, readonly retryAfterMs: number }

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

  /**
   * Reserves one attempt for the user and for the address before the password is checked (DESIGN.md "Password
   * checks"): concurrent guesses cannot all see a count under the limit. Both counters go out together (one
   * pipelined round trip to Redis; one script per key, so it works on a Cluster too). When either is exhausted the
   * other's reservation is taken back and the answer is refused: a locked-out address cannot lock out the users it
   * names, and a locked-out user's attempts from elsewhere do not count against those addresses (as before: only
   * the exhausted counter counted an attempt made while locked out). A granted reservation stays counted as a
   * failure unless `release()` takes it back (success, or a check that never ran).
   */
  async reserve (username: string, address: string, limits: FailureLimits): Promise<Reservation> {
    const checks = [[userKey(username), limits.perUser], [ipKey(address), limits.perIp]] as const
    const { results, local } = await this.guard(
      async () => ({ results: await Promise.all(checks.map(([key, limit]) => this.store.reserve(key, limit, limits.windowMs))), local: false }),
      () => ({ results: checks.map(([key, limit]) => this.localReserve(key, limit, limits.windowMs)), local: true }))
    const granted = checks.filter((_check, i) => results[i]!.granted).map(([key]) => key)
    if (granted.length < checks.length) {
      await this.release(granted, local)
      return { granted: false, retryAfterMs: Math.max(...results.filter((r) => !r.granted).map((r) => r.resetMs)) }
    }
    let released = false
    return {
      granted: true,
      release: async () => {
        if (released) return
        released = true
        await this.release(granted, local)
      },
    }
  }

  /**
   * Best effort: a store failure here leaves the attempt counted until its window ends (the safe side), and the
   * request that already passed its check is not failed for it.
   */
  private async release (keys: readonly string[], local: boolean): Promise<void> {
    if (local) {
      for (const key of keys) this.localRelease(key)
      return
    }
    try {
      await Promise.all(keys.map(async (key) => await this.store.release(key)))
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error
      this.log.warn('store unavailable: a reserved Basic attempt stays counted until its window ends')
    }
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

  private localReserve (key: string, limit: number, windowMs: number): { granted: boolean, resetMs: number } {
    const entry = this.local.get(key)
    if (entry && entry.endsAt > this.now() && entry.count >= limit) return { granted: false, resetMs: entry.endsAt - this.now() }
    return { granted: true, resetMs: this.localIncrement(key, windowMs) }
  }

  private localRelease (key: string): void {
    const entry = this.local.get(key)
    if (entry && entry.count > 0) entry.count--
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
