import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';
import { createFsFileStorage } from './adapters/fs/file-storage';
import { createInstantProvider } from './adapters/instant/provider';
import { createLocalPreviewProvider } from './adapters/local';
import { createSqliteStore } from './adapters/sqlite';
import { ensureDevAccount } from './app/bootstrap';
import { createFileLinkSigner } from './app/file-links';
import { createInputResolver, type UrlFetcher } from './app/inputs';
import { createOutputSaver } from './app/outputs';
import { loadOrCreateSecret } from './app/secrets';
import type { SubmitDeps } from './app/submit-task';
import type { Config } from './config/env';
import { DEFAULT_PRICES, parsePriceTable, type PriceTable } from './domain/pricing';
import { buildHttpApp } from './http/app';
import { createMetrics } from './http/metrics';
import { systemClock, type Clock } from './ports/clock';
import type { ImageProvider } from './ports/provider';
import { permanentError } from './ports/provider';
import type { Store } from './ports/store';
import { TaskEngine } from './worker/engine';
import { LocalDispatchQueue } from './worker/local-queue';
import { DEFAULT_RETRY, type RetryPolicy } from './worker/retry';

/**
 * All wiring lives here: config → adapters → use cases → engine and HTTP. Tests build a relay through the same
 * function with a few parts swapped (clock, providers, logger).
 */
export interface RelayOverrides {
  readonly clock?: Clock;
  readonly logger?: Logger;
  readonly providers?: readonly ImageProvider[];
  readonly fetchUrl?: UrlFetcher;
  readonly retry?: RetryPolicy;
}

export interface Relay {
  readonly config: Config;
  readonly app: FastifyInstance;
  readonly store: Store;
  readonly engine: TaskEngine;
  readonly logger: Logger;
  /** Set when this start created the admin token / dev key: printed once by `serve`, never again. */
  readonly firstStart: { adminToken?: string; devKey?: string };
  readonly adminToken: string;
  /** Listens, then starts the engine (which resumes whatever a crash left). Returns the base URL. */
  listen(): Promise<string>;
  /** Stops accepting, lets in-flight work finish for up to `drainMs`, closes everything. */
  close(drainMs?: number): Promise<void>;
  publicUrl(): string;
}

function loadPrices(config: Config): PriceTable {
  if (!config.pricesFile) return DEFAULT_PRICES;
  return parsePriceTable(JSON.parse(fs.readFileSync(config.pricesFile, 'utf8')));
}

const noUrlFetcher: UrlFetcher = async (_url, field) => {
  throw permanentError('InvalidParameterValue', `${field}: URL inputs are not enabled on this relay`);
};

export async function createRelay(config: Config, overrides: RelayOverrides = {}): Promise<Relay> {
  const clock = overrides.clock ?? systemClock;
  const logger = overrides.logger ?? pino({ level: config.logLevel, base: { service: 'aigc-relay' } });
  fs.mkdirSync(config.dataDir, { recursive: true });

  const store = createSqliteStore(path.join(config.dataDir, 'relay.db'));
  const storage = createFsFileStorage(path.join(config.dataDir, 'files'));
  const secret = loadOrCreateSecret(config.dataDir, 'secret', config.secret, 32);
  const admin = loadOrCreateSecret(config.dataDir, 'admin-token', config.adminToken, 24);
  const prices = loadPrices(config);

  const providers: readonly ImageProvider[] = overrides.providers ?? [
    config.instantProvider
      ? createInstantProvider()
      : createLocalPreviewProvider({ delayMs: config.previewDelayMs, concurrency: config.previewConcurrency }),
  ];
  const defaultProvider = providers[0]!.id;

  let baseUrl = config.publicUrl ?? `http://${config.host}:${config.port}`;
  let shuttingDown = false;

  const engine = new TaskEngine({
    store,
    queue: new LocalDispatchQueue(store, clock),
    providers,
    clock,
    retry: overrides.retry ?? DEFAULT_RETRY,
    resolveInputs: createInputResolver(store, storage, overrides.fetchUrl ?? noUrlFetcher),
    saveOutputs: createOutputSaver(storage, clock),
    log: logger,
  });
  const metrics = createMetrics({
    queueDepth: () => engine.queueDepth(),
    running: () => engine.runningCount(),
    countByState: () => store.tasks.countByState(),
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
    prices: () => prices,
    route: () => defaultProvider,
    enqueue: (task) => engine.enqueue(task),
    queueDepth: () => engine.queueDepth(),
    maxQueued: config.maxQueued,
  };
  const app = await buildHttpApp(
    {
      config,
      store,
      storage,
      engine,
      clock,
      signer: createFileLinkSigner(secret.value, () => baseUrl),
      adminToken: admin.value,
      prices: () => prices,
      submit,
      metrics,
      publicUrl: () => baseUrl,
      isShuttingDown: () => shuttingDown,
    },
    logger,
  );

  const devAccount = await ensureDevAccount(store, clock, config.devBalance);
  const firstStart = {
    ...(admin.created ? { adminToken: admin.value } : {}),
    ...(devAccount ? { devKey: devAccount.key } : {}),
  };

  return {
    config,
    app,
    store,
    engine,
    logger,
    firstStart,
    adminToken: admin.value,
    publicUrl: () => baseUrl,
    async listen() {
      await app.listen({ host: config.host, port: config.port });
      const address = app.server.address();
      const port = typeof address === 'object' && address ? address.port : config.port;
      const host = config.host.includes(':') ? `[${config.host}]` : config.host;
      if (!config.publicUrl) baseUrl = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`;
      const { recovered, queued } = await engine.start();
      logger.info({ recovered, queued, providers: providers.map((p) => p.id) }, 'engine started');
      return baseUrl;
    },
    async close(drainMs = 10_000) {
      shuttingDown = true;
      await engine.drain(drainMs);
      await app.close();
      await store.close();
    },
  };
}
