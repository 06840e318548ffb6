/** The console's explain page (gateway/console): explainRequest on the running gateway's store, read-only. */
import type { ConsoleExplain } from '../../gateway/console/index.js'
import { explainRequest } from './decision.js'
import { ExplainInputError } from './request.js'

export const consoleExplain: ConsoleExplain = async (config, method, url, headers, options) => {
  try {
    return { report: await explainRequest(config, method, url, headers, options) }
  } catch (error) {
    if (error instanceof ExplainInputError) return { inputError: error.message }
    throw error
  }
}
