// The exclusive lane: tests that measure latency, and the real-browser tests (each drives a chromium), which other
// test files running at the same time would distort or starve.
// `npm test` runs it alone, one file at a time, after everything else (package.json's configuration excludes it).
import { readFileSync } from 'node:fs'

/** Test files that must run with nothing else running. */
export const exclusiveLane = ['test/exclusive/**/*.test.ts']

const { ava } = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8'))

export default { ...ava, files: exclusiveLane, concurrency: 1 }
