import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import { StoreUnavailableError } from '../errors.js'
import type { Logger } from '../log.js'
import { assertValidChecks, assertValidLimit, toTtlMs } from './memory.js'
import type { GcraCheck, GcraResult, Store } from './types.js'

/** A single node URL (`redis://` or `rediss://`), or the seed URLs of a Redis Cluster. */
export type RedisTarget = string | readonly string[] | { readonly cluster: readonly string[] }

export interface RedisStoreOptions {
  /** Prepended to every key and channel, e.g. `authgate:`. */
  prefix?: string
  /** Upper bound for any call, connection wait included (default 500 ms). */
  timeoutMs?: number
  log?: Logger
}

type Client = Redis | Cluster

/** One request's checks as the GCRA script takes them (see GCRA_LUA). */
interface EncodedChecks {
  /** The check count, as a string. */
  readonly count: string
  readonly keys: readonly string[]
  /** emissionIntervalMs, burst, cost, upTo (0: none) per check. */
  readonly values: readonly string[]
}

/** A rate-limit call waiting for its batch to be sent. */
interface PendingLimit {
  readonly checks: readonly GcraCheck[]
  readonly encoded: EncodedChecks
  resolve (results: GcraResult[]): void
  reject (error: unknown): void
}

interface ScriptedClient {
  authgateGcra (...args: string[]): Promise<number[]>
  authgateIncrement (key: string, windowMs: number): Promise<[number, number]>
  authgateReserve (key: string, limit: number, windowMs: number): Promise<[number, number, number]>
  authgateRelease (key: string): Promise<number>
  authgateLease (key: string, owner: string, ttlMs: number): Promise<number>
}

/**
 * GCRA for the checks of one or more requests, each request atomically and in the order given (the same formulas
 * as evaluateGcra in memory.ts). Several requests in one call are decided exactly as one call each would decide
 * them, one after the other: a request's checks read the state its predecessors in the call left.
 * KEYS: one per check, request after request. ARGV: the number of requests R, then R check counts, then
 * emissionIntervalMs, burst, cost, upTo (0: none) per check.
 * Redis server time, so instances with skewed clocks agree; nothing of a request is written unless all its checks
 * pass. A check with upTo takes every cell that conforms now, at most upTo and at least cost (a lease).
 * Reply: flat, five integers per check: allowed 1|0, remaining, resetMs, retryAfterMs, granted. A request whose
 * key holds another kind of value gets -1 as its first check's `allowed` and changes nothing; the others go on.
 */
const GCRA_LUA = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local eps = 1e-6
local requests = tonumber(ARGV[1])
local out = {}
local first = 0
local values = 1 + requests
for r = 1, requests do
  local n = tonumber(ARGV[1 + r])
  local allowed = true
  local failed = false
  local tats = {}
  for i = 1, n do
    local a = values + 4 * (i - 1)
    local interval = tonumber(ARGV[a + 1])
    local burst = tonumber(ARGV[a + 2])
    local cost = tonumber(ARGV[a + 3])
    local upTo = tonumber(ARGV[a + 4])
    local stored = redis.pcall('GET', KEYS[first + i])
    if type(stored) == 'table' and stored.err then
      failed = true
      stored = nil
    end
    local tat = tonumber(stored) or now
    local base = math.max(tat, now)
    local limit = burst * interval
    local take = cost
    if upTo > 0 then
      take = math.max(cost, math.min(upTo, math.floor((limit - (base - now)) / interval + eps)))
    end
    local newTat = base + take * interval
    local delay = newTat - now
    local o = 5 * (first + i - 1)
    if delay <= limit + eps then
      out[o + 1] = 1
      out[o + 2] = math.max(0, math.floor((limit - delay) / interval + eps))
      out[o + 3] = math.ceil(delay)
      out[o + 4] = 0
      out[o + 5] = take
      tats[i] = newTat
    else
      allowed = false
      out[o + 1] = 0
      out[o + 2] = 0
      out[o + 3] = math.ceil(base - now)
      out[o + 4] = math.ceil(delay - limit)
      out[o + 5] = 0
    end
  end
  if failed then
    out[5 * first + 1] = -1
  elseif allowed then
    for i = 1, n do
      local ttl = math.ceil(tats[i] - now)
      if ttl > 0 then
        redis.call('SET', KEYS[first + i], string.format('%.17g', tats[i]), 'PX', ttl)
      else
        redis.call('DEL', KEYS[first + i])
      end
    end
  end
  first = first + n
  values = values + 4 * n
end
return out
`

/**
 * Requests whose rate limits are decided in one script call at most (their checks, rather): bounds how long one
 * call holds Redis, which runs scripts one at a time.
 */
const MAX_BATCH_CHECKS = 256

/** Fixed window: the first increment starts the window; a key left without expiry gets one. */
const INCREMENT_LUA = `
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if count == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return { count, ttl }
`

/**
 * One attempt reserved in a fixed window, atomically: below the limit INCR (the first one starts the window), at
 * the limit nothing changes. ARGV: limit, windowMs. Reply: { granted 1|0, count, ms until the window ends }.
 */
const RESERVE_LUA = `
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count == nil then return redis.error_reply('ERR value is not an integer or out of range') end
local ttl = redis.call('PTTL', KEYS[1])
if count >= tonumber(ARGV[1]) then
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    ttl = tonumber(ARGV[2])
  end
  return { 0, count, ttl }
end
count = redis.call('INCR', KEYS[1])
if count == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return { 1, count, ttl }
`

/** Takes one reservation back: DECR keeps the window's TTL; at 0 the key goes; a missing key stays missing. */
const RELEASE_LUA = `
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local count = tonumber(value)
if count == nil then return redis.error_reply('ERR value is not an integer or out of range') end
if count <= 1 then
  redis.call('DEL', KEYS[1])
  return 0
end
return redis.call('DECR', KEYS[1])
`

/** A lock held by ARGV[1]: a new TTL (ARGV[2] ms), or deleted when ARGV[2] is 0; 0 when someone else holds it. */
const LEASE_LUA = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) == 0 then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
`

/**
 * The Redis store (ioredis 5, single node or Cluster). Calls never hang: each one is bounded by `timeoutMs`,
 * including the wait for a connection, and every failure rejects with StoreUnavailableError.
 * It reconnects by itself; subscriptions are restored after a reconnect.
 */
export class RedisStore implements Store {
  readonly kind = 'redis' as const
  readonly prefix: string
  readonly timeoutMs: number
  readonly #log: Logger | undefined
  readonly #connect: (role: 'main' | 'subscriber') => Client
  readonly #client: Client
  #subscriber: Client | undefined
  readonly #handlers = new Map<string, Set<(message: string) => void>>()
  #connected = false
  /** The connection is up but the last call timed out (a paused or overloaded server). */
  #stalled = false
  #closed = false
  /** When the connection was lost; undefined while connected and before the first connection. */
  #downSince: number | undefined
  #reported = false
  #ready: { promise: Promise<void>, resolve: () => void } | undefined
  /** Script arguments of frozen check arrays, encoded on their first call. */
  readonly #encoded = new WeakMap<readonly GcraCheck[], EncodedChecks>()
  /**
   * A single node: the rate-limit calls made in one event-loop turn go in one script call (a Cluster cannot: their
   * keys are in different slots). Fewer commands to encode, send, run and parse; each request is still decided
   * on its own, atomically, in order.
   */
  readonly #batching: boolean
  #batch: PendingLimit[] = []
  #batchChecks = 0
  #flushScheduled = false

  constructor (target: RedisTarget, options: RedisStoreOptions = {}) {
    this.prefix = options.prefix ?? ''
    this.timeoutMs = options.timeoutMs ?? 500
    if (!Number.isFinite(this.timeoutMs) || this.timeoutMs <= 0) throw new RangeError('store timeoutMs must be a positive number')
    this.#log = options.log
    this.#connect = connector(target, this.timeoutMs)
    this.#client = this.#connect('main')
    this.#batching = this.#client instanceof Redis
    defineScripts(this.#client)
    this.#client.on('ready', () => this.#onReady())
    for (const event of ['close', 'end', 'reconnecting']) this.#client.on(event, () => this.#onDown())
    this.#client.on('error', (err: Error) => this.#onError(err))
    this.#client.on('node error', (err: Error) => this.#onError(err))
  }

  /** Last known health: connected, and the last call did not time out. */
  get healthy (): boolean {
    return this.#connected && !this.#stalled && !this.#closed
  }

  async get (key: string): Promise<string | null> {
    return this.#run('GET', (c) => c.get(this.#key(key)))
  }

  async set (key: string, value: string, ttlMs?: number): Promise<void> {
    const k = this.#key(key)
    if (ttlMs === undefined) await this.#run('SET', (c) => c.set(k, value))
    else {
      const ttl = toTtlMs(ttlMs)
      await this.#run('SET', (c) => c.set(k, value, 'PX', ttl))
    }
  }

  async setIfAbsent (key: string, value: string, ttlMs: number): Promise<boolean> {
    const ttl = toTtlMs(ttlMs)
    const reply = await this.#run('SET NX', (c) => c.set(this.#key(key), value, 'PX', ttl, 'NX'))
    return reply === 'OK'
  }

  async delete (key: string): Promise<void> {
    await this.#run('DEL', (c) => c.del(this.#key(key)))
  }

  async renewOrReleaseIfHeld (key: string, owner: string, ttlMs: number): Promise<boolean> {
    const ttl = ttlMs === 0 ? 0 : toTtlMs(ttlMs)
    return Number(await this.#run('lease', (c) => scripted(c).authgateLease(this.#key(key), owner, ttl))) === 1
  }

  async getHash (key: string): Promise<Record<string, string> | null> {
    const fields = await this.#run('HGETALL', (c) => c.hgetall(this.#key(key)))
    return Object.keys(fields).length === 0 ? null : fields
  }

  /** Replaces the whole record (not a merge), atomically; an empty map deletes it. */
  async setHash (key: string, fields: Readonly<Record<string, string>>, ttlMs?: number): Promise<void> {
    const k = this.#key(key)
    const ttl = ttlMs === undefined ? undefined : toTtlMs(ttlMs)
    const entries = Object.entries(fields)
    await this.#run('HSET', async (c) => {
      const tx = c.multi().del(k)
      if (entries.length > 0) {
        tx.hset(k, Object.fromEntries(entries))
        if (ttl !== undefined) tx.pexpire(k, ttl)
      }
      checkReplies(await tx.exec())
    })
  }

  async addToSet (key: string, member: string): Promise<void> {
    await this.#run('SADD', (c) => c.sadd(this.#key(key), member))
  }

  async removeFromSet (key: string, member: string): Promise<void> {
    await this.#run('SREM', (c) => c.srem(this.#key(key), member))
  }

  async members (key: string): Promise<string[]> {
    return this.#run('SMEMBERS', (c) => c.smembers(this.#key(key)))
  }

  async increment (key: string, windowMs: number): Promise<{ count: number, resetMs: number }> {
    const window = toTtlMs(windowMs)
    const [count, resetMs] = await this.#run('INCR', (c) => scripted(c).authgateIncrement(this.#key(key), window))
    return { count: Number(count), resetMs: Number(resetMs) }
  }

  async reserve (key: string, limit: number, windowMs: number): Promise<{ granted: boolean, count: number, resetMs: number }> {
    assertValidLimit(limit)
    const window = toTtlMs(windowMs)
    const [granted, count, resetMs] = await this.#run('reserve', (c) => scripted(c).authgateReserve(this.#key(key), limit, window))
    return { granted: Number(granted) === 1, count: Number(count), resetMs: Number(resetMs) }
  }

  async release (key: string): Promise<void> {
    await this.#run('release', (c) => scripted(c).authgateRelease(this.#key(key)))
  }

  rateLimit (checks: readonly GcraCheck[]): Promise<GcraResult[]> {
    let encoded = this.#encoded.get(checks)
    if (encoded === undefined) {
      try {
        assertValidChecks(checks)
      } catch (error) {
        return Promise.reject(error)
      }
      if (checks.length === 0) return Promise.resolve([])
      encoded = this.#encode(checks)
      // Frozen checks (the limiter's, one array per counter key) cannot change: their encoding is kept with them.
      if (Object.isFrozen(checks) && checks.every((check) => Object.isFrozen(check))) this.#encoded.set(checks, encoded)
    }
    const call = encoded
    return new Promise((resolve, reject) => {
      const pending: PendingLimit = { checks, encoded: call, resolve, reject }
      if (!this.#batching) {
        void this.#decide([pending])
        return
      }
      if (this.#batchChecks + checks.length > MAX_BATCH_CHECKS) this.#flush()
      this.#batch.push(pending)
      this.#batchChecks += checks.length
      if (!this.#flushScheduled) {
        this.#flushScheduled = true
        // After the I/O of this turn: every request that arrived in it has made its call by then.
        setImmediate(this.#flushScheduledBatch)
      }
    })
  }

  readonly #flushScheduledBatch = (): void => {
    this.#flushScheduled = false
    this.#flush()
  }

  #flush (): void {
    const batch = this.#batch
    if (batch.length === 0) return
    this.#batch = []
    this.#batchChecks = 0
    void this.#decide(batch)
  }

  /** One script call for the batch; every request gets its own results, or the call's error. Never rejects. */
  async #decide (batch: readonly PendingLimit[]): Promise<void> {
    let keyCount = 0
    for (const pending of batch) keyCount += pending.checks.length
    const args = [String(keyCount)]
    for (const pending of batch) for (const key of pending.encoded.keys) args.push(key)
    args.push(String(batch.length))
    for (const pending of batch) args.push(pending.encoded.count)
    for (const pending of batch) for (const value of pending.encoded.values) args.push(value)
    let replies: number[]
    try {
      replies = await this.#run('rate limit', (c) => scripted(c).authgateGcra(...args))
    } catch (error) {
      for (const pending of batch) pending.reject(error)
      return
    }
    let at = 0
    for (const pending of batch) {
      const { checks } = pending
      if (Number(replies[at]) === -1) {
        pending.reject(new StoreUnavailableError('store rate limit failed: a rate-limit key holds another kind of value'))
        at += 5 * checks.length
        continue
      }
      const results: GcraResult[] = []
      for (const check of checks) {
        const result = {
          allowed: Number(replies[at]) === 1,
          remaining: Number(replies[at + 1]),
          resetMs: Number(replies[at + 2]),
          retryAfterMs: Number(replies[at + 3]),
        }
        results.push(check.upTo === undefined ? result : { ...result, granted: Number(replies[at + 4]) })
        at += 5
      }
      pending.resolve(results)
    }
  }

  async publish (channel: string, message: string): Promise<void> {
    await this.#run('PUBLISH', (c) => c.publish(this.#key(channel), message))
  }

  subscribe (channel: string, handler: (message: string) => void): () => void {
    if (this.#closed) throw new StoreUnavailableError('store is closed')
    const name = this.#key(channel)
    const subscriber = this.#subscriber ?? this.#startSubscriber()
    // Wrap so the same function subscribed twice gets two deliveries and two independent unsubscribes.
    const entry = (message: string) => handler(message)
    let handlers = this.#handlers.get(name)
    if (!handlers) {
      this.#handlers.set(name, handlers = new Set())
      subscriber.subscribe(name).catch((err: unknown) => this.#log?.warn({ err, channel }, 'store subscribe failed'))
    }
    handlers.add(entry)
    return () => {
      const current = this.#handlers.get(name)
      if (!current?.delete(entry) || current.size > 0) return
      this.#handlers.delete(name)
      if (!this.#closed) subscriber.unsubscribe(name).catch(() => {})
    }
  }

  async ping (): Promise<void> {
    await this.#run('PING', (c) => c.ping())
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#connected = false
    this.#handlers.clear()
    await Promise.all([this.#client, this.#subscriber].map(async (client) => {
      if (!client) return
      try {
        await withTimeout(client.quit(), this.timeoutMs)
      } catch {
        // Not connected or not answering: drop the connection instead.
      } finally {
        client.disconnect()
      }
    }))
  }

  #key (key: string): string {
    return this.prefix + key
  }

  /** One request's script arguments as strings: the prefixed keys and 4 values per check (GCRA_LUA). */
  #encode (checks: readonly GcraCheck[]): EncodedChecks {
    const keys = checks.map((check) => this.#key(check.key))
    const values: string[] = []
    for (const check of checks) values.push(String(check.emissionIntervalMs), String(check.burst), String(check.cost ?? 1), String(check.upTo ?? 0))
    return { count: String(checks.length), keys, values }
  }

  /**
   * Every call is bounded here, not only by ioredis' commandTimeout: that timer starts when a command is written,
   * and with auto-pipelining a command waits unwritten while an earlier pipeline is in flight (a paused Redis: a
   * whole timeout), as does a Cluster command before the slots are known. commandTimeout stays, to free ioredis'
   * queue of commands nobody waits for any more. (Tried: without this race, test/faults/redis.test.ts's pause
   * test sees answers after two timeouts.)
   */
  async #run<T> (what: string, operation: (client: Client) => Promise<T>): Promise<T> {
    if (this.#closed) throw new StoreUnavailableError('store is closed')
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(`store did not answer ${what} within ${this.timeoutMs} ms`)), this.timeoutMs)
    })
    try {
      if (!this.#connected) {
        // Known to be down for longer than one timeout: fail now rather than make every request wait.
        if (this.#downSince !== undefined && Date.now() - this.#downSince > this.timeoutMs) {
          throw new StoreUnavailableError(`store is not connected (${what})`)
        }
        await Promise.race([this.#whenReady(), timeout])
      }
      const result = await Promise.race([operation(this.#client), timeout])
      this.#stalled = false
      return result
    } catch (err) {
      if (err instanceof StoreUnavailableError) throw err
      if (err instanceof TimeoutError) {
        if (this.#connected && !this.#stalled) this.#log?.warn({ timeoutMs: this.timeoutMs }, 'store is not answering')
        this.#stalled = this.#connected
        throw new StoreUnavailableError(err.message, { cause: err })
      }
      const message = err instanceof Error ? err.message : String(err)
      throw new StoreUnavailableError(`store ${what} failed: ${message}`, { cause: withoutArguments(err) })
    } finally {
      clearTimeout(timer)
    }
  }

  #whenReady (): Promise<void> {
    if (!this.#ready) {
      let resolve!: () => void
      const promise = new Promise<void>((r) => { resolve = r })
      this.#ready = { promise, resolve }
    }
    return this.#ready.promise
  }

  #onReady (): void {
    if (this.#closed) return
    if (this.#reported) this.#log?.info('store connection restored')
    this.#connected = true
    this.#stalled = false
    this.#downSince = undefined
    this.#reported = false
    this.#ready?.resolve()
    this.#ready = undefined
  }

  #onDown (): void {
    if (this.#closed) return
    this.#connected = false
    this.#downSince ??= Date.now()
  }

  #onError (err: Error): void {
    if (this.#closed) return
    // ioredis emits an error per failed reconnect attempt: log once per outage.
    if (!this.#reported) this.#log?.warn({ err }, 'store connection failed; reconnecting')
    this.#reported = true
    if (!this.#connected) this.#downSince ??= Date.now()
  }

  #startSubscriber (): Client {
    const subscriber = this.#connect('subscriber')
    subscriber.on('error', (err: Error) => this.#onError(err))
    subscriber.on('node error', (err: Error) => this.#onError(err))
    subscriber.on('message', (channel: string, message: string) => {
      for (const handler of [...this.#handlers.get(channel) ?? []]) {
        try {
          handler(message)
        } catch (err) {
          this.#log?.error({ err, channel: channel.slice(this.prefix.length) }, 'store subscriber failed')
        }
      }
    })
    this.#subscriber = subscriber
    return subscriber
  }
}

class TimeoutError extends Error {}

/** ioredis attaches the command's arguments to reply errors; they may hold stored secrets, so keep only the name. */
function withoutArguments (err: unknown): unknown {
  if (err instanceof Error && 'command' in err && typeof err.command === 'object' && err.command !== null) {
    (err as { command: unknown }).command = { name: (err.command as { name?: unknown }).name }
  }
  return err
}

function scripted (client: Client): ScriptedClient {
  return client as unknown as ScriptedClient
}

function defineScripts (client: Client): void {
  // ioredis runs EVALSHA and falls back to EVAL on NOSCRIPT (after a restart or failover).
  client.defineCommand('authgateGcra', { lua: GCRA_LUA })
  client.defineCommand('authgateIncrement', { lua: INCREMENT_LUA, numberOfKeys: 1 })
  client.defineCommand('authgateReserve', { lua: RESERVE_LUA, numberOfKeys: 1 })
  client.defineCommand('authgateRelease', { lua: RELEASE_LUA, numberOfKeys: 1 })
  client.defineCommand('authgateLease', { lua: LEASE_LUA, numberOfKeys: 1 })
}

function checkReplies (replies: Array<[Error | null, unknown]> | null): void {
  if (replies === null) throw new Error('transaction aborted')
  for (const [err] of replies) if (err) throw err
}

function withTimeout<T> (promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise,
    new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new TimeoutError('timed out')), ms) }),
  ]).finally(() => clearTimeout(timer))
}

/** Reconnect quickly at first, then every second, forever. */
function retryDelay (attempt: number): number {
  return Math.min(attempt * 100, 1000)
}

function connector (target: RedisTarget, timeoutMs: number): (role: 'main' | 'subscriber') => Client {
  const urls = typeof target === 'string' ? undefined : Array.isArray(target) ? target : (target as { cluster: readonly string[] }).cluster
  if (urls === undefined) {
    const url = parseUrl(target as string)
    return (role) => new Redis(url.href, { ...nodeOptions(timeoutMs, role), retryStrategy: retryDelay })
  }
  if (urls.length === 0) throw new RangeError('a Redis cluster needs at least one node URL')
  const parsed = urls.map(parseUrl)
  const nodes = parsed.map((url) => ({ host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 6379) }))
  const first = parsed[0]!
  const auth: RedisOptions = {
    ...(first.username ? { username: decodeURIComponent(first.username) } : {}),
    ...(first.password ? { password: decodeURIComponent(first.password) } : {}),
    ...(first.protocol === 'rediss:' ? { tls: {} } : {}),
  }
  return (role) => {
    const { enableOfflineQueue, maxRetriesPerRequest, enableAutoPipelining, ...redisOptions } = nodeOptions(timeoutMs, role)
    const options: ClusterOptions = {
      redisOptions: { ...redisOptions, maxRetriesPerRequest, ...auth },
      enableOfflineQueue,
      enableAutoPipelining,
      clusterRetryStrategy: retryDelay,
      slotsRefreshTimeout: Math.max(timeoutMs, 1000),
    }
    return new Cluster(nodes, options)
  }
}

function nodeOptions (timeoutMs: number, role: 'main' | 'subscriber'): RedisOptions {
  if (role === 'subscriber') {
    // Subscriptions may be made before the connection is up: queue them, and restore them after reconnects.
    return {
      connectTimeout: Math.max(timeoutMs, 1000),
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
      autoResubscribe: true,
    }
  }
  return {
    connectTimeout: Math.max(timeoutMs, 1000),
    commandTimeout: timeoutMs,
    // Fail fast while down instead of queueing: a request must not wait for Redis to come back.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    // A command in flight when the connection broke already failed for its caller: never replay it later.
    autoResendUnfulfilledCommands: false,
    enableAutoPipelining: true,
    // Rate limits are batched per event-loop turn already (RedisStore.rateLimit): send the batch at once, not a
    // turn later. Only a single node's client reads this; a Cluster's rate limits stay auto-pipelined.
    autoPipeliningIgnoredCommands: ['authgateGcra'],
  }
}

function parseUrl (text: string): URL {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new RangeError('store.redis must be a redis:// or rediss:// URL')
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new RangeError(`store.redis must be a redis:// or rediss:// URL, not ${url.protocol}`)
  }
  return url
}
