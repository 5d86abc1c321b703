/**
 * The SessionId of each upstream submission. Tencent refuses a SessionId it has seen before (for days), and that
 * is what makes a submission without a clear answer safe to resolve: sending it again under the same SessionId
 * either creates the one task or is refused (reconcile.ts). So a SessionId belongs to one submission, not to the
 * task for ever:
 *
 * - round 0 is the task id itself (what every task used before rounds existed);
 * - round n is `<task id>-r<n>`, taken only once nothing can exist upstream under the round before: Tencent
 *   refused the submission outright (it may count refused requests towards its de-duplication too, and the next
 *   try would then be refused as a duplicate), or the upstream task it created ended in a failure worth another
 *   try (a model's concurrency limit, a backlog, an internal error), after which its SessionId can never be sent
 *   again.
 *
 * The round in use is in the task's checkpoint, written before each submission, so a crash resumes with the same
 * SessionId it may have sent. A task id is a UUID (36 characters), well inside Tencent's 50.
 */
const ROUND = /^(.+)-r(\d+)$/;

export function sessionIdOf(taskId: string, round: number): string {
  return round === 0 ? taskId : `${taskId}-r${round}`;
}

/** The relay task a SessionId was sent for (whatever its round). */
export function taskIdOfSession(sessionId: string): string {
  return ROUND.exec(sessionId)?.[1] ?? sessionId;
}
