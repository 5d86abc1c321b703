import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';
import { createFsFileStorage } from './adapters/fs/file-storage';
import {
  createAddressPolicy,
  createSafeHttpClient,
  createUrlInputFetcher,
  outboundUrlProblem,
  webhookUrlProblem,
  type Connector,
  type HostResolver,
} from './adapters/http-fetch';
import { createInstantProvider } from './adapters/instant/provider';
import { createTencentVod, TENCENT_VOD_ID, type TencentVodOverrides } from './adapters/tencent';
import { isVodFileId } from './adapters/tencent/request';
import { createLocalPreviewProvider } from './adapters/local';
import { createWebhookPost } from './adapters/webhooks/safe-post';
import { ensureDevAccount } from './app/bootstrap';
import { createChannelAdmin } from './app/channels';
import { createListCursors } from './app/list-cursors';
import { createFileLinkSigner } from './app/file-links';
import { IdempotencyGate } from './app/idempotency';
import { MAX_INPUT_BYTES } from './app/image-check';
import { createInputResolver, type UrlFetcher } from './app/inputs';
import { createOutputDiscarder, createOutputSaver } from './app/outputs';
import { createPriceBook } from './app/prices';
import { loadOrCreateSecret } from './app/secrets';
import type { SubmitDeps } from './app/submit-task';
import { ADMIN_TOKEN_RULE, ConfigError, type Config } from './config/env';
import { startingPrices } from './config/prices-file';
import { isTerminal } from './domain/task-state';
import { buildHttpApp } from './http/app';
import type { Linger } from './http/lingering-close';
import { IMAGE_DECODES } from './app/image-check';
import { UploadsInProgress, UPLOADS_IN_PROGRESS_AT_MOST, UPLOADS_IN_PROGRESS_PER_ACCOUNT } from './app/uploads';
import { resultBody } from './http/presenters';
import { openRelayBase } from './relay-base';
import { checkSharedFilesDir } from './app/shared-files';
import { createMetrics } from './http/metrics';
import { systemClock, type Clock } from './ports/clock';
import type { ImageProvider } from './ports/provider';
import type { Store } from './ports/store';
import { TaskEngine } from './worker/engine';
import type { SettleTiming } from './worker/settlement';
import { startFileCleanup, type FileCleanupJob } from './worker/file-cleanup';
import { startDeliveryPurge, type DeliveryPurgeJob } from './worker/delivery-purge';
import { DEFAULT_RETRY, type RetryPolicy } from './worker/retry';
import { DEFAULT_WEBHOOK_POLICY, WebhookDispatcher, type WebhookPolicy } from './worker/webhook-dispatcher';

/**
 * All wiring lives here: config → adapters → use cases → engine and HTTP. The part the operator commands share (the
 * store and the relay secret) is opened by relay-base.ts, for both. Tests build a relay through the same function
 * with a few parts swapped (clock, providers, logger).
 */
export interface RelayOverrides {
  readonly clock?: Clock;
  readonly logger?: Logger;
  readonly providers?: readonly ImageProvider[];
  readonly fetchUrl?: UrlFetcher;
  /** How outbound requests to client-chosen URLs resolve names and connect (tests pin these to loopback). */
  readonly outbound?: { readonly resolve?: HostResolver; readonly connect?: Connector };
  readonly retry?: RetryPolicy;
  /** How often runs in flight are checked for a task settled outside them (engine.ts; tests use milliseconds). */
  readonly settledSweepMs?: number;
  /** How a run's end is recorded against a failing store (worker/settlement.ts; tests use milliseconds). */
  readonly settleTiming?: SettleTiming;
  /** Webhook backoff and timeouts (tests use millisecond delays). */
  readonly webhookPolicy?: Partial<WebhookPolicy>;
  /** Tencent VOD adapter timing (tests use millisecond polls and short timeouts). */
  readonly tencent?: TencentVodOverrides;
  /** What to do when a writer thread dies (default: log fatal and exit, see below). */
  readonly onThreadExit?: (error: Error) => void;
  /** How long and how much a refused client may go on sending (http/lingering-close.ts; tests lengthen it). */
  readonly linger?: Linger;
  /** How often an open event stream sends a keep-alive and checks its key (routes/events.ts; tests use milliseconds). */
  readonly eventStreamTickMs?: number;
}

export interface Relay {
  readonly config: Config;
  readonly app: FastifyInstance;
  readonly store: Store;
  readonly engine: TaskEngine;
  /** The webhook outbox dispatcher (its `events` report each attempt). */
  readonly webhooks: WebhookDispatcher;
  readonly logger: Logger;
  /**
   * Set when this start created the admin token / dev key: printed once by `serve`, never again. The dev account is
   * made by `listen()`, once the port is bound: a first start that cannot listen must not make a key it never shows.
   */
  readonly firstStart: { readonly adminToken?: string; readonly devKey?: string };
  readonly adminToken: string;
  /** Listens, then starts the engine (which resumes whatever a crash left). Returns the base URL. */
  listen(): Promise<string>;
  /**
   * Where this process itself answers once listening (`http://HOST:PORT` with the port actually bound; 127.0.0.1 for
   * 0.0.0.0), which AIGC_RELAY_PUBLIC_URL may hide behind a proxy's address.
   */
  localUrl(): string;
  /** Stops accepting, lets in-flight work finish for up to `drainMs`, closes everything. */
  close(drainMs?: number): Promise<void>;
  publicUrl(): string;
  /** Upstream channels in service (enabled, not deleted) as this node last read them: the start-up banner names them. */
  channelsInService(): number;
}

/** Expired Temporary files are removed this often (and once at start). */
const FILE_CLEANUP_INTERVAL_MS = 10 * 60 * 1000;

/** An address that cannot be listened on is a configuration mistake: one line naming the variable (API.md). */
function listenError(config: Config, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  const where = `cannot listen on ${config.host}:${config.port}`;
  if (code === 'EADDRINUSE') return new ConfigError('AIGC_RELAY_PORT', `${where}: address already in use`);
  if (code === 'EACCES') return new ConfigError('AIGC_RELAY_PORT', `${where}: permission denied (ports below 1024 need privileges)`);
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') return new ConfigError('AIGC_RELAY_HOST', `${where}: not an address of this machine`);
  return err;
}

export async function createRelay(config: Config, overrides: RelayOverrides = {}): Promise<Relay> {
  // One SSRF policy for every request to a client-chosen address (URL inputs; webhooks can use `outbound` too); its
  // allow list was checked with the rest of the configuration (config/env.ts).
  const urlPolicy = createAddressPolicy(config.allowPrivateUrls);
  const startPrices = startingPrices(config);
  const outbound = createSafeHttpClient({ policy: urlPolicy, ...overrides.outbound });
  const clock = overrides.clock ?? systemClock;
  const logger = overrides.logger ?? pino({ level: config.logLevel, base: { service: 'aigc-relay' } });
  try {
    fs.mkdirSync(config.dataDir, { recursive: true, mode: 0o700 }); // secrets, database and images: this user's only
  } catch (err) {
    throw new ConfigError('AIGC_RELAY_DATA_DIR', `cannot be used: ${(err as Error).message}`);
  }

  // A writer thread that dies (SQLite or files) leaves a relay that cannot finish a task: exit, so the supervisor
  // restarts it; everything is durable and the next start hands unfinished tasks back to the queue.
  const onThreadExit =
    overrides.onThreadExit ??
    ((err: Error) => {
      logger.fatal({ err }, 'a writer thread died; exiting so the relay restarts and recovers its queue');
      process.exit(1);
    });
  // SQLite in the data dir, or PostgreSQL shared by several nodes when AIGC_RELAY_DATABASE_URL is set, and the relay
  // secret: opened as every operator command opens them (relay-base.ts), so that both find the same.
  const base = await openRelayBase(config, { log: logger, onThreadExit, secret: 'at-open' });
  const { backend, store } = base;
  const secret = await base.secret();
  const box = await base.sealingBox();
  // After the secret: a start that the secret stops must not have generated a token it never prints (only a start
  // that gets as far as listening, or fails to, prints it: cli/serve.ts). A damaged admin-token file closes the store.
  let admin: ReturnType<typeof loadOrCreateSecret>;
  try {
    admin = loadOrCreateSecret(config.dataDir, 'admin-token', config.adminToken, 24, ADMIN_TOKEN_RULE);
  } catch (err) {
    await base.close();
    throw err;
  }
  const filesDir = path.join(config.dataDir, 'files');
  // Several nodes: their stored files must be in one place (a warning names a node whose data dir is its own).
  if (backend.kind === 'postgres') {
    await checkSharedFilesDir(filesDir, store.files, clock.now(), (fields, message) => logger.warn(fields, message), {
      adminTokenSet: config.adminToken !== undefined,
    });
  }
  const storage = createFsFileStorage(filesDir, { writer: config.fileWriter, onThreadExit });
  // Signs file links in API answers, webhook bodies and upstream file references; URLs use the base known at call time.
  const signer = createFileLinkSigner(secret.value, () => baseUrl);
  // The file (or built-in) table is the fallback; an operator's PUT /admin/v1/prices, kept in the database, wins.
  const priceBook = await createPriceBook(store, clock, startPrices);

  const localProviders: readonly ImageProvider[] = overrides.providers ?? [
    config.instantProvider
      ? createInstantProvider()
      : createLocalPreviewProvider({ delayMs: config.previewDelayMs, concurrency: config.previewConcurrency }),
  ];
  // The Tencent VOD upstream: its channels (SecretKeys sealed in `box`, under a key derived from the relay secret)
  // decide which models go upstream; the lane's concurrency is their total capacity.
  const tencent = createTencentVod({
    store,
    box,
    clock,
    log: logger,
    fileLink: (fileId, expiresAt) => signer.url(fileId, expiresAt),
    resumeOnStart: backend.kind === 'sqlite',
    // Slots are counted in the process (one node) or in the database (several), either way beside the pool's own
    // count of its runs: a run that ends while its upstream task goes on (a retryable failure, a stop) hands its slot
    // over there (tencent/run-state.ts letGo), kept taken until the task's next attempt adopts the upstream task.
    // Counted by the pool alone, a hand-over freed the slot at once, and another task could go upstream on the
    // channel beside the one still running there, over its max_concurrency. Submissions are paced per node, or by
    // every node together.
    slots: backend.channelSlots,
    pace: backend.submissionPace,
    ...(backend.nudges ? { nudges: backend.nudges } : {}),
    // The configured rate, unless a test's overrides set their own pacing.
    options: { submissions: { limit: config.tencentSubmitsPerSecond, windowMs: 1_000 }, ...overrides.tencent },
    // Output links are the upstream's choice: the same SSRF rules as any address the relay did not choose itself.
    outputs: { policy: urlPolicy, ...overrides.outbound },
  });
  const providers: readonly ImageProvider[] = localProviders.some((p) => p.id === TENCENT_VOD_ID)
    ? localProviders
    : [...localProviders, tencent.provider];
  const defaultProvider = localProviders[0]!.id;

  let localUrl = `http://${config.host}:${config.port}`;
  let baseUrl = config.publicUrl ?? localUrl;
  let shuttingDown = false;
  let fileCleanup: FileCleanupJob | undefined;

  const retry = overrides.retry ?? DEFAULT_RETRY;
  // Set once the webhook dispatcher exists (below): another node handed deliveries back (due now), or some node
  // scheduled a retry (due at `at`).
  let wakeWebhooks = (_at?: number): void => undefined;
  const engine = new TaskEngine({
    store,
    queue: backend.queue(clock, logger, { webhooksDue: (at) => wakeWebhooks(at), channelsChanged: () => tencent.channelsChanged() }),
    providers,
    clock,
    retry,
    ...(overrides.settledSweepMs !== undefined ? { settledSweepMs: overrides.settledSweepMs } : {}),
    sweepWatchedTasks: backend.kind === 'sqlite',
    ...(overrides.settleTiming ? { settleTiming: overrides.settleTiming } : {}),
    resolveInputs: createInputResolver(store, storage, overrides.fetchUrl ?? createUrlInputFetcher(outbound, MAX_INPUT_BYTES)),
    saveOutputs: createOutputSaver(storage, clock),
    discardOutputs: createOutputDiscarder(storage),
    log: logger,
  });
  const uploadsInProgress = new UploadsInProgress(UPLOADS_IN_PROGRESS_AT_MOST, UPLOADS_IN_PROGRESS_PER_ACCOUNT);
  const metrics = createMetrics({
    queueDepth: () => engine.queueDepth(),
    running: () => engine.runningCount(),
    countByState: () => store.tasks.countByState(),
    uploadsInProgress: () => uploadsInProgress.size,
    imageChecksWaiting: () => IMAGE_DECODES.queued,
    taskWatchers: () => engine.watchers.count(),
  });
  engine.events.on('task', (event) => {
    const task = event.task;
    if (!task || task.finishedAt === undefined) return;
    metrics.taskFinished.inc({ outcome: task.state, provider: task.provider });
    if (task.startedAt !== undefined) {
      metrics.queueTime.observe({ provider: task.provider }, (task.startedAt - task.createdAt) / 1000);
      metrics.inferenceTime.observe({ provider: task.provider }, (task.finishedAt - task.startedAt) / 1000);
    }
  });

  const submit: SubmitDeps = {
    store,
    clock,
    prices: () => priceBook.current(),
    // An enabled channel serving the model takes it upstream; otherwise the local provider (instant mode: always).
    route: (input) => (!config.instantProvider && tencent.serves(input) ? TENCENT_VOD_ID : defaultProvider),
    // A VOD FileId can be anyone's media in the channel's app: passed through only where the operator says so.
    upstreamFileId: (provider, fileId) => config.vodFileIds && provider === TENCENT_VOD_ID && isVodFileId(fileId),
    // (Not in instant mode, where no task goes upstream whatever the channels: the plain refusal is the true one.)
    upstreamOnlyFileId: (provider, fileId) =>
      config.vodFileIds && !config.instantProvider && provider !== TENCENT_VOD_ID && isVodFileId(fileId),
    enqueue: (task) => engine.enqueue(task),
    queueDepth: () => engine.queueDepth(),
    maxQueued: config.maxQueued,
    precheckUrl: (url) => outboundUrlProblem(url, urlPolicy),
    precheckWebhookUrl: (url) => webhookUrlProblem(url, urlPolicy),
    requestRates: backend.requestRates,
    billing: config.billing,
  };
  // Webhooks: the store writes the outbox row with the terminal state; the dispatcher delivers it, signed, through
  // the same SSRF-safe client as URL inputs (its own timeouts), and is woken by every terminal event.
  const webhookPolicy: WebhookPolicy = { ...DEFAULT_WEBHOOK_POLICY, ...overrides.webhookPolicy };
  const webhooks = new WebhookDispatcher({
    store,
    clock,
    policy: webhookPolicy,
    post: createWebhookPost(
      createSafeHttpClient({
        policy: urlPolicy,
        totalTimeoutMs: webhookPolicy.timeoutMs,
        readTimeoutMs: webhookPolicy.timeoutMs,
        userAgent: 'aigc-relay-webhooks/1',
        ...overrides.outbound,
      }),
    ),
    render: (task) => JSON.stringify(resultBody(task, baseUrl, clock.now(), signer)),
    // Only a single node may assume every lease is its own leftover; PostgreSQL nodes wait for leases to expire.
    releaseLeasesOnStart: backend.kind === 'sqlite',
    log: logger,
  });
  wakeWebhooks = (at) => (at === undefined ? webhooks.wake() : webhooks.dueAt(at));
  engine.events.on('task', (event) => {
    if (isTerminal(event.state)) webhooks.taskFinished(event.id);
  });
  // Completion events are confirmed upstream only once the terminal state is committed (this event follows the commit).
  engine.events.on('task', (event) => {
    if (isTerminal(event.state)) tencent.onTaskSettled(event.id, event.state);
  });
  // Tencent fetches the relay's own input files through signed links on the public URL: without one they are
  // 127.0.0.1 links it cannot reach, and such tasks fail upstream. Said once, when the first channel in service is seen.
  let warnedPublicUrl = false;
  const warnIfFilesUnreachable = () => {
    if (config.publicUrl || warnedPublicUrl || tencent.enabledChannelCount() === 0) return;
    warnedPublicUrl = true;
    logger.warn(
      { localUrl },
      'a Tencent VOD channel is configured but AIGC_RELAY_PUBLIC_URL is not set: input images uploaded to this relay are sent to Tencent as links on the local address, which it cannot fetch; set AIGC_RELAY_PUBLIC_URL to the address Tencent reaches this relay at',
    );
  };
  tencent.onCapacityChange(() => {
    engine.kick(TENCENT_VOD_ID);
    warnIfFilesUnreachable();
  });
  let deliveryPurge: DeliveryPurgeJob | undefined;

  const app = await buildHttpApp(
    {
      config,
      store,
      storage,
      engine,
      clock,
      signer,
      cursors: createListCursors(secret.value),
      adminToken: admin.value,
      priceBook,
      submit,
      metrics,
      publicUrl: () => baseUrl,
      ...(config.publicUrl ? { announcedUrl: config.publicUrl } : {}),
      isShuttingDown: () => shuttingDown,
      idempotency: new IdempotencyGate({ store: store.idempotency, clock, soleNode: backend.kind === 'sqlite' }),
      webhooks,
      channels: createChannelAdmin({
        channels: store.channels,
        clock,
        box,
        runtime: { refresh: () => tencent.refresh(), health: (id) => tencent.health(id), repoll: (id) => tencent.repoll(id) },
      }),
      uploadsInProgress,
      ...(overrides.linger ? { linger: overrides.linger } : {}),
      ...(overrides.eventStreamTickMs ? { eventStreamTickMs: overrides.eventStreamTickMs } : {}),
    },
    logger,
  );

  const firstStart: { adminToken?: string; devKey?: string } = admin.created ? { adminToken: admin.value } : {};

  return {
    config,
    app,
    store,
    engine,
    webhooks,
    logger,
    firstStart,
    adminToken: admin.value,
    publicUrl: () => baseUrl,
    localUrl: () => localUrl,
    channelsInService: () => tencent.enabledChannelCount(),
    async listen() {
      await tencent.refresh(); // routing knows the channels from the first request on
      warnIfFilesUnreachable();
      try {
        await app.listen({ host: config.host, port: config.port });
      } catch (err) {
        throw listenError(config, err);
      }
      const address = app.server.address();
      const port = typeof address === 'object' && address ? address.port : config.port;
      const host = config.host.includes(':') ? `[${config.host}]` : config.host;
      localUrl = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`;
      if (!config.publicUrl) baseUrl = localUrl;
      // Under a cluster-wide lock: nodes starting together on an empty database create one dev account between them.
      const devAccount = await backend.exclusive('bootstrap', () => ensureDevAccount(store, clock, config.devBalance));
      if (devAccount) firstStart.devKey = devAccount.key;
      await tencent.start();
      const { recovered, queued } = await engine.start();
      fileCleanup = startFileCleanup({ store, storage, clock, log: logger }, FILE_CLEANUP_INTERVAL_MS);
      await webhooks.start();
      deliveryPurge = startDeliveryPurge({ store, clock, log: logger });
      logger.info({ recovered, queued, providers: providers.map((p) => p.id) }, 'engine started');
      return baseUrl;
    },
    async close(drainMs = 10_000) {
      shuttingDown = true;
      await engine.drain(drainMs);
      await tencent.stop();
      // After the engine: webhooks of tasks that finished while draining still get their chance.
      await webhooks.stop(Math.min(drainMs, webhookPolicy.timeoutMs));
      deliveryPurge?.stop();
      await app.close();
      await fileCleanup?.stop();
      await storage.close();
      await base.close();
    },
  };
}
