/** Durations (`30s`, `5m`, `1h`, `90d`, `250ms`), rates (`100/min`), sizes (`64KiB`, `1MiB`). Parsed once at load. */

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/
const DURATION_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
export const DURATION_PATTERN = '^\\d+(\\.\\d+)?(ms|s|m|h|d)$'

const RATE = /^(\d+)\s*\/\s*(sec|second|s|min|minute|m|hour|h|day|d)$/
const RATE_WINDOW_MS: Record<string, number> = {
  sec: 1000, second: 1000, s: 1000, min: 60_000, minute: 60_000, m: 60_000,
  hour: 3_600_000, h: 3_600_000, day: 86_400_000, d: 86_400_000,
}
export const RATE_PATTERN = '^\\d+\\s*/\\s*(sec|second|s|min|minute|m|hour|h|day|d)$'

const SIZE = /^(\d+)(B|KiB|MiB|GiB|KB|MB|GB)?$/
const SIZE_BYTES: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, KB: 1000, MB: 1000 ** 2, GB: 1000 ** 3 }
export const SIZE_PATTERN = '^\\d+(B|KiB|MiB|GiB|KB|MB|GB)?$'

/** Milliseconds; throws RangeError on a malformed value (the schema pattern catches it first). */
export function parseDuration (text: string | number): number {
  if (typeof text === 'number') return text * 1000 // a bare YAML number means seconds
  const match = DURATION.exec(text.trim())
  if (!match) throw new RangeError(`not a duration: ${JSON.stringify(text)} (use 30s, 5m, 1h)`)
  return Math.round(Number(match[1]) * DURATION_MS[match[2]!]!)
}

export interface Rate { readonly count: number, readonly windowMs: number }

export function parseRate (text: string): Rate {
  const match = RATE.exec(text.trim())
  if (!match) throw new RangeError(`not a rate: ${JSON.stringify(text)} (use 100/min)`)
  const count = Number(match[1])
  if (count < 1) throw new RangeError(`a rate needs at least 1 request: ${JSON.stringify(text)}`)
  return { count, windowMs: RATE_WINDOW_MS[match[2]!]! }
}

export function parseSize (text: string | number): number {
  if (typeof text === 'number') return text
  const match = SIZE.exec(text.trim())
  if (!match) throw new RangeError(`not a size: ${JSON.stringify(text)} (use 64KiB, 1MiB)`)
  return Number(match[1]) * SIZE_BYTES[match[2] ?? 'B']!
}
