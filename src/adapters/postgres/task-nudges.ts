import type { TaskNudges } from '../../ports/task-nudges';
import { NOTIFY_NUDGE, type PgContext } from './context';

/** Nudges as notifications on the nodes' shared channel; the dispatch queue's LISTEN connection delivers them here. */
export class PgTaskNudges implements TaskNudges {
  private readonly listeners: Array<(taskId: string) => void> = [];

  constructor(private readonly ctx: PgContext) {}

  async send(taskId: string): Promise<void> {
    await this.ctx.relaxed.query('SELECT pg_notify($1, $2)', [this.ctx.channel, NOTIFY_NUDGE + taskId]);
  }

  onNudge(listener: (taskId: string) => void): void {
    this.listeners.push(listener);
  }

  /** A nudge arrived (every node hears every nudge, its own included; a node that does not follow the task ignores it). */
  received(taskId: string): void {
    for (const listener of this.listeners) listener(taskId);
  }
}
