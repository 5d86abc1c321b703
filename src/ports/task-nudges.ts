/**
 * Several nodes on one database: asks whichever node follows a task's upstream work to look at it now. Best effort
 * (a nudge nobody hears changes nothing; the follower's own polls are the safety net).
 *
 * Why: Tencent hands a channel's completion events to any node that pulls them. An event about a task another node
 * follows cannot be used where it was pulled; without a word to that node, the task waited for its next poll
 * (stretched to 15 s on channels with events) or for Tencent to offer the event again 30 s later.
 */
export interface TaskNudges {
  send(taskId: string): Promise<void>;
  onNudge(listener: (taskId: string) => void): void;
}
