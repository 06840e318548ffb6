import { isMap, isScalar, isSeq, type Document, type LineCounter, type Node, type Pair } from 'yaml'

/** Maps a path inside the document to a line and column; keyName: point at the key instead of the value. */
export function positionOf (doc: Document, lineCounter: LineCounter, path: ReadonlyArray<string | number>, keyName?: string): { line: number, col: number } {
  let node: unknown = doc.contents
  let best: { line: number, col: number } = { line: 1, col: 1 }
  const at = (n: unknown) => {
    const range = (n as Node | undefined)?.range
    if (range) best = lineCounter.linePos(range[0])
  }
  at(node)
  for (const part of path) {
    if (isMap(node)) {
      const pair = (node.items as Pair[]).find((p) => isScalar(p.key) && String(p.key.value) === String(part))
      if (!pair) break
      node = pair.value
      at(pair.value ?? pair.key)
      if (pair.value == null) at(pair.key)
    } else if (isSeq(node) && typeof part === 'number') {
      node = node.items[part]
      if (node == null) break
      at(node)
    } else break
  }
  if (keyName !== undefined && isMap(node)) {
    const pair = (node.items as Pair[]).find((p) => isScalar(p.key) && String(p.key.value) === keyName)
    if (pair) at(pair.key)
  }
  return best
}

/** Closest candidate by edit distance, for "did you mean". */
export function didYouMean (input: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined
  let bestDistance = Infinity
  for (const candidate of candidates) {
    const d = editDistance(input.toLowerCase(), candidate.toLowerCase())
    if (d < bestDistance) { best = candidate; bestDistance = d }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(input.length / 3)) ? best : undefined
}

function editDistance (a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
      prev = tmp
    }
  }
  return row[b.length]!
}
