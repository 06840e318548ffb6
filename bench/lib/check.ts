/**
 * `npm run bench -- --check`: a regression guard for developers (not part of CI). A short run's ratios to the bare
 * forward (throughput, and p99 where both runs have it) are compared with the last committed results of a load run
 * (`bench/results/*.json`, newest `startedAt`); a row that dropped by more than 10% is named. The ratio, not the
 * raw req/s, is compared: the bare forward runs on the same machine in the same run, so a slower machine moves both.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import type { Row } from './report.js'

export interface Baseline { readonly file: string, readonly startedAt: string, readonly rows: readonly Row[] }

export interface CheckLine {
  readonly id: string
  readonly title: string
  readonly measure: 'throughput vs bare' | 'p99 vs bare'
  readonly before: number
  readonly now: number
  /** now / before for throughput (higher is better); before / now for p99 (lower is better). */
  readonly kept: number
  readonly dropped: boolean
}

/** The committed load results (`git ls-files`, so a local run's file does not become its own baseline). */
export function lastCommittedResults (rootDir: string, resultsDir: string): Baseline | undefined {
  let files: string[]
  try {
    files = execFileSync('git', ['ls-files', '--', relative(rootDir, resultsDir)], { cwd: rootDir, encoding: 'utf8' })
      .split('\n').filter((f) => /\/\d{4}-\d\d-\d\d-[^/]*\.json$/.test(f))
  } catch {
    return undefined
  }
  let best: Baseline | undefined
  for (const file of files) {
    // The committed text, not the working tree's: a run since the last commit may have rewritten the file.
    const report = JSON.parse(execFileSync('git', ['show', `HEAD:${file}`], { cwd: rootDir, encoding: 'utf8' })) as { kind?: string, startedAt?: string, rows?: Row[] }
    if (report.kind !== 'load' || !report.startedAt || !report.rows) continue
    if (best === undefined || report.startedAt > best.startedAt) best = { file: join(rootDir, file), startedAt: report.startedAt, rows: report.rows }
  }
  return best
}

/** Every gateway row both runs measured, with what it kept of its ratio; `dropped` past `tolerance` (0.10). */
export function compareRatios (baseline: readonly Row[], current: readonly Row[], tolerance = 0.10): CheckLine[] {
  const lines: CheckLine[] = []
  for (const row of current) {
    const before = baseline.find((r) => r.id === row.id)
    if (before === undefined) continue
    if (row.vsBare !== undefined && before.vsBare !== undefined && before.vsBare > 0) {
      const kept = row.vsBare / before.vsBare
      lines.push({ id: row.id, title: row.title, measure: 'throughput vs bare', before: before.vsBare, now: row.vsBare, kept, dropped: kept < 1 - tolerance })
    }
    if (row.p99VsBare !== undefined && before.p99VsBare !== undefined && row.p99VsBare > 0) {
      const kept = before.p99VsBare / row.p99VsBare
      lines.push({ id: row.id, title: row.title, measure: 'p99 vs bare', before: before.p99VsBare, now: row.p99VsBare, kept, dropped: kept < 1 - tolerance })
    }
  }
  return lines
}

export function formatCheck (baseline: Baseline, lines: readonly CheckLine[]): string {
  const out = [`compared with ${baseline.file} (${baseline.startedAt})`]
  for (const line of lines) {
    out.push(`${line.dropped ? 'DROP' : 'ok  '}  ${line.title} — ${line.measure}: ${line.before.toFixed(2)} → ${line.now.toFixed(2)} (${Math.round((line.kept - 1) * 100)}%)`)
  }
  const dropped = lines.filter((l) => l.dropped)
  out.push(dropped.length === 0 ? 'no row dropped by more than 10%' : `${dropped.length} row(s) dropped by more than 10%: ${[...new Set(dropped.map((l) => l.id))].join(', ')}`)
  return out.join('\n')
}

/** Reads a results file (for tests and for `--check FILE`). */
export function readResults (file: string): Baseline {
  const report = JSON.parse(readFileSync(file, 'utf8')) as { startedAt: string, rows: Row[] }
  return { file, startedAt: report.startedAt, rows: report.rows }
}
