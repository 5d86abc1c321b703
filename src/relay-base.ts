import { openBackend, type Backend, type BackendLog } from './adapters/select-store';
import { createSecretBox, type SecretBox } from './app/secret-box';
import { relaySecret, type Secret } from './app/secrets';
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
  /** The relay secret (see `RelayBaseOptions.secret` for when it is looked for). */
  secret(): Secret;
  /** Seals and opens channel SecretKeys under the relay secret. */
  readonly box: SecretBox;
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
   * 'at-open' (the server, which signs links from its first answer): a secret that cannot be had stops it before the
   * database is touched. 'when-used' (commands): looked for on first use, so that listing accounts on a shared
   * database needs none; a command that seals a channel key stops there, as the server would.
   */
  readonly secret?: 'at-open' | 'when-used';
}

export async function openRelayBase(config: Config, options: RelayBaseOptions = {}): Promise<RelayBase> {
  let secret = options.secret === 'at-open' ? relaySecret(config) : undefined;
  const backend = await openBackend(config, options.log, {
    ...(options.sqliteWriter ? { sqliteWriter: options.sqliteWriter } : {}),
    ...(options.onThreadExit ? { onThreadExit: options.onThreadExit } : {}),
  });
  const theSecret = (): Secret => (secret ??= relaySecret(config));
  let box: SecretBox | undefined;
  const theBox = (): SecretBox => (box ??= createSecretBox(theSecret().value));
  return {
    backend,
    store: backend.store,
    secret: theSecret,
    box: { seal: (plaintext, context) => theBox().seal(plaintext, context), open: (sealed, context) => theBox().open(sealed, context) },
    close: () => backend.store.close(),
  };
}
