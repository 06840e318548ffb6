// Paired micro-benchmark: the apiKey policy (static key, cached) with the chain's identity merge and addIdentity, this tree
// against another, one process, rounds alternating. Run: node --import tsx bench/micro/paired/identity.ts DIR
import { resolve } from 'node:path'
const other = resolve(process.argv[2]!)
const here = resolve(import.meta.dirname, '../../..')
/** One key for both trees (the same format in each). */
const shared: { key?: { id: string, key: string } } = {}
async function load (dir: string) {
  const { apiKey } = await import(`${dir}/policies/api-key/index.ts`)
  const { hashApiKey, newApiKey } = await import(`${dir}/policies/api-key/format.ts`)
  const { build, makeDeps, makeContext } = await import(`${dir}/test/helpers/policy-harness.ts`)
  const { addIdentity, identityHeaders } = await import(`${dir}/gateway/identity.ts`)
  const key = shared.key ??= newApiKey()
  const names = identityHeaders({ headers: { subject: 'X-Auth-Subject', client: 'X-Auth-Client', methods: 'X-Auth-Methods', scopes: 'X-Auth-Scopes', tier: 'X-Auth-Tier' }, stripInbound: [] })
  const deps = makeDeps({ now: Date.now, config: { apiKeys: [{ id: key.id, hash: hashApiKey(key.key), client: 'demo-client', scopes: ['read', 'write'], tier: 'gold' }] } })
  const policy = await build(apiKey, {}, deps)
  const ctx = makeContext({ headers: [['x-api-key', key.key]] })
  return async (n: number) => {
    const t0 = process.cpuUsage()
    let sink = 0
    for (let i = 0; i < n; i++) {
      const outcome = await policy.evaluate(ctx)
      const identity = { subject: '', client: '', methods: [] as string[], scopes: [] as readonly string[], claims: {}, tier: undefined as string | undefined }
      const u = outcome.identity
      identity.subject = u.subject; identity.client = u.client; identity.scopes = u.scopes; identity.tier = u.tier; identity.methods.push('apiKey')
      const headers: Record<string, string> = {}
      addIdentity(headers, identity, names)
      sink += headers['x-auth-scopes'].length
    }
    const c = process.cpuUsage(t0)
    if (sink === 0) throw new Error('nothing')
    return (c.user + c.system) * 1000 / n
  }
}
const runs = { new: await load(here), base: await load(other) }
const ns: Record<string, number[]> = { new: [], base: [] }
for (let r = 0; r < 14; r++) for (const name of (r % 2 ? ['base', 'new'] as const : ['new', 'base'] as const)) ns[name]!.push(await runs[name](200_000))
const med = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!
for (const name of ['new', 'base'] as const) console.log(`${name}: ns per request (apiKey evaluate + identity headers), median ${med(ns[name].slice(2)).toFixed(0)}, best ${Math.min(...ns[name].slice(2)).toFixed(0)}`)
