// Paired micro-benchmark: RedisStore.rateLimit with one frozen checks array (as the limiter passes it), this tree
// against another, one process, one redis-server, rounds alternating. Run: node --import tsx bench/micro/paired/redis-args.ts DIR
import { resolve } from 'node:path'
import { startRedis } from '../../../test/helpers/redis.js'
const other = resolve(process.argv[2]!)
const here = resolve(import.meta.dirname, '../../..')
const redis = await startRedis()
const checks = Object.freeze([Object.freeze({ key: 'rl:{route}:client:bench', emissionIntervalMs: 0.001, burst: 1_000_000 })])
async function load (dir: string, prefix: string) {
  const { RedisStore } = await import(`${dir}/gateway/store/redis.ts`)
  const store = new RedisStore(redis.url, { prefix, timeoutMs: 2000 })
  await store.ping()
  return {
    store,
    async run (total: number) {
      let next = 0
      const worker = async () => { while (next++ < total) await store.rateLimit(checks) }
      const t0 = process.cpuUsage()
      await Promise.all(Array.from({ length: 64 }, worker))
      const c = process.cpuUsage(t0)
      return (c.user + c.system) / total
    },
  }
}
const trees = { new: await load(here, 'new:'), base: await load(other, 'base:') }
const us: Record<string, number[]> = { new: [], base: [] }
for (let r = 0; r < 16; r++) for (const name of (r % 2 ? ['base', 'new'] as const : ['new', 'base'] as const)) us[name]!.push(await trees[name].run(20_000))
const med = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!
for (const name of ['new', 'base'] as const) console.log(`${name}: client CPU µs per RedisStore.rateLimit (64 in flight), median ${med(us[name].slice(2)).toFixed(2)}, best ${Math.min(...us[name].slice(2)).toFixed(2)}`)
await trees.new.store.close(); await trees.base.store.close(); await redis.stop()
