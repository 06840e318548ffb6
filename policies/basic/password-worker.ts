/**
 * Worker thread of the password pool (password-pool.ts): one bcrypt or scrypt comparison per message, off the
 * main thread. Synchronous on purpose: the worker does nothing else, and the sync versions are the fastest.
 */
import { scryptSync, timingSafeEqual } from 'node:crypto'
import { constants, setPriority } from 'node:os'
import { parentPort } from 'node:worker_threads'
import bcrypt from 'bcryptjs'
import type { CheckReply, CheckRequest } from './password-pool.js'

function check ({ password, hash }: CheckRequest): boolean {
  if (hash.kind === 'bcrypt') return bcrypt.compareSync(password, hash.text)
  const expected = Buffer.from(hash.hash.buffer, hash.hash.byteOffset, hash.hash.byteLength)
  const derived = scryptSync(password, Buffer.from(hash.salt.buffer, hash.salt.byteOffset, hash.salt.byteLength), expected.length, hash.options)
  return timingSafeEqual(derived, expected)
}

// On Linux a thread is a task with its own nice value: hashing yields the CPU to the event loop when cores are
// contended (elsewhere setpriority(0) would renice the whole process, so leave it).
if (process.platform === 'linux') {
  try {
    setPriority(constants.priority.PRIORITY_BELOW_NORMAL)
  } catch {
    // Not permitted (a seccomp profile): normal priority still keeps hashing off the event loop.
  }
}

parentPort!.on('message', (request: CheckRequest) => {
  let reply: CheckReply
  try {
    reply = { ok: check(request) }
  } catch (error) {
    // The message only: never the password or the hash.
    reply = { error: error instanceof Error ? error.name : 'Error' }
  }
  parentPort!.postMessage(reply)
})
