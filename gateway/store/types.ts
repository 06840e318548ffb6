/**
 * The shared-state contract. Two implementations with the same semantics:
 * `memory` (one instance, nothing to install) and `redis` (ioredis: single node,
 * Sentinel or Cluster). Keys given here are unprefixed; the store adds `store.prefix`.
 *
 * Every method may reject with StoreUnavailableError (gateway/errors.ts) when the
 * backend fails or does not answer within the store timeout; none ever hangs.
 */

export interface GcraCheck {
  /** Unprefixed key. In Redis Cluster all checks of one call must share a hash tag, e.g. `rl:{route}:client:x`. */
  readonly key: string
  /** Time between two conforming requests at the sustained rate: window / count. */
  readonly emissionIntervalMs: number
  /** Requests that may pass at once from a full bucket (DESIGN.md: default = the limit's count). */
  readonly burst: number
  /** Cost of this request, default 1. */
  readonly cost?: number
  /**
   * Take up to this many cells at once (a lease, integer >= 1): the check passes when `cost` cells conform now and
   * then takes min(upTo, cells that conform now), never fewer than `cost`. The result's `granted` says how many.
   * Absent: exactly `cost`, as before.
   */
  readonly upTo?: number
}

export interface GcraResult {
  readonly allowed: boolean
  /** Requests that would pass right now after this one (RateLimit `r`). */
  readonly remaining: number
  /** Milliseconds until the full burst is available again (RateLimit `t`). */
  readonly resetMs: number
  /** When not allowed: milliseconds until a request of this cost would pass (Retry-After). 0 when allowed. */
  readonly retryAfterMs: number
  /**
   * Only for a check with `upTo`: cells taken (what the check would take when another check of the call refused it;
   * nothing is written then). 0 when this check is refused.
   */
  readonly granted?: number
}

export interface Store {
  readonly kind: 'memory' | 'redis'

  get (key: string): Promise<string | null>
  /** ttlMs undefined: no expiry. */
  set (key: string, value: string, ttlMs?: number): Promise<void>
  /** SET NX PX: true when this call created the key (replay nonces, single-flight). */
  setIfAbsent (key: string, value: string, ttlMs: number): Promise<boolean>
  delete (key: string): Promise<void>
  /**
   * A lock's lease, atomically: while `key` holds `owner`, give it a new TTL (`ttlMs`) or delete it (`ttlMs` 0).
   * False when another owner holds it or it expired: a lease that lapsed is never renewed over someone else's.
   */
  renewOrReleaseIfHeld (key: string, owner: string, ttlMs: number): Promise<boolean>

  /** Records (API keys): a flat string map. */
  getHash (key: string): Promise<Record<string, string> | null>
  setHash (key: string, fields: Readonly<Record<string, string>>, ttlMs?: number): Promise<void>

  /** Indexes (list of API key ids). */
  addToSet (key: string, member: string): Promise<void>
  removeFromSet (key: string, member: string): Promise<void>
  members (key: string): Promise<string[]>

  /** Fixed-window counter (failed-attempt limits): increments, returns the new count and ms until the window ends. */
  increment (key: string, windowMs: number): Promise<{ count: number, resetMs: number }>

  /**
   * Reserves one attempt in a fixed-window counter, atomically (failed-attempt limits counted before the work):
   * below `limit` the count goes up by one (the first reservation starts a window of `windowMs`) and `granted` is
   * true; at `limit` nothing changes and `granted` is false. Concurrent calls never take the count past `limit`.
   * `count` is the count after the call; `resetMs` the ms until the window ends.
   */
  reserve (key: string, limit: number, windowMs: number): Promise<{ granted: boolean, count: number, resetMs: number }>
  /** Takes one reservation back: decrements an existing counter (deleted at 0); never creates or extends a window. */
  release (key: string): Promise<void>

  /**
   * GCRA for all limits of one request in one atomic step (one Lua script in Redis).
   * When any check fails, no check's state is changed (a rejected request costs nothing).
   * A check with `upTo` takes as many cells as conform now, up to `upTo` (rate-limit leases, policies/rate-limit).
   */
  rateLimit (checks: readonly GcraCheck[]): Promise<GcraResult[]>

  /** Pub/sub across instances (revocations). The memory store delivers within the process. */
  publish (channel: string, message: string): Promise<void>
  /** Returns an unsubscribe function. Messages published before subscribe are not delivered. */
  subscribe (channel: string, handler: (message: string) => void): () => void

  /** Resolves when the backend answers; rejects with StoreUnavailableError otherwise. */
  ping (): Promise<void>
  /** Last known health, for /readyz without a round trip. */
  readonly healthy: boolean
  close (): Promise<void>
}
