import path from 'node:path';
import type { Command } from 'commander';
import { createSqliteStore } from '../adapters/sqlite';
import { createAccount, createApiKey, topUp } from '../app/accounts';
import type { Config } from '../config/env';
import { systemClock } from '../ports/clock';
import type { Store } from '../ports/store';

/** Operator commands that work on the database directly (the server may be running: SQLite WAL allows it). */
async function withStore<T>(config: Config, run: (store: Store) => Promise<T>): Promise<T> {
  const store = createSqliteStore(path.join(config.dataDir, 'relay.db'));
  try {
    return await run(store);
  } finally {
    await store.close();
  }
}

const print = (value: unknown): void => {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
};

export function accountCommands(program: Command, config: () => Config): void {
  const accounts = program.command('accounts').description('manage accounts');
  accounts
    .command('create')
    .requiredOption('--name <name>')
    .option('--balance <credits>', 'starting balance', '0')
    .action(async (o: { name: string; balance: string }) =>
      withStore(config(), async (store) => print(await createAccount(store, systemClock, { name: o.name, balance: Number(o.balance) }))),
    );
  accounts
    .command('get <id>')
    .action(async (id: string) => withStore(config(), async (store) => print((await store.accounts.getAccount(id)) ?? { error: 'not found' })));
  accounts
    .command('top-up <id> <credits>')
    .action(async (id: string, credits: string) =>
      withStore(config(), async (store) => print({ balance: await topUp(store, systemClock, id, Number(credits), 'cli') })),
    );

  const keys = program.command('keys').description('manage API keys');
  keys
    .command('create <accountId>')
    .option('--name <name>')
    .action(async (accountId: string, o: { name?: string }) =>
      withStore(config(), async (store) => {
        const { record, plaintext } = await createApiKey(store, systemClock, accountId, o.name ? { name: o.name } : {});
        print({ id: record.id, key: plaintext });
      }),
    );
  keys
    .command('revoke <keyId>')
    .action(async (keyId: string) => withStore(config(), async (store) => print({ revoked: await store.accounts.revokeKey(keyId, Date.now()) })));

  program
    .command('audit')
    .description('recompute balances and holds from the ledger; exit 1 on any difference')
    .action(async () =>
      withStore(config(), async (store) => {
        const differences = await store.accounts.audit();
        print({ ok: differences.length === 0, differences });
        if (differences.length) process.exitCode = 1;
      }),
    );
}
