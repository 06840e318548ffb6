/**
 * The Node releases that fixed the HTTP/2 attacks this gateway knows (rapid reset CVE-2023-44487: 18.18.2, 20.8.1;
 * CONTINUATION flood CVE-2024-27983: 18.20.1, 20.12.1, 21.7.2). `check` and start refuse HTTP/2 on an older runtime.
 */
const FIXED: ReadonlyArray<readonly [major: number, minor: number, patch: number]> = [[18, 20, 1], [20, 12, 1], [21, 7, 2]]

/** Why this Node version must not serve HTTP/2, or undefined when it may. */
export function http2RuntimeProblem (version: string = process.versions.node): string | undefined {
  const [major = 0, minor = 0, patch = 0] = version.split('.').map((part) => Number.parseInt(part, 10))
  if (major >= 22) return undefined
  const fixed = FIXED.find(([m]) => m === major)
  const ok = fixed !== undefined && (minor > fixed[1] || (minor === fixed[1] && patch >= fixed[2]))
  return ok ? undefined : `Node ${version} has known HTTP/2 vulnerabilities (CVE-2023-44487 rapid reset, CVE-2024-27983 CONTINUATION flood)`
}
