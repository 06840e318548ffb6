/**
 * `npm run bench -- --check`: a regression guard for developers (not part of CI). A short run's ratios to the bare
 * forward (throughput, and p99 where both runs have it) and its "CPU vs" ratios (a row's CPU per request over its
 * comparison row's: the h2 rows over HTTP/1.1, gRPC through authgate over direct) are compared with the committed
 * results of load runs (`bench/results/*.json`): each row with the newest run (`startedAt`) that measured it, since
 * partial runs (`--only`) measure some rows only. A row that dropped by more than 10% is named. Ratios, not raw
 * figures, are compared: both sides of a ratio run on the same machine in the same run, so a slower machine moves both.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import type { Row } from './report.js'

export interface Baseline {
  readonly file: string
  readonly startedAt: string
  readonly rows: readonly Row[]
  /** When the rows come from several runs: the file each row is from, by row id. */
  readonly fileOf?: Readonly<Record<string, string>>
}

export interface CheckLine {
  readonly id: string
  readonly title: string
  readonly measure: 'throughput vs bare' | 'p99 vs bare' | 'CPU vs'
  readonly before: number
  readonly now: number
  /** now / before for throughput (higher is better); before / now for p99 and CPU (lower is better). */
  readonly kept: number
  readonly dropped: boolean
}

/**
 * The committed load results (`git ls-files`, so a local run's file does not become its own baseline), merged: each
 * row from the newest run that measured it. `file` and `startedAt` are the newest run's; `fileOf` says where each row is from.
 */
export function lastCommittedResults (rootDir: string, resultsDir: string): Baseline | undefined {
  let files: string[]
  try {
    files = execFileSync('git', ['ls-files', '--', relative(rootDir, resultsDir)], { cwd: rootDir, encoding: 'utf8' })
      .split('\n').filter((f) => /\/\d{4}-\d\d-\d\d-[^/]*\.json$/.test(f))
  } catch {
    return undefined
  }
  const runs: Baseline[] = []
  for (const file of files) {
    // The committed text, not the working tree's: a run since the last commit may have rewritten the file.
    const report = JSON.parse(execFileSync('git', ['show', `HEAD:${file}`], { cwd: rootDir, encoding: 'utf8' })) as { kind?: string, startedAt?: string, rows?: Row[] }
    if (report.kind !== 'load' || !report.startedAt || !report.rows) continue
    runs.push({ file: join(rootDir, file), startedAt: report.startedAt, rows: report.rows })
  }
  return newestPerRow(runs)
}

/** Each row id's row from the newest run that measured it (a row with figures, not skipped). */
export function newestPerRow (runs: readonly Baseline[]): Baseline | undefined {
  const newestFirst = [...runs].sort((a, b) => a.startedAt < b.startedAt ? 1 : a.startedAt > b.startedAt ? -1 : 0)
  if (newestFirst.length === 0) return undefined
  const rows: Row[] = []
  const fileOf: Record<string, string> = {}
  for (const run of newestFirst) {
    for (const row of run.rows) {
      if (!row.load || row.skipped || fileOf[row.id] !== undefined) continue
      rows.push(row)
      fileOf[row.id] = run.file
    }
  }
  return { file: newestFirst[0]!.file, startedAt: newestFirst[0]!.startedAt, rows, fileOf }
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
    if (row.cpuVsRatio !== undefined && before.cpuVsRatio !== undefined && row.cpuVsRatio > 0 && row.cpuVs === before.cpuVs) {
      const kept = before.cpuVsRatio / row.cpuVsRatio
      lines.push({ id: row.id, title: row.title, measure: 'CPU vs', before: before.cpuVsRatio, now: row.cpuVsRatio, kept, dropped: kept < 1 - tolerance })
    }
  }
  return lines
}

export function formatCheck (baseline: Baseline, lines: readonly CheckLine[]): string {
  const files = baseline.fileOf ? [...new Set(lines.map((l) => baseline.fileOf![l.id]).filter((f) => f !== undefined))] : [baseline.file]
  const out = [`compared with ${files.length === 1 && files[0] === baseline.file ? `${baseline.file} (${baseline.startedAt})` : `the newest committed run of each row: ${files.join(', ')}`}`]
  for (const line of lines) {
    const measure = line.measure === 'CPU vs' ? `CPU vs ${baseline.rows.find((r) => r.id === line.id)?.cpuVs ?? '?'}` : line.measure
    out.push(`${line.dropped ? 'DROP' : 'ok  '}  ${line.title} — ${measure}: ${line.before.toFixed(2)} → ${line.now.toFixed(2)} (${Math.round((line.kept - 1) * 100)}%)`)
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
