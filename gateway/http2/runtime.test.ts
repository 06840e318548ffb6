import test from 'ava'
import { http2RuntimeProblem } from './runtime.js'

test('HTTP/2 is refused on Node releases before the CVE-2023-44487 and CVE-2024-27983 fixes, allowed from them on', (t) => {
  for (const version of ['20.12.0', '20.8.1', '18.20.0', '21.7.1', '19.9.0', '16.20.2']) t.truthy(http2RuntimeProblem(version), version)
  for (const version of ['20.12.1', '20.19.0', '20.20.2', '18.20.1', '21.7.2', '22.0.0', '24.1.0']) t.is(http2RuntimeProblem(version), undefined, version)
  t.is(http2RuntimeProblem(), undefined, 'the runtime these tests run on')
})
