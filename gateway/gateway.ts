import { isDeepStrictEqual } from 'node:util'
import { watch, readFileSync, type FSWatcher } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { checkConfig, type LoadOptions } from './config/load.js'
import type { LoadedConfig, StoreConfig } from './config/types.js'
import { parseDuration } from './config/units.js'
import { ConfigError, type ConfigIssue } from './errors.js'
import { AdminServer } from './admin.js'
import { ClusterLink } from './cluster.js'
import { Console, type ConsoleExplain, type ReloadRecord } from './console/index.js'
import { TrafficRecorder } from './console/traffic.js'
import { openListener, type Listener, type ListenerLimits } from './listeners.js'
import { createLogger, type Logger } from './log.js'
import { Metrics, metricsReport } from './metrics.js'
import { Generation } from './generation.js'
import { RequestHandler } from './handler.js'
import { configuredCredentialHeaders } from './lint.js'
import { policies, sections } from '../policies/index.js'
import { IdentitySigner, jwksAdminRoute, signedIdentityHook } from './signed-identity.js'
import { createStore } from './store/index.js'
import { InstrumentedStore } from './store/instrumented.js'
import type { Store } from './store/types.js'
import type { DestinationStream } from 'pino'

export interface GatewayOptions extends LoadOptions {
  readonly configFile: string
  readonly log?: Logger
  readonly logDestination?: DestinationStream
  /** Fake clock for policies (tests). */
  readonly now?: () => number
  readonly metrics?: Metrics
  /** Reload when the config file, or a file it references, changes (debounced). */
  readonly watch?: boolean
  /** The console's explain page: cli/explain's explainRequest (gateway/ does not import cli/). */
  readonly explain?: ConsoleExplain
}

export type ReloadResult = { ok: true, changed: boolean } | { ok: false, issues: readonly ConfigIssue[] }

/** Everything that is one running gateway: store, runtime, listeners, admin. */
export class Gateway {
  private listenersByName = new Map<string, Listener>()
  private admin: AdminServer | undefined
  private reloading: Promise<ReloadResult> | undefined
  private reloadQueued: Promise<ReloadResult> | undefined
  private closed = false
  /** Closes a generation replaced by a reload (runtime, and store when it changed); run once. */
  private readonly retired = new Set<() => Promise<void>>()
  private watchers: FSWatcher[] = []
  private watchTimer: NodeJS.Timeout | undefined
  private signer: IdentitySigner | undefined
  /** The other workers (`workers: N`): /metrics and the console's traffic are summed over all of them. */
  readonly cluster = new ClusterLink()
  /** The console's traffic page: 15 minutes of counters in 2-second slots. */
  readonly traffic: TrafficRecorder
  private lastReload: ReloadRecord | undefined
  private readonly startedAt = Date.now()

  private constructor (
    private config: LoadedConfig,
    private store: Store,
    readonly handler: RequestHandler,
    readonly log: Logger,
    readonly metrics: Metrics,
    private readonly options: GatewayOptions,
  ) {
    this.traffic = new TrafficRecorder(metrics)
  }

  /** Loads and validates the configuration (throws ConfigError listing every problem), then listens. */
  static async start (options: GatewayOptions): Promise<Gateway> {
    const { issues, config } = checkConfig(options.configFile, options)
    if (!config) throw new ConfigError(issues.filter((i) => i.severity === 'error'))
    const log = options.log ?? createLogger({ level: config.doc.log.level, redactHeaders: configuredCredentialHeaders(config.doc), ...(options.logDestination ? { destination: options.logDestination } : {}) })
    for (const warning of config.warnings) log.warn({ file: warning.file, line: warning.line, col: warning.col }, warning.message)
    const metrics = options.metrics ?? new Metrics()
    const store = openStore(config.doc.store, log, metrics)
    const handler = new RequestHandler({ log, metrics, now: options.now ?? Date.now })
    const gateway = new Gateway(config, store, handler, log, metrics, options)
    gateway.cluster.report('metrics', async () => await metricsReport(metrics))
    gateway.cluster.report('traffic', () => gateway.traffic.report())
    gateway.traffic.start()
    try {
      handler.runtime = await Generation.build(config, { store, log, now: options.now ?? Date.now })
      metrics.cacheStats = () => handler.runtime.cacheStats()
      metrics.reported = () => handler.runtime.reportedMetrics()
      gateway.useSigner(await gateway.createSigner(config, store))
      await gateway.openListeners()
      await gateway.openAdmin()
    } catch (error) {
      await gateway.close(0)
      throw error
    }
    metrics.configInfo.set({ hash: config.hash.slice(0, 12) }, config.loadedAt.getTime() / 1000)
    if (options.watch) gateway.watchFiles()
    log.info({ listeners: gateway.listeners.map((l) => `${l.name}=${l.url}`), admin: gateway.adminUrl, store: store.kind, routes: config.doc.routes.length }, 'authgate started')
    return gateway
  }

  get listeners (): Array<{ name: string, url: string }> {
    return [...this.listenersByName.values()].map((l) => ({ name: l.name, url: l.url }))
  }

  get adminUrl (): string | undefined { return this.admin?.url }
  get adminServer (): AdminServer | undefined { return this.admin }
  get currentConfig (): LoadedConfig { return this.config }
  get currentStore (): Store { return this.store }

  private async openListeners (): Promise<void> {
    const runtime = this.handler.runtime
    for (const listener of this.config.doc.listeners) {
      const opened = await openListener(listener, this.config.baseDir, this.handler, {
        maxHeaderBytes: runtime.maxHeaderBytes,
        headersTimeoutMs: runtime.headersTimeoutMs,
        requestTimeoutMs: runtime.requestTimeoutMs,
      }, this.log)
      this.listenersByName.set(listener.name, opened)
    }
  }

  private async openAdmin (): Promise<void> {
    const admin = this.config.doc.admin
    if (!admin) return
    const gateway = this
    this.admin = new AdminServer({
      get configHash () { return gateway.config.hash },
      get loadedAt () { return gateway.config.loadedAt },
      storeHealthy: () => this.store.healthy,
      storeKind: () => this.store.kind,
      draining: () => this.closed,
      adminToken: () => this.config.doc.admin?.token || undefined,
    }, this.metrics, this.log, this.cluster)
    const consolePages = new Console({
      config: () => this.config,
      store: () => this.store,
      adminToken: () => this.config.doc.admin?.token || undefined,
      cluster: this.cluster,
      lastReload: () => this.lastReload,
      listenerUrls: () => new Map([...this.listenersByName.values()].map((l) => [l.name, l.url])),
      startedAt: this.startedAt,
      now: () => Date.now(),
      explain: this.options.explain,
    })
    this.admin.sessionAuth = (req) => consolePages.adminAccess(req)
    this.admin.routes.push(consolePages.route)
    this.admin.routes.push(jwksAdminRoute(() => this.signer))
    const now = this.options.now ?? Date.now
    for (const policy of policies.values()) {
      this.admin.routes.push(...policy.adminRoutes?.({ store: () => this.store, config: () => this.config.doc, now: () => now() }) ?? [])
    }
    await this.admin.listen(admin.address)
  }

  /**
   * Loads, validates and swaps the whole configuration atomically. Requests in flight finish on the old one;
   * an invalid file leaves the old one serving. Listeners whose address changed are reopened.
   */
  reload (): Promise<ReloadResult> {
    // Asked for while one runs (SIGHUP, a watcher): that one may have read an older file, so read it again once
    // it is done. Any number of such requests share that one next reload.
    if (this.reloading) {
      const again = () => { this.reloadQueued = undefined; return this.reload() }
      this.reloadQueued ??= this.reloading.then(again, again)
      return this.reloadQueued
    }
    this.reloading = this.doReload().then((result) => {
      this.lastReload = { at: new Date(), ok: result.ok, issues: result.ok ? [] : result.issues }
      return result
    }).finally(() => { this.reloading = undefined })
    return this.reloading
  }

  private async doReload (): Promise<ReloadResult> {
    const { issues, config } = checkConfig(this.options.configFile, { ...(this.options.env ? { env: this.options.env } : {}) })
    if (!config) {
      this.metrics.reloads.inc({ result: 'failure' })
      for (const issue of issues.filter((i) => i.severity === 'error')) {
        this.log.error({ file: issue.file, line: issue.line, col: issue.col, fix: issue.fix }, `config reload rejected: ${issue.message}`)
      }
      return { ok: false, issues }
    }
    const old = this.config
    const oldRuntime = this.handler.runtime
    const oldStore = this.store
    const storeChanged = !isDeepStrictEqual(old.doc.store, config.doc.store)
    const store = storeChanged ? openStore(config.doc.store, this.log, this.metrics) : this.store
    let runtime: Generation
    let built: Generation | undefined
    let opened: Map<string, Listener>
    let signerChanged = false
    let nextSigner: IdentitySigner | undefined
    try {
      runtime = built = await Generation.build(config, { store, log: this.log, now: this.options.now ?? Date.now })
      signerChanged = storeChanged || !isDeepStrictEqual(old.doc.identity.signed, config.doc.identity.signed)
      if (signerChanged) nextSigner = await this.createSigner(config, store)
      for (const listener of config.doc.listeners) {
        const current = this.listenersByName.get(listener.name)
        if (current && isDeepStrictEqual(current.config, listener)) current.reloadTls(config.baseDir)
      }
      // Before the swap: a new listener whose port is taken fails the reload, and the old configuration serves on.
      opened = await this.openNewListeners(config, runtime)
      // A new store is still connecting: give it a moment, so that requests on the new configuration do not fail
      // for that alone (503 store_unavailable); one that stays silent is an outage like any other (store.onError).
      for (const deadline = Date.now() + 2_000; storeChanged && Date.now() < deadline;) {
        if (await store.ping().then(() => true, () => false)) break
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    } catch (error) {
      await built?.close().catch(() => {})
      if (storeChanged) await store.close()
      this.metrics.reloads.inc({ result: 'failure' })
      this.log.error({ err: { message: (error as Error).message } }, 'config reload rejected')
      return { ok: false, issues: [{ severity: 'error', path: [], message: (error as Error).message }] }
    }
    this.config = config
    this.store = store
    this.handler.runtime = runtime
    if (signerChanged) this.useSigner(nextSigner)
    await this.rebindListeners(opened)
    // Listeners that stay open take the new limits for the connections they accept from now on.
    for (const listener of this.listenersByName.values()) {
      const server = listener.server as typeof listener.server & { maxHeaderSize?: number }
      server.headersTimeout = runtime.headersTimeoutMs
      server.requestTimeout = runtime.requestTimeoutMs
      server.maxHeaderSize = runtime.maxHeaderBytes
    }
    this.metrics.reloads.inc({ result: 'success' })
    this.metrics.configInfo.reset()
    this.metrics.configInfo.set({ hash: config.hash.slice(0, 12) }, config.loadedAt.getTime() / 1000)
    this.log.info({ hash: config.hash.slice(0, 12), changed: config.hash !== old.hash }, 'config reloaded')
    // Let requests that started on the old generation finish before its pools close; close() ends it sooner.
    const retire = async (): Promise<void> => {
      if (!this.retired.delete(retire)) return
      await oldRuntime.close()
      if (storeChanged) await oldStore.close()
    }
    this.retired.add(retire)
    setTimeout(() => { void retire() }, 30_000).unref()
    return { ok: true, changed: config.hash !== old.hash }
  }

  /**
   * Watches the config file's folder (editors replace files by rename) and the folders of the files it
   * references; a change reloads after ~200 ms of quiet, once the file reads the same twice (no half-written file).
   */
  private watchFiles (): void {
    for (const watcher of this.watchers) watcher.close()
    this.watchers = []
    const folders = new Set([dirname(resolve(this.options.configFile))])
    for (const file of referencedFiles(this.config)) folders.add(dirname(file))
    for (const folder of folders) {
      try {
        const watcher = watch(folder, { persistent: false }, () => this.scheduleReload())
        watcher.on('error', () => {})
        this.watchers.push(watcher)
      } catch (error) {
        this.log.warn({ folder, err: { message: (error as Error).message } }, 'cannot watch folder; SIGHUP still reloads')
      }
    }
  }

  private scheduleReload (): void {
    if (this.closed) return
    clearTimeout(this.watchTimer)
    this.watchTimer = setTimeout(() => {
      const read = () => { try { return readFileSync(this.options.configFile, 'utf8') } catch { return undefined } }
      const first = read()
      setTimeout(() => {
        if (this.closed) return
        if (first === undefined || read() !== first) { this.scheduleReload(); return }
        void this.reload().then((result) => { if (result.ok) this.watchFiles() })
      }, 50).unref()
    }, 200)
    this.watchTimer.unref()
  }

  /**
   * Opens the listeners a new configuration adds or moves to an address not bound yet. One that reuses the address
   * of a current listener (its TLS changed, or it was renamed) is reopened by rebindListeners, after the old one closes.
   */
  private async openNewListeners (config: LoadedConfig, runtime: Generation): Promise<Map<string, Listener>> {
    const bound = new Set([...this.listenersByName.values()].map((l) => l.config.address))
    const opened = new Map<string, Listener>()
    try {
      for (const listener of config.doc.listeners) {
        const current = this.listenersByName.get(listener.name)
        if (current && isDeepStrictEqual(current.config, listener)) continue
        if (bound.has(listener.address) && !listener.address.endsWith(':0')) continue
        opened.set(listener.name, await openListener(listener, config.baseDir, this.handler, listenerLimits(runtime), this.log))
      }
    } catch (error) {
      await Promise.all([...opened.values()].map(async (l) => await l.close(0)))
      throw error
    }
    return opened
  }

  private async rebindListeners (opened: Map<string, Listener>): Promise<void> {
    const wanted = new Map(this.config.doc.listeners.map((l) => [l.name, l]))
    for (const [name, listener] of this.listenersByName) {
      const next = wanted.get(name)
      if (next && isDeepStrictEqual(listener.config, next)) continue
      this.listenersByName.delete(name)
      void listener.close(5_000)
    }
    for (const [name, listener] of opened) this.listenersByName.set(name, listener)
    for (const [name, config] of wanted) {
      if (this.listenersByName.has(name)) continue
      try {
        this.listenersByName.set(name, await openListener(config, this.config.baseDir, this.handler, listenerLimits(this.handler.runtime), this.log))
      } catch (error) {
        // Its own address was free a moment ago; the configuration is applied, this one listener is missing.
        this.log.error({ listener: name, address: config.address, err: { message: (error as Error).message } }, 'cannot reopen listener')
      }
    }
  }

  /** Stops accepting, drains in-flight requests up to the deadline, closes pools and the store. */
  async close (deadlineMs = parseDuration(this.config.doc.shutdownTimeout)): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearTimeout(this.watchTimer)
    for (const watcher of this.watchers) watcher.close()
    await Promise.all([...this.listenersByName.values()].map((l) => l.close(deadlineMs)))
    // Generations retired by reloads still hold pools and store connections until their timer: close them now.
    await Promise.all([...this.retired].map(async (retire) => await retire()))
    await this.admin?.close()
    this.cluster.close()
    this.traffic.stop()
    await this.handler.runtime?.close()
    this.signer?.close()
    await this.store.close()
  }

  private async createSigner (config: LoadedConfig, store: Store): Promise<IdentitySigner | undefined> {
    const signed = config.doc.identity.signed
    return signed ? await IdentitySigner.create(signed, { store, baseDir: config.baseDir, log: this.log, now: this.options.now ?? Date.now }) : undefined
  }

  /** The signed identity (X-Auth-Identity) follows reloads; the JWKS endpoint reads the current signer. */
  private useSigner (signer: IdentitySigner | undefined): void {
    const previous = this.signer
    this.signer = signer
    if (signer) this.handler.hooks.upstreamIdentity = signedIdentityHook(signer)
    else delete this.handler.hooks.upstreamIdentity
    if (previous !== signer) previous?.close()
  }
}

function listenerLimits (runtime: Generation): ListenerLimits {
  return { maxHeaderBytes: runtime.maxHeaderBytes, headersTimeoutMs: runtime.headersTimeoutMs, requestTimeoutMs: runtime.requestTimeoutMs }
}

/** Files the configuration reads besides itself (certificates, CRLs, and those policy sections name: htpasswd), absolute. */
function referencedFiles (config: LoadedConfig): string[] {
  const files: string[] = []
  const add = (file: unknown) => { if (typeof file === 'string' && file) files.push(resolve(config.baseDir, file)) }
  for (const listener of config.doc.listeners) {
    add(listener.tls?.cert); add(listener.tls?.key); add(listener.tls?.clientCA); add(listener.tls?.crl)
  }
  for (const section of sections) {
    const value = config.doc[section.key]
    if (value !== undefined) files.push(...section.files?.(value, config.baseDir) ?? [])
  }
  return files
}

function openStore (config: StoreConfig, log: Logger, metrics: Metrics): Store {
  return new InstrumentedStore(createStore({ redis: config.redis, prefix: config.prefix, timeoutMs: parseDuration(config.timeout), log }), metrics)
}
