/**
 * The gRPC rows' upstream (issue 17): a @grpc/grpc-js server with one generic unary method, `/bench.Echo/Unary`,
 * answering every call with the same small message (the HTTP upstream's body). No .proto: messages are raw bytes (the serializers are the
 * identity), so the figures are the transport's, not a codec's.
 *
 * Run as a child of bench/run.ts: sends `{ port }` over IPC once bound to 127.0.0.1 (h2c, no TLS).
 */
import * as grpc from '@grpc/grpc-js'

const UNARY_PATH = '/bench.Echo/Unary'

const REPLY = Buffer.from('{"ok":true,"service":"bench-grpc-upstream"}')
const raw = (bytes: Buffer): Buffer => bytes

const echoService: grpc.ServiceDefinition = {
  Unary: { path: UNARY_PATH, requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
}

const server = new grpc.Server()
server.addService(echoService, {
  Unary: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => { callback(null, REPLY) },
})
const port = await new Promise<number>((resolve, reject) => {
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => error ? reject(error) : resolve(bound))
})
process.send?.({ port })
process.on('disconnect', () => server.tryShutdown(() => process.exit(0)))
