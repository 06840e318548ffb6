/** The package's public API: run a gateway in-process, and sign requests to routes that verify signatures. */
export { Gateway, type GatewayOptions } from './gateway.js'
export { checkConfig, loadConfig } from './config/load.js'
export { signRequest, signingInterceptor } from '../policies/index.js'
