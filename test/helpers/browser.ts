/**
 * A real browser for the console's tests: Debian's chromium, headless, driven by playwright-core, with a fresh
 * profile each time. CSP violations the browser reports are collected; axe-core is run in the page.
 */
import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext, type Page } from 'playwright-core'

export const CHROMIUM = process.env.AUTHGATE_CHROMIUM ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p))

const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage']

export interface Browser {
  readonly context: BrowserContext
  readonly page: Page
  readonly profile: string
  /** What the browser reported: CSP violations (securitypolicyviolation events and "Refused to" console messages). */
  readonly cspViolations: string[]
  readonly pageErrors: string[]
  close (): Promise<void>
}

export async function launchBrowser (options: { width?: number, height?: number } = {}): Promise<Browser> {
  if (!CHROMIUM) throw new Error('chromium is not installed (apt-get install chromium), or set AUTHGATE_CHROMIUM')
  const profile = await mkdtemp(join(tmpdir(), 'authgate-chromium-'))
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: options.width ?? 1280, height: options.height ?? 800 },
    timeout: 60_000,
  })
  const cspViolations: string[] = []
  const pageErrors: string[] = []
  await context.exposeBinding('__reportCsp', (_source, text: string) => { cspViolations.push(text) })
  // (Strings: these run in the page, and the tests are compiled without the DOM library.)
  await context.addInitScript({ content: "document.addEventListener('securitypolicyviolation', (e) => { window.__reportCsp(e.violatedDirective + ' ' + e.blockedURI) })" })
  const page = context.pages()[0] ?? await context.newPage()
  page.on('console', (message) => { if (/Content Security Policy|Refused to/i.test(message.text())) cspViolations.push(message.text()) })
  page.on('pageerror', (error) => { pageErrors.push(error.message) })
  return {
    context,
    page,
    profile,
    cspViolations,
    pageErrors,
    async close () {
      await context.close().catch(() => {})
      await rm(profile, { recursive: true, force: true })
    },
  }
}

const axeSource = (() => {
  let source: string | undefined
  return () => source ??= readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')
})()

export interface AxeViolation { id: string, impact: string | null, help: string, nodes: number }

/** axe-core's scan of the page as it is (the source evaluated through the driver, not a script tag: CSP stays strict). */
export async function axeScan (page: Page): Promise<AxeViolation[]> {
  await page.evaluate(axeSource())
  return await page.evaluate(`axe.run(document, { resultTypes: ['violations'] }).then((r) => r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length })))`) as AxeViolation[]
}
