/**
 * Bundles the console (Preact + htm, uPlot) into static files: dist/console/{index.html, app.js, app.css}. Run by
 * `npm run build` (and so by `npm ci`, through `prepare`). No file is fetched from another origin at run time.
 */
import { copyFileSync, mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const here = dirname(fileURLToPath(import.meta.url))
const out = process.argv[2] ?? join(here, '..', 'dist', 'console')
mkdirSync(out, { recursive: true })
await build({
  entryPoints: { app: join(here, 'src', 'app.js') },
  bundle: true,
  format: 'esm',
  minify: true,
  target: ['es2022'],
  outdir: out,
  legalComments: 'linked',
  logLevel: 'warning',
})
await build({
  entryPoints: { app: join(here, 'src', 'app.css') },
  bundle: true,
  minify: true,
  outdir: out,
  logLevel: 'warning',
})
copyFileSync(join(here, 'src', 'index.html'), join(out, 'index.html'))
