/**
 * The one poller of the test suite, for conditions that announce themselves by no event (a port that starts to
 * answer, a status page that changes, a background reconnect). Where an event exists (a log line, a socket's
 * 'close', an upstream's arrival), await the event instead.
 */

export interface UntilOptions {
  /** Give up after this long: the promise rejects, naming `message`. */
  readonly timeoutMs: number
  /** Pause between two checks (default 25 ms). */
  readonly intervalMs?: number
  /** What is awaited, for the error: `timed out after 5000 ms waiting for ${message}`. */
  readonly message: string
}

/**
 * Calls `predicate` until it returns a truthy value (awaited), and resolves with that value. It is checked once
 * more at the deadline, so a slow check still gets its last chance. An exception from `predicate` rejects at once:
 * a check that means "not yet" must catch its own errors and return false.
 */
export async function until<T> (predicate: () => T | Promise<T>, options: UntilOptions): Promise<NonNullable<T>> {
  const { timeoutMs, intervalMs = 25, message } = options
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const value = await predicate()
    if (value) return value as NonNullable<T>
    const left = deadline - performance.now()
    if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${message}`)
    await new Promise((resolve) => setTimeout(resolve, Math.min(intervalMs, left)))
  }
}
