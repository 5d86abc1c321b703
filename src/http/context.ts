import type { FileLinkSigner } from '../app/file-links';
import type { SubmitDeps } from '../app/submit-task';
import type { Config } from '../config/env';
import type { PriceTable } from '../domain/pricing';
import type { Clock } from '../ports/clock';
import type { FileStorage } from '../ports/file-storage';
import type { Store } from '../ports/store';
import type { TaskEngine } from '../worker/engine';
import type { RelayMetrics } from './metrics';

/** Everything the HTTP layer needs, wired in main.ts. Routes read only this. */
export interface HttpDeps {
  readonly config: Config;
  readonly store: Store;
  readonly storage: FileStorage;
  readonly engine: TaskEngine;
  readonly clock: Clock;
  readonly signer: FileLinkSigner;
  readonly adminToken: string;
  readonly prices: () => PriceTable;
  readonly submit: SubmitDeps;
  readonly metrics: RelayMetrics;
  /** Base of every URL the API returns; known once the server listens. */
  readonly publicUrl: () => string;
  /** True while the process drains on SIGTERM: new work gets 503. */
  readonly isShuttingDown: () => boolean;
}
