/** The store a config file names, for commands that manage shared state (revocations). */
import { loadConfig } from '../gateway/config/load.js'
import { parseDuration } from '../gateway/config/units.js'
import { createStore } from '../gateway/store/index.js'
import type { Store } from '../gateway/store/types.js'

/** Refuses the in-process memory store: what a command wrote there would vanish when it exits. */
export async function openConfiguredStore (file: string): Promise<Store> {
  const config = loadConfig(file)
  const store = createStore({ redis: config.doc.store.redis, prefix: config.doc.store.prefix, timeoutMs: parseDuration(config.doc.store.timeout) })
  if (store.kind === 'memory') {
    await store.close()
    throw new Error(`${file} configures no Redis (store.redis): keys and revocations in an in-process store would vanish with this command. Set REDIS_URL or store.redis`)
  }
  return store
}
