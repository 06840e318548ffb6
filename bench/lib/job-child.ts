/** A load generator's side of bench/run.ts's IPC: jobs come in one at a time; `{ result }` or `{ error }` goes back. */
export function answerJobs<Job, Result> (run: (job: Job) => Promise<Result>): void {
  if (!process.send) return
  process.on('message', (job: Job) => {
    run(job).then(
      (result) => process.send!({ result }),
      (error: Error) => process.send!({ error: error.message }),
    )
  })
  process.on('disconnect', () => process.exit(0))
  process.send({ ready: true })
}
