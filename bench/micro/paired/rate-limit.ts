// Paired micro-benchmark: the rateLimit policy (by client, 1,000,000/sec, lease 1 and 100) of this tree and of another
// (e.g. `git archive main | tar -x -C DIR`, node_modules linked), in one process against one redis-server, rounds
// alternating: the process CPU per evaluate, client side (ioredis and the socket included). For effects of a few µs on a
// shared machine, where `--compare` rounds differ by more than that. Run: node --import tsx bench/micro/paired/rate-limit.ts DIR
import { resolve } from 'node:path'
import { startRedis } from '../../../test/helpers/redis.js'

const other = resolve(process.argv[2]!)
const here = resolve(import.meta.dirname, '../../..')
const redis = await startRedis()
type Tree = { name: string, run: (lease: number) => Promise<number>, close: () => Promise<void> }
async function load (name: string, dir: string, prefix: string): Promise<Tree> {
  const { RedisStore } = await import(`${dir}/gateway/store/redis.ts`)
  const { rateLimit } = await import(`${dir}/policies/rate-limit/index.ts`)
  const { build, makeDeps } = await import(`${dir}/test/helpers/policy-harness.ts`)
  const store = new RedisStore(redis.url, { prefix, timeoutMs: 2000 })
  await store.ping()
  const who = { subject: 'bench', client: 'bench', methods: ['apiKey'], scopes: [], claims: {} }
  const policies = new Map<number, { evaluate: (ctx: unknown) => Promise<unknown> }>()
  for (const lease of [1, 100]) {
    const route = { name: 'bench', upstream: 'demo', policies: [{ apiKey: {} }, { rateLimit: { by: 'client', limit: '1000000/sec', lease } }] }
    const deps = makeDeps({ store, now: Date.now, routeName: 'bench', shared: new Map(), config: { rateLimitTiers: {}, store: { onError: 'deny' }, routes: [route] } })
    policies.set(lease, await build(rateLimit, route.policies[1]!.rateLimit, { ...deps, step: { index: 1 } }))
  }
  return {
    name,
    async run (lease) {
      const policy = policies.get(lease)!
      const total = lease === 1 ? 20_000 : 100_000
      let next = 0
      const worker = async () => { while (next++ < total) await policy.evaluate({ identity: who, remoteAddress: '127.0.0.1' }) }
      const cpu0 = process.cpuUsage()
      await Promise.all(Array.from({ length: 64 }, worker))
      const cpu = process.cpuUsage(cpu0)
      return (cpu.user + cpu.system) / total
    },
    close: () => store.close(),
  }
}
const trees = process.env.SWAP ? [await load('base', other, 'base:'), await load('new', here, 'new:')] : [await load('new', here, 'new:'), await load('base', other, 'base:')]
try {
  for (const lease of [1, 100]) {
    const cpu: Record<string, number[]> = { new: [], base: [] }
    for (let round = 0; round < 12; round++) {
      for (const tree of round % 2 === 0 ? trees : [...trees].reverse()) cpu[tree.name]!.push(await tree.run(lease))
    }
    const med = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!
    const fmt = (v: number[]) => `median ${med(v.slice(2)).toFixed(2)} best ${Math.min(...v.slice(2)).toFixed(2)}`
    console.log(`lease ${lease}: process CPU µs per evaluate (Redis round trip included, client side): new ${fmt(cpu.new!)} | base ${fmt(cpu.base!)}`)
  }
} finally {
  for (const tree of trees) await tree.close()
  await redis.stop()
}
