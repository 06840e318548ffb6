export { normalizePath, type NormalizedTarget, type NormalizedPath, type PathRefusal } from './normalize.js'
export {
  compileRoutes, shadowedRoutes, methodRestrictedOverlaps, pathPatternProblem, hostPatternProblem, requestHostname,
  type RouteSpec, type RouteTable, type MatchInput, type MatchResult,
} from './match.js'
