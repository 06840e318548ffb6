/**
 * A clock that moves only when told, for code that takes `now: () => number` (policies, the store, the key
 * service, Gateway.start): a test advances it instead of sleeping past an expiry.
 */
export class FakeClock {
  ms: number
  /** Starts at `ms` (default: the real time now, so tokens and keys minted by real libraries fit). */
  constructor (ms = Date.now()) { this.ms = ms }
  /** Bound: pass `clock.now` itself where a `() => number` is expected. */
  now = (): number => this.ms
  advance (ms: number): void { this.ms += ms }
}
