import type { GcraCheck, GcraResult } from '../../gateway/store/types.js'

/**
 * How long leased cells may be spent after the store charged them; what is left then is dropped, never returned.
 * Every admitted request is charged in the store before it is spent, so over a window from a rested counter no
 * more pass than GCRA allows. A cell spent late would count in a later sliding window than the one that paid for
 * it: 1 s bounds that shift to below the shortest window a rate can name (`/sec`), and is long enough that a key
 * busy enough to lease (a next lease within 250 ms) spends its stock well before it expires.
 */
export const LEASE_LIFETIME_MS = 1000
/** A key that needs its next lease sooner than this after the last one doubles its lease. */
const GROW_WITHIN_MS = LEASE_LIFETIME_MS / 4
/** A key whose lease lasted longer than this halves it (a cold key, one with no lease alive, starts at 1). */
const SHRINK_AFTER_MS = LEASE_LIFETIME_MS / 2
/** One lease never holds more than this share of the burst, so a small burst is never held by one instance. */
const BURST_SHARE = 10
const EPSILON = 1e-6

/** One limit of a request: its store check (without upTo) and the configured `lease`. */
export interface LeasedLimit {
  readonly check: GcraCheck
  readonly lease: number
}

/** One limit as this request sees it, for its RateLimit headers (the store's GcraResult shape). */
export interface LimitView {
  readonly allowed: boolean
  readonly remaining: number
  readonly resetMs: number
  readonly retryAfterMs: number
}

export interface Admission {
  readonly allowed: boolean
  readonly views: LimitView[]
}

/** `lease: auto`: no cap of its own, so demand sizes the lease up to the burst's tenth. */
export const AUTO_LEASE = Number.MAX_SAFE_INTEGER

/** The configured `lease` as a number (`auto`: AUTO_LEASE; absent: 1). */
export function leaseOf (lease: number | 'auto' | undefined): number {
  return lease === 'auto' ? AUTO_LEASE : lease ?? 1
}

/** The largest lease of a limit: `lease`, at most burst / 10 (rounded down), at least 1. */
export function leaseCap (lease: number, burst: number): number {
  return Math.max(1, Math.min(lease, Math.floor(burst / BURST_SHARE)))
}

/** The cells this instance holds for one counter key. */
class Stock {
  /** Charged in the store, not yet spent. */
  cells = 0
  /** Cells left at this time (local clock) are dropped. */
  expiresAt = 0
  /** When the last lease was asked for (local clock); -Infinity before the first. */
  leasedAt = Number.NEGATIVE_INFINITY
  /** Cells the next lease asks for (before the cap). */
  size = 1
  /** Requests the last lease could not serve: the next lease asks for at least this many. */
  backlog = 0
  /** The store's last answer for this key and when it was asked (local clock), for the headers. */
  remaining = 0
  resetMs = 0
  answeredAt = Number.NEGATIVE_INFINITY
  /**
   * The store refused this key and said when the next cell conforms: until then requests are refused here, without
   * a round trip. Exact: other instances can only take cells, never add them sooner.
   */
  refusedUntil = Number.NEGATIVE_INFINITY
  /** Set while a store call for this key is in flight (single flight). */
  flight: Flight | undefined

  live (now: number): number {
    if (this.cells > 0 && now >= this.expiresAt) this.cells = 0
    return this.cells
  }

  /** Adds cells that expire at `expiresAt`; the stock as a whole keeps the earliest expiry, so no cell lives longer. */
  deposit (cells: number, expiresAt: number, now: number): void {
    if (cells <= 0 || expiresAt <= now) return
    this.expiresAt = this.live(now) > 0 ? Math.min(this.expiresAt, expiresAt) : expiresAt
    this.cells += cells
  }
}

interface Flight {
  readonly keys: readonly string[]
  readonly asked: readonly number[]
  readonly startedAt: number
  readonly promise: Promise<GcraResult[]>
  waiters: number
}

/** A cell this request took from a stock, kept so a refused request can give it back. */
interface Held {
  readonly stock: Stock
  readonly expiresAt: number
}

/**
 * Rate-limit leases for the counters of one batch of rateLimit steps: one store call takes several cells of a key's
 * GCRA bucket and later requests on that key spend them here without a round trip. Many requests on keys with an
 * empty stock share ONE store call (single flight); those its cells cannot serve ask again right after it (with a
 * lease sized for them), and are refused only when the store says the bucket is empty, with its Retry-After.
 */
export class Leases {
  readonly #now: () => number
  readonly #call: (checks: readonly GcraCheck[]) => Promise<GcraResult[]>
  readonly #stocks = new Map<string, Stock>()
  readonly #flights = new Map<string, Flight>()
  #sweptAt = Number.NEGATIVE_INFINITY

  constructor (now: () => number, call: (checks: readonly GcraCheck[]) => Promise<GcraResult[]>) {
    this.#now = now
    this.#call = call
  }

  /** Counter keys with a stock entry (tests: memory stays bounded). */
  get size (): number {
    return this.#stocks.size
  }

  /**
   * Admits or refuses one request on every limit of the batch. A refused request keeps nothing: cells it took
   * from a stock go back (only if still alive). Store failures propagate (onError is the caller's business).
   */
  async admit (limits: readonly LeasedLimit[]): Promise<Admission> {
    const held = new Map<number, Held>()
    for (;;) {
      const now = this.#now()
      const missing: number[] = []
      for (let i = 0; i < limits.length; i++) {
        if (!held.has(i) && !this.#take(limits[i]!.check.key, now, held, i)) missing.push(i)
      }
      if (missing.length === 0) return { allowed: true, views: limits.map((l) => this.#view(l.check, this.#now())) }
      const known = this.#refusedHere(limits, missing, now)
      if (known) {
        this.#giveBack(held)
        return known
      }

      const flight = this.#flightFor(missing.map((i) => limits[i]!), now)
      flight.waiters++
      let results: GcraResult[]
      try {
        results = await flight.promise
      } catch (error) {
        this.#giveBack(held)
        throw error
      } finally {
        flight.waiters--
      }

      const after = this.#now()
      if (!results.every((r) => r.allowed)) {
        // The store refused this set of keys: every waiter of the flight is refused alike, as without leases.
        this.#giveBack(held)
        return { allowed: false, views: this.#refusedViews(limits, missing, results, after) }
      }
      // Take the flight's cells; a key whose lease came back short (the bucket ran dry) refuses who finds it empty.
      const dry = new Map<number, LimitView>()
      missing.forEach((i, j) => {
        if (this.#take(limits[i]!.check.key, after, held, i)) return
        const result = results[j]!
        if ((result.granted ?? 1) >= flight.asked[j]!) return // a full lease: the bucket may have more, ask again
        const check = limits[i]!.check
        const elapsed = after - flight.startedAt
        const retryAfterMs = Math.ceil(result.resetMs + check.emissionIntervalMs - check.burst * check.emissionIntervalMs - elapsed)
        if (retryAfterMs <= 0) return
        dry.set(i, { allowed: false, remaining: 0, resetMs: Math.max(0, result.resetMs - elapsed), retryAfterMs })
        const stock = this.#stocks.get(check.key)
        if (stock) this.#refuse(stock, retryAfterMs, result.resetMs - elapsed, after)
      })
      if (dry.size > 0) {
        this.#giveBack(held)
        return { allowed: false, views: limits.map((l, i) => dry.get(i) ?? this.#view(l.check, after)) }
      }
      // Otherwise some cells went to earlier waiters: loop, joining or starting the next lease.
    }
  }

  /** Remembers a refusal: the key passes again `retryAfterMs` after `at` (the time asked, so never later than the store says). */
  #refuse (stock: Stock, retryAfterMs: number, resetMs: number, at: number): void {
    stock.refusedUntil = at + retryAfterMs
    stock.remaining = 0
    stock.resetMs = Math.max(0, resetMs)
    stock.answeredAt = at
  }

  /**
   * A refusal without a round trip: a limit still inside the Retry-After the store gave it, and an empty stock.
   * Only when every limit of the batch has an earlier answer to report; else the store is asked.
   */
  #refusedHere (limits: readonly LeasedLimit[], missing: readonly number[], now: number): Admission | undefined {
    const stocks = limits.map((l) => this.#stocks.get(l.check.key))
    if (stocks.some((stock) => !stock || stock.answeredAt === Number.NEGATIVE_INFINITY)) return undefined
    if (!missing.some((i) => stocks[i]!.refusedUntil > now)) return undefined
    return {
      allowed: false,
      views: limits.map((limit, i) => {
        const stock = stocks[i]!
        if (!missing.includes(i) || stock.refusedUntil <= now) return this.#view(limit.check, now)
        return { allowed: false, remaining: 0, resetMs: Math.max(0, stock.resetMs - (now - stock.answeredAt)), retryAfterMs: stock.refusedUntil - now }
      }),
    }
  }

  /** Takes one live cell of the key's stock into `held`; false when the stock is empty. */
  #take (key: string, now: number, held: Map<number, Held>, index: number): boolean {
    const stock = this.#stocks.get(key)
    if (!stock || stock.live(now) === 0) return false
    stock.cells--
    held.set(index, { stock, expiresAt: stock.expiresAt })
    return true
  }

  #giveBack (held: Map<number, Held>): void {
    const now = this.#now()
    for (const { stock, expiresAt } of held.values()) stock.deposit(1, expiresAt, now)
    held.clear()
  }

  /** The store call in flight for exactly these keys, or a new one. */
  #flightFor (limits: readonly LeasedLimit[], now: number): Flight {
    const keys = limits.map((l) => l.check.key)
    const id = keys.join('\n')
    const existing = this.#flights.get(id)
    if (existing) return existing
    this.#sweep(now)
    const stocks = keys.map((key) => {
      let stock = this.#stocks.get(key)
      if (!stock) this.#stocks.set(key, stock = new Stock())
      return stock
    })
    const asked = limits.map((limit, j) => this.#leaseSize(stocks[j]!, limit, now))
    const checks = limits.map((limit, j) => ({ ...limit.check, upTo: asked[j]! }))
    const flight: Flight = { keys, asked, startedAt: now, waiters: 0, promise: this.#call(checks) }
    this.#flights.set(id, flight)
    for (const stock of stocks) stock.flight = flight
    const settle = () => {
      if (this.#flights.get(id) === flight) this.#flights.delete(id)
      for (const stock of stocks) if (stock.flight === flight) stock.flight = undefined
    }
    flight.promise.then((results) => {
      settle()
      const allowed = results.every((r) => r.allowed)
      const expiresAt = now + LEASE_LIFETIME_MS // from when the call was sent: the store charged after that
      results.forEach((result, j) => {
        const stock = stocks[j]!
        if (!allowed) {
          // Only a limit that refused itself knows when it passes again; the others stay as they were.
          if (!result.allowed) this.#refuse(stock, result.retryAfterMs, result.resetMs, now)
          return
        }
        stock.deposit(result.granted ?? 1, expiresAt, this.#now())
        stock.remaining = result.remaining
        stock.resetMs = result.resetMs
        stock.answeredAt = now
        stock.backlog = Math.max(0, flight.waiters - (result.granted ?? 1))
      })
    }, settle)
    return flight
  }

  /** Cold keys lease 1; busy keys double (or ask for their backlog), slow ones halve; never above the cap. */
  #leaseSize (stock: Stock, limit: LeasedLimit, now: number): number {
    const since = now - stock.leasedAt
    if (since >= LEASE_LIFETIME_MS) stock.size = 1
    else if (since < GROW_WITHIN_MS) stock.size *= 2
    else if (since > SHRINK_AFTER_MS) stock.size = Math.max(1, Math.floor(stock.size / 2))
    const cap = leaseCap(limit.lease, limit.check.burst)
    stock.size = Math.min(cap, stock.size)
    const size = Math.min(cap, Math.max(stock.size, stock.backlog))
    stock.backlog = 0
    stock.leasedAt = now
    return size
  }

  /** r = the store's remaining after the last lease + cells still held here (at most the stock too many). */
  #view (check: GcraCheck, now: number): LimitView {
    const stock = this.#stocks.get(check.key)
    if (!stock) return { allowed: true, remaining: check.burst, resetMs: 0, retryAfterMs: 0 }
    const elapsed = Math.max(0, now - stock.answeredAt)
    return {
      allowed: true,
      remaining: Math.min(check.burst, stock.remaining + stock.live(now)),
      resetMs: Math.max(0, stock.resetMs - elapsed),
      retryAfterMs: 0,
    }
  }

  /** Headers of a request the store refused: refused limits as answered, the others as they stand without it. */
  #refusedViews (limits: readonly LeasedLimit[], missing: readonly number[], results: readonly GcraResult[], now: number): LimitView[] {
    return limits.map((limit, i) => {
      const j = missing.indexOf(i)
      if (j === -1) return this.#view(limit.check, now)
      const result = results[j]!
      if (!result.allowed) return result
      // Allowed in a refused call: nothing was taken, so report it without this call's cells.
      const granted = result.granted ?? 1
      const stock = this.#stocks.get(limit.check.key)
      return {
        allowed: true,
        remaining: Math.min(limit.check.burst, result.remaining + granted + (stock?.live(now) ?? 0)),
        resetMs: Math.max(0, Math.ceil(result.resetMs - granted * limit.check.emissionIntervalMs - EPSILON)),
        retryAfterMs: 0,
      }
    })
  }

  /** Drops stocks with no live cells, no lease in the last lifetime and no call in flight, at most once a lifetime. */
  #sweep (now: number): void {
    if (now - this.#sweptAt < LEASE_LIFETIME_MS) return
    this.#sweptAt = now
    for (const [key, stock] of this.#stocks) {
      const quiet = now - stock.leasedAt >= LEASE_LIFETIME_MS && now >= stock.refusedUntil
      if (!stock.flight && stock.live(now) === 0 && quiet) this.#stocks.delete(key)
    }
  }
}
