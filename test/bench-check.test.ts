import test from 'ava'
import { compareRatios, formatCheck } from '../bench/lib/check.js'
import type { Row } from '../bench/lib/report.js'

const row = (id: string, vsBare: number | undefined, p99VsBare?: number): Row => ({ id, title: id, kind: 'gateway', ...(vsBare !== undefined ? { vsBare } : {}), ...(p99VsBare !== undefined ? { p99VsBare } : {}) })

test('bench --check names the rows whose ratio to the bare forward dropped by more than 10%, and only those', (t) => {
  const before = [row('public', 0.84, 1.2), row('apikey-static', 0.70, 1.5), row('jwt-hs256', 0.70), row('gone', 0.5)]
  const now = [row('public', 0.77, 1.25), row('apikey-static', 0.64, 1.8), row('jwt-hs256', 0.80), row('new-row', 0.9)]
  const lines = compareRatios(before, now)
  t.deepEqual(lines.filter((l) => l.dropped).map((l) => `${l.id} ${l.measure}`), ['apikey-static p99 vs bare'])
  t.deepEqual(lines.map((l) => l.id), ['public', 'public', 'apikey-static', 'apikey-static', 'jwt-hs256'], 'rows in one run only are not compared')
  // public kept 0.77/0.84 = 91.7%: not a drop; apikey-static's throughput kept 91.4%, its p99 1.5/1.8 = 83%.
  const text = formatCheck({ file: 'bench/results/x.json', startedAt: '2026-11-28T00:00:00Z', rows: before }, lines)
  t.regex(text, /^DROP {2}apikey-static — p99 vs bare: 1\.50 → 1\.80 \(-17%\)$/m)
  t.regex(text, /1 row\(s\) dropped by more than 10%: apikey-static$/)
  t.regex(formatCheck({ file: 'f', startedAt: 's', rows: before }, compareRatios(before, before)), /no row dropped by more than 10%$/)
})
