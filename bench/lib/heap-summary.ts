/**
 * Bytes allocated per request, by allocating function and its caller, from a sampling heap profile that
 * lib/profiler-hook.ts wrote with `BENCH_PROFILE_HEAP=1` (collected objects included: every allocation counts).
 */

interface HeapNode {
  readonly callFrame: { readonly functionName: string, readonly url: string, readonly lineNumber: number }
  readonly selfSize: number
  readonly children: readonly HeapNode[]
}

export function summarizeHeapProfile (profile: { head: HeapNode }, requests: number, top: number): string {
  const bySite = new Map<string, number>()
  let total = 0
  const walk = (node: HeapNode, caller: string) => {
    const { functionName, url, lineNumber } = node.callFrame
    const site = `${functionName || '(anonymous)'} ${url.replace(/^.*\/(node_modules|\.build)\//, '$1/')}:${lineNumber + 1}`
    if (node.selfSize > 0) {
      // Who asked for it is usually the caller: both are named.
      const key = `${site} < ${caller}`
      bySite.set(key, (bySite.get(key) ?? 0) + node.selfSize)
      total += node.selfSize
    }
    for (const child of node.children) walk(child, site)
  }
  walk(profile.head, '')
  const perRequest = (bytes: number) => (bytes / Math.max(1, requests)).toFixed(0)
  const lines = [`## Allocations: ${perRequest(total)} bytes per request (sampled every 4 KiB; allocating function < its caller)`, '']
  for (const [site, bytes] of [...bySite].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    lines.push(`- ${perRequest(bytes).padStart(6)} B  ${(100 * bytes / total).toFixed(1).padStart(5)}%  ${site}`)
  }
  return lines.join('\n')
}
