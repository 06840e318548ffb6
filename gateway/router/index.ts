export { normalizePath, type NormalizedTarget, type NormalizedPath, type PathRefusal } from './normalize.js'
export {
  compileRoutes, shadowedRoutes, pathPatternProblem, hostPatternProblem, requestHostname,
  type RouteSpec, type RouteTable, type MatchInput, type MatchResult,
} from './match.js'
