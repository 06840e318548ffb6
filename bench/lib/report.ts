/**
 * The benchmark's outputs: the console table, the Markdown table (BENCHMARKS.md), the SVG chart.
 */
import type { LoadResult } from '../load.js'

export interface Row {
  readonly id: string
  readonly title: string
  readonly kind: 'direct' | 'bare' | 'gateway' | 'nginx'
  /** The bare-forward variant this row is compared with (gateway rows). */
  readonly baseline?: string
  /** The row "vs direct" divides by, when not `direct` (the gRPC row: the same call without authgate). */
  readonly direct?: string
  readonly skipped?: string
  readonly load?: LoadResult
  /** CPU µs per request of the process under test (gateway or bare forward; all workers summed). */
  readonly cpuUsPerRequest?: number
  /** Of which in user mode (the rest is the kernel's: system calls, loopback TCP). */
  readonly userCpuUsPerRequest?: number
  /** CPU µs per request of the other processes, for context. */
  readonly otherCpuUsPerRequest?: Record<string, number>
  /** read(2)/write(2)-family system calls per request of the process under test (/proc/PID/io). */
  readonly syscallsPerRequest?: { readonly read: number, readonly write: number }
  readonly vsDirect?: number
  readonly vsBare?: number
  readonly p99VsBare?: number
  /**
   * The row whose CPU per request this one's is compared with (issue 15): a decision with the same chain in proxy
   * mode, nginx + authgate with authgate proxying alone, nginx alone with the bare forward.
   */
  readonly cpuVs?: string
  /** CPU µs per request over the `cpuVs` row's; with --rounds, the median of the per-round ratios. */
  readonly cpuVsRatio?: number
  readonly cpuVsRatioByRound?: readonly number[]
  /** When more than one process serves the row (nginx + authgate): each one's CPU µs per request; they sum to cpuUsPerRequest. */
  readonly cpuPartsUsPerRequest?: Record<string, number>
  readonly note?: string
  /** Share of one CPU the process under test used in the second after the load stopped (h2 and gRPC rows: 0 expected). */
  readonly idleCpuShareAfter?: number
  /** With --rounds: each round's figures (the row's are their medians). */
  readonly rounds?: ReadonlyArray<{ readonly rps: number, readonly p50: number, readonly p99: number, readonly cpuUsPerRequest: number | undefined }>
}

const fixed = (n: number | undefined, digits: number) => n === undefined || !Number.isFinite(n) ? '—' : n.toFixed(digits)
const percent = (n: number | undefined) => n === undefined || !Number.isFinite(n) ? '—' : `${Math.round(n * 100)}%`
const thousands = (n: number | undefined) => n === undefined ? '—' : Math.round(n).toLocaleString('en-US')

const HEADER = ['scenario', 'req/s', 'p50 ms', 'p99 ms', 'CPU µs/req', 'CPU vs', 'vs direct', 'vs bare', 'p99 / bare', 'non-2xx']

function cells (row: Row): string[] {
  if (row.skipped) return [row.title, `skipped: ${row.skipped}`, '', '', '', '', '', '', '', '']
  const load = row.load!
  const bare = row.kind === 'gateway' && row.baseline ? ` (${row.baseline})` : ''
  return [
    row.title,
    thousands(load.rps),
    fixed(load.latencyMs.p50, 2),
    fixed(load.latencyMs.p99, 2),
    fixed(row.cpuUsPerRequest, 1),
    row.cpuVsRatio === undefined ? '—' : `${percent(row.cpuVsRatio)} (${row.cpuVs})`,
    percent(row.vsDirect),
    row.vsBare === undefined ? '—' : `${percent(row.vsBare)}${bare}`,
    row.p99VsBare === undefined ? '—' : `${fixed(row.p99VsBare, 2)}×`,
    String(load.non2xx + load.errors + load.timeouts),
  ]
}

export function consoleTable (rows: readonly Row[]): string {
  const table = [HEADER, ...rows.map(cells)]
  const widths = HEADER.map((_, i) => Math.max(...table.map((r) => r[i]!.length)))
  const line = (r: string[]) => r.map((c, i) => i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)).join('  ').trimEnd()
  const lines = [line(table[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...table.slice(1).map(line)]
  const notes = rowNotes(rows)
  return [...lines, ...notes.length > 0 ? ['', ...notes] : []].join('\n')
}

/** Lines under the table: the CPU split of rows served by several processes; the gRPC rows' server and client CPU. */
function rowNotes (rows: readonly Row[]): string[] {
  const split = rows.filter((r) => r.cpuPartsUsPerRequest && !r.skipped).map((r) =>
    `${r.title}: CPU µs/req ${Object.entries(r.cpuPartsUsPerRequest!).map(([name, us]) => `${name} ${fixed(us, 1)}`).join(' + ')}`)
  const grpc = rows.filter((r) => r.otherCpuUsPerRequest?.['grpc-upstream'] !== undefined && !r.skipped).map((r) =>
    `${r.title}: CPU µs/call grpc-js server ${fixed(r.otherCpuUsPerRequest!['grpc-upstream'], 1)}, grpc-js client ${fixed(r.otherCpuUsPerRequest!.loadgen, 1)}`)
  return [...split, ...grpc]
}

export function markdownTable (rows: readonly Row[]): string {
  const out = [`| ${HEADER.join(' | ')} |`, `|${HEADER.map((_, i) => i === 0 ? '---' : '---:').join('|')}|`]
  for (const row of rows) out.push(`| ${cells(row).join(' | ')} |`)
  const notes = rowNotes(rows)
  if (notes.length > 0) out.push('', ...notes.map((n) => `- ${n}`))
  return out.join('\n')
}

const escapeXml = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/** Two horizontal bar panels: throughput (req/s) and the process-under-test's CPU µs per request. */
export function svgChart (rows: readonly Row[], subtitle: string): string {
  const measured = rows.filter((r) => r.load && !r.skipped)
  const labelWidth = 250
  const panelWidth = 330
  const gap = 40
  const rowHeight = 22
  const top = 64
  const width = labelWidth + panelWidth * 2 + gap + 20
  const height = top + measured.length * rowHeight + 30
  const maxRps = Math.max(1, ...measured.map((r) => r.load!.rps))
  const maxCpu = Math.max(1, ...measured.map((r) => r.cpuUsPerRequest ?? 0))
  const color = (row: Row) => row.kind === 'direct' ? '#9e9e9e' : row.kind === 'bare' ? '#607d8b' : row.kind === 'nginx' ? '#43a047' : '#1e88e5'
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="10" y="20" font-size="15" font-weight="bold">authgate benchmark: 32 connections, loopback</text>`,
    `<text x="10" y="38" fill="#555">${escapeXml(subtitle)}</text>`,
    `<text x="${labelWidth}" y="${top - 8}" font-weight="bold">requests per second (higher is better)</text>`,
    `<text x="${labelWidth + panelWidth + gap}" y="${top - 8}" font-weight="bold">CPU µs per request of the proxy (lower is better)</text>`,
  ]
  measured.forEach((row, i) => {
    const y = top + i * rowHeight
    parts.push(`<text x="${labelWidth - 8}" y="${y + 15}" text-anchor="end">${escapeXml(row.title)}</text>`)
    const rpsWidth = Math.max(1, row.load!.rps / maxRps * (panelWidth - 70))
    parts.push(`<rect x="${labelWidth}" y="${y + 4}" width="${rpsWidth.toFixed(1)}" height="${rowHeight - 8}" fill="${color(row)}"/>`)
    parts.push(`<text x="${labelWidth + rpsWidth + 4}" y="${y + 15}">${thousands(row.load!.rps)}${row.vsBare !== undefined ? ` (${percent(row.vsBare)})` : ''}</text>`)
    if (row.cpuUsPerRequest !== undefined) {
      const x = labelWidth + panelWidth + gap
      const cpuWidth = Math.max(1, row.cpuUsPerRequest / maxCpu * (panelWidth - 50))
      parts.push(`<rect x="${x}" y="${y + 4}" width="${cpuWidth.toFixed(1)}" height="${rowHeight - 8}" fill="${color(row)}"/>`)
      parts.push(`<text x="${x + cpuWidth + 4}" y="${y + 15}">${fixed(row.cpuUsPerRequest, 0)}</text>`)
    }
  })
  const legendY = top + measured.length * rowHeight + 18
  const legend: Array<[string, string]> = [['#9e9e9e', 'direct (no proxy)'], ['#607d8b', 'bare forward (http + undici Pool)'], ['#1e88e5', 'authgate (percent of its bare-forward baseline)']]
  if (measured.some((r) => r.kind === 'nginx')) legend.push(['#43a047', 'nginx (alone, or + authgate decision mode)'])
  legend.forEach(([fill, text], i) => {
    const x = legend.length > 3 ? 10 + i * 240 : labelWidth + i * 230
    parts.push(`<rect x="${x}" y="${legendY - 10}" width="12" height="12" fill="${fill}"/><text x="${x + 16}" y="${legendY}">${escapeXml(text)}</text>`)
  })
  parts.push('</svg>')
  return parts.join('\n') + '\n'
}
