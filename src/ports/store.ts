import type { TerminalState } from '../domain/task-state';
import type { AccountStore } from './account-store';
import type { ChannelStore } from './channels';
import type { IdempotencyStore, WebhookStore } from './delivery-store';
import type { FileStore } from './file-store';
import type { TaskStore } from './task-store';

export type * from './account-store';
export type * from './file-store';
export * from './task-store';
export * from './store-errors';

/**
 * The persistence port, phrased as the operations the relay needs rather than as tables, so SQLite and PostgreSQL
 * adapters can each do them atomically their own way. Every method that moves money also moves the task, in one
 * transaction: there is no way to call a "charge" on its own.
 *
 * Times are epoch milliseconds. Money is whole credits.
 */
export interface Store {
  readonly accounts: AccountStore;
  readonly tasks: TaskStore;
  readonly files: FileStore;
  readonly idempotency: IdempotencyStore;
  readonly webhooks: WebhookStore;
  /** Upstream channels (ports/channels.ts). */
  readonly channels: ChannelStore;
  /** Whether the database answers (for /readyz). */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

export type { TerminalState };
