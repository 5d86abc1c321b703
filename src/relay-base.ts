import { openBackend, type Backend, type BackendLog } from './adapters/select-store';
import { createSecretBox, type SecretBox } from './app/secret-box';
import { openRelaySecret, type Secret } from './app/secrets';
import type { Config } from './config/env';
import type { Store } from './ports/store';

/** `aigc-relay migrate`: the same migrations the store runs on opening, without opening the rest. */
export { migrateDatabase } from './adapters/select-store';

/**
 * What the server (main.ts) and every operator command (cli/) open from the configuration, here and only here, so
 * that they cannot disagree about the relay they work on: the store the configuration picks (SQLite in the data dir
 * or the shared PostgreSQL), migrated on opening (and refused if a newer relay migrated it), and the relay secret
 * under its one rule (app/secrets.ts `relaySecret`) with the box that seals channel keys under it. Kept out of
 * main.ts so that a command loads none of the server (Fastify, sharp, the Tencent SDK).
 */
export interface RelayBase {
  readonly backend: Backend;
  readonly store: Store;
  /**
   * The relay secret, checked against the fingerprint the database keeps of it (app/secrets.ts): looked for on the
   * first call (and generated in the data dir if there is none), then the same answer. A secret that is not the
   * database's rejects with a ConfigError naming AIGC_RELAY_SECRET.
   */
  secret(): Promise<Secret>;
  /** Seals and opens channel SecretKeys under the checked relay secret. */
  sealingBox(): Promise<SecretBox>;
  close(): Promise<void>;
}

export interface RelayBaseOptions {
  readonly log?: BackendLog;
  /**
   * Where SQLite's request-path writes run: the server, as configured; a command, inline (it makes a write or two,
   * where a writer thread would only add its start-up).
   */
  readonly sqliteWriter?: Config['sqliteWriter'];
  readonly onThreadExit?: (error: Error) => void;
  /**
   * 'at-open' (the server, which signs links from its first answer): the secret is found and checked against the
   * database before the base is handed over, and one that cannot serve stops the start. 'when-used' (commands): on first use, so that
   * listing accounts needs none; a command that seals a channel key stops there, as the server would.
   */
  readonly secret?: 'at-open' | 'when-used';
  /** Epoch milliseconds, for the fingerprint's record. */
  readonly now?: () => number;
}

export async function openRelayBase(config: Config, options: RelayBaseOptions = {}): Promise<RelayBase> {
  const backend = await openBackend(config, options.log, {
    ...(options.sqliteWriter ? { sqliteWriter: options.sqliteWriter } : {}),
    ...(options.onThreadExit ? { onThreadExit: options.onThreadExit } : {}),
  });
  const now = options.now ?? Date.now;
  let secret: Promise<Secret> | undefined;
  let box: Promise<SecretBox> | undefined;
  const base: RelayBase = {
    backend,
    store: backend.store,
    secret: () => (secret ??= openRelaySecret(config, backend.store.channels, now())),
    sealingBox: () => (box ??= base.secret().then((s) => createSecretBox(s.value))),
    close: () => backend.store.close(),
  };
  if (options.secret === 'at-open') {
    try {
      await base.secret();
    } catch (err) {
      await base.close();
      throw err;
    }
  }
  return base;
}
