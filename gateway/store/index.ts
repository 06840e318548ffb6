import type { Logger } from '../log.js'
import { MemoryStore } from './memory.js'
import { RedisStore } from './redis.js'
import type { Store } from './types.js'

export { MemoryStore, evaluateGcra } from './memory.js'
export { RedisStore, type RedisTarget } from './redis.js'
export type { Store, GcraCheck, GcraResult } from './types.js'

export interface CreateStoreOptions {
  /** `store.redis`: empty or absent for the in-process store; a URL; a list of cluster seed URLs. */
  redis?: string | readonly string[] | { readonly cluster: readonly string[] } | undefined
  /** `store.prefix`, e.g. `authgate:`. */
  prefix: string
  /** Store timeout (default 500 ms). */
  timeoutMs?: number | undefined
  log?: Logger | undefined
}

/** The memory store when no Redis is configured, else a RedisStore (single node or Cluster). */
export function createStore (options: CreateStoreOptions): Store {
  const { redis, prefix, timeoutMs, log } = options
  if (redis === undefined || redis === '') return new MemoryStore({ prefix, ...(log ? { log } : {}) })
  return new RedisStore(redis, {
    prefix,
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    ...(log ? { log } : {}),
  })
}
