import Database from 'better-sqlite3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { loadConfig } from '../../src/config/env';
import { isTerminal, type TaskState } from '../../src/domain/task-state';
import { createRelay, type Relay, type RelayOverrides } from '../../src/main';
import type { TaskRecord } from '../../src/ports/store';
import type { TaskEvent } from '../../src/worker/engine';
import { apiClient, type ApiClient } from './api';

export interface TestRelay {
  readonly relay: Relay;
  readonly url: string;
  readonly dataDir: string;
  readonly adminToken: string;
  readonly devKey: string;
  /** Client with the dev key. */
  readonly api: ApiClient;
  /** Client with the admin token. */
  readonly admin: ApiClient;
  close(): Promise<void>;
}

/** A fresh directory, inside the run's temporary root (test/global-setup.ts) when there is one. */
export function tempDir(prefix = 'aigc-relay-test-'): string {
  return fs.mkdtempSync(path.join(process.env.AIGC_TEST_TMP ?? os.tmpdir(), prefix));
}

/**
 * How many tasks in `states` the embedded store in `dataDir` holds, read from its database file (WAL readers see
 * what is committed): for a relay in another process, perhaps frozen or killed, that HTTP cannot ask.
 */
export function countTasksOnDisk(dataDir: string, states: readonly TaskState[]): number {
  const db = new Database(path.join(dataDir, 'relay.db'), { readonly: true });
  try {
    const marks = states.map(() => '?').join(', ');
    return (db.prepare(`SELECT COUNT(*) AS n FROM tasks WHERE state IN (${marks})`).get(...states) as { n: number }).n;
  } finally {
    db.close();
  }
}

/**
 * A relay in this process on 127.0.0.1 and a free port, with its own fresh data dir (a fresh database per test
 * file, graphile-worker style). The preview renderer is instant unless `env` says otherwise.
 */
export async function startTestRelay(options: { env?: Record<string, string>; overrides?: RelayOverrides } = {}): Promise<TestRelay> {
  const dataDir = options.env?.AIGC_RELAY_DATA_DIR ?? tempDir();
  const { relay, url } = await openRelay(dataDir, options.env, options.overrides);
  const devKey = relay.firstStart.devKey;
  if (!devKey) throw new Error('expected a fresh database with a dev key');
  return {
    relay,
    url,
    dataDir,
    adminToken: relay.adminToken,
    devKey,
    api: apiClient(url, devKey),
    admin: apiClient(url, relay.adminToken),
    close: () => relay.close(2000),
  };
}

/**
 * A listening relay in this process on `dataDir`, which may already hold a database: a restart after a crash, or
 * another node sharing it. Silent logs, loopback, a free port, an instant preview renderer unless `env` says otherwise.
 */
export async function openRelay(
  dataDir: string,
  env: Record<string, string> = {},
  overrides: RelayOverrides = {},
): Promise<{ relay: Relay; url: string }> {
  const config = loadConfig({
    AIGC_RELAY_DATA_DIR: dataDir,
    AIGC_RELAY_HOST: '127.0.0.1',
    AIGC_RELAY_PORT: '0',
    AIGC_RELAY_LOG_LEVEL: 'silent',
    AIGC_RELAY_PREVIEW_DELAY_MS: '0',
    ...env,
  });
  const relay = await createRelay(config, { logger: pino({ level: 'silent' }), ...overrides });
  return { relay, url: await relay.listen() };
}

/** Resolves when the task reaches one of `states` (default: any terminal state), driven by engine events. */
export function waitForTask(relay: Relay, id: string, states?: readonly TaskState[]): Promise<TaskRecord> {
  const wanted = (state: TaskState) => (states ? states.includes(state) : isTerminal(state));
  return new Promise((resolve, reject) => {
    const onEvent = (event: TaskEvent) => {
      if (event.id !== id || !wanted(event.state)) return;
      relay.engine.events.off('task', onEvent);
      relay.store.tasks.getTask(id).then((t) => resolve(t!), reject);
    };
    relay.engine.events.on('task', onEvent);
    relay.store.tasks.getTask(id).then((task) => {
      if (task && wanted(task.state)) {
        relay.engine.events.off('task', onEvent);
        resolve(task);
      }
    }, reject);
  });
}

export const PROMPT_BODY = {
  model_name: 'GEM',
  model_version: '3.0',
  prompt: 'a red fox in the snow',
  output_config: { resolution: '1080P', aspect_ratio: '16:9' },
} as const;
