// The quick lane for development (`npm run test:quick`): package.json's ava configuration without the slow lane.
// `npm test` (what CI runs) takes package.json's configuration as it is and so runs everything, the slow lane too.
import { readFileSync } from 'node:fs'

/** The slow lane: the 25 s soak and the multi-second fault-injection tests (`npm run test:slow`). */
export const slowLane = ['test/faults/**']

const { ava } = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8'))

export default { ...ava, files: [...ava.files, ...slowLane.map((glob) => `!${glob}`)] }
