/**
 * In a benchmark child (gateway or bare forward): when `BENCH_PROFILE` names a file, the parent can start and
 * stop the V8 CPU profiler over IPC, so the profile covers the measured window only (not startup, not warm-up).
 * Messages: 'bench:profile:start' -> { profiling: true }; 'bench:profile:stop' -> { profiled: FILE }.
 * With `BENCH_PROFILE_HEAP=1`, V8's sampling heap profiler runs over the same window, counting what minor and major
 * GCs collected too (every allocation, not only what survives), into FILE.heapprofile (summarized by lib/heap-summary.ts).
 */
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'

export function installProfilerHook (): void {
  const file = process.env.BENCH_PROFILE
  if (!file || !process.send) return
  const heap = process.env.BENCH_PROFILE_HEAP === '1'
  const session = new Session()
  session.connect()
  process.on('message', (message) => {
    if (message === 'bench:profile:start') {
      void (async () => {
        await session.post('Profiler.enable')
        await session.post('Profiler.setSamplingInterval', { interval: Number(process.env.BENCH_PROFILE_INTERVAL_US ?? 200) })
        await session.post('Profiler.start')
        if (heap) {
          await session.post('HeapProfiler.enable')
          await session.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMinorGC: true, includeObjectsCollectedByMajorGC: true })
        }
        process.send!({ profiling: true })
      })()
    } else if (message === 'bench:profile:stop') {
      void (async () => {
        const { profile } = await session.post('Profiler.stop')
        writeFileSync(file, JSON.stringify(profile))
        if (heap) {
          const { profile: sampled } = await session.post('HeapProfiler.stopSampling')
          writeFileSync(`${file}.heapprofile`, JSON.stringify(sampled))
        }
        process.send!({ profiled: file })
      })()
    }
  })
}
