/** `authgate explain`: what the gateway would do with one request, without serving it. */
export { EXPLAIN_USAGE, explain, explainCommand } from './command.js'
export { explainRequest } from './decision.js'
export { ReadOnlyStore } from './read-only-store.js'
export { formatReport, type ExplainOptions, type ExplainReport, type RouteMiss, type StepReport, type StepVerdict } from './report.js'
export { ExplainInputError } from './request.js'
export { routeMisses } from './route-misses.js'
