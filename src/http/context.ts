import type { ChannelAdmin } from '../app/channels';
import type { FileLinkSigner } from '../app/file-links';
import type { IdempotencyGate } from '../app/idempotency';
import type { ListCursors } from '../app/list-cursors';
import type { PriceBook } from '../app/prices';
import type { SubmitDeps } from '../app/submit-task';
import type { UploadsInProgress } from '../app/uploads';
import type { Config } from '../config/env';
import type { Clock } from '../ports/clock';
import type { FileStorage } from '../ports/file-storage';
import type { Store } from '../ports/store';
import type { TaskEngine } from '../worker/engine';
import type { RelayMetrics } from './metrics';

/** Everything the HTTP layer needs, wired in main.ts. Routes read only this. */
import type { Linger } from './lingering-close';

export interface HttpDeps {
  readonly config: Config;
  readonly store: Store;
  readonly storage: FileStorage;
  /** What the routes ask of the engine: cancels, operator settlements, and the watchers of single tasks. */
  readonly engine: Pick<TaskEngine, 'cancel' | 'settledElsewhere' | 'watchers'>;
  readonly clock: Clock;
  readonly signer: FileLinkSigner;
  /** Seals the cursors of a client's own lists (app/list-cursors.ts). */
  readonly cursors: ListCursors;
  readonly adminToken: string;
  /** The operator's price table: GET/PUT/DELETE /admin/v1/prices. */
  readonly priceBook: PriceBook;
  readonly submit: SubmitDeps;
  readonly metrics: RelayMetrics;
  /** Base of every URL the API returns; known once the server listens. */
  readonly publicUrl: () => string;
  /**
   * AIGC_RELAY_PUBLIC_URL when the operator set one: the OpenAPI document's server, so that a path prefix there
   * (`https://host/api`) reaches generated clients and the docs' "Try it out". Unset, the document names none, and
   * clients use the address they fetched it from.
   */
  readonly announcedUrl?: string;
  /** True while the process drains on SIGTERM: new work gets 503. */
  readonly isShuttingDown: () => boolean;
  /** Idempotency-Key handling for the submit route. */
  readonly idempotency: IdempotencyGate;
  /** The webhook dispatcher, woken when an operator queues a replay. */
  readonly webhooks: { wake(): void };
  /** Upstream channels: /admin/v1/channels. */
  readonly channels: ChannelAdmin;
  /** Uploads admitted and not yet answered, bounded per account and per node (also a gauge in /metrics). */
  readonly uploadsInProgress: UploadsInProgress;
  /** How long and how much a refused client may go on sending before its connection closes (lingering-close.ts). */
  readonly linger?: Linger;
  /** How often an open event stream sends a keep-alive and checks that its key still holds (default 15 s). */
  readonly eventStreamTickMs?: number;
}
