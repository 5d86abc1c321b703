import fs from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
import { createAddressPolicy, webhookUrlProblem } from '../adapters/http-fetch';
import { adjustBalance, createAccount, getAccount, listAccounts, MAX_PREVIOUS_SECRET_SECONDS, rotateWebhookSecret, topUp, updateAccount } from '../app/accounts';
import { createApiKey, listKeys, revokeKey, updateKey, type KeyChanges } from '../app/api-keys';
import { accountView, auditView, keyView, ledgerView, priceBookView } from '../app/admin-views';
import { forceFailTask } from '../app/operator';
import { createPriceBook } from '../app/prices';
import type { Config } from '../config/env';
import { startingPrices } from '../config/prices-file';
import { FieldError, RelayError } from '../domain/errors';
import { TEXT_MAX } from '../domain/operator-limits';
import { MAX_KEY_CONCURRENCY, MAX_KEY_RPM } from '../domain/key-limits';
import { priceTableOf } from '../domain/pricing';
import { systemClock } from '../ports/clock';
import type { Store } from '../ports/store';
import { openRelayBase, type RelayBase } from '../relay-base';

/**
 * Operator commands: a thin layer over the same use cases as the admin API, on the database directly (the server
 * may be running beside them: SQLite WAL and the busy timeout allow it), opened as the server opens it
 * (relay-base.ts): the same store and the same relay secret. A use-case error (unknown id, bad value) prints one
 * line and exits 1.
 */
export async function withRelayBase(config: Config, run: (base: RelayBase) => Promise<void>): Promise<void> {
  const base = await openRelayBase(config, { sqliteWriter: 'inline', secret: 'when-used' });
  try {
    await run(base);
  } catch (err) {
    if (!(err instanceof RelayError)) throw err;
    process.stderr.write(`aigc-relay: ${err.message}\n`);
    process.exitCode = 1;
  } finally {
    await base.close();
  }
}

export const withStore = (config: Config, run: (store: Store) => Promise<void>): Promise<void> => withRelayBase(config, (base) => run(base.store));

export const print = (value: unknown): void => {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
};

/** A whole number, 0 or more; `what` is what the number counts, for the message. */
const wholeNumber =
  (what: string) =>
  (value: string): number => {
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) throw new InvalidArgumentError(`must be a whole number${what ? ` of ${what}` : ''}`);
    return Number(value);
  };
const credits = wholeNumber('credits');
const positive = (value: string): number => {
  const n = wholeNumber('')(value);
  if (n < 1) throw new InvalidArgumentError('must be at least 1');
  return n;
};
/** A per-key limit: 1 to `max`, as the admin API takes it. */
const limitUpTo =
  (max: number) =>
  (value: string): number => {
    const n = positive(value);
    if (n > max) throw new InvalidArgumentError(`must be at most ${max}`);
    return n;
  };
/** Seconds, 0 to `max`. */
const secondsUpTo =
  (max: number) =>
  (value: string): number => {
    const n = wholeNumber('seconds')(value);
    if (n > max) throw new InvalidArgumentError(`must be at most ${max}`);
    return n;
  };
const positiveCredits = (value: string): number => {
  if (credits(value) < 1) throw new InvalidArgumentError('must be a whole number of credits, at least 1');
  return Number(value);
};
/**
 * A signed adjustment, `-500` to take credits away (`500` or `+500` to add): commander passes a negative number through as an argument (not
 * an unknown option) because `adjust` has no subcommands and no option is a digit.
 */
export const signedCredits = (value: string): number => {
  if (!/^[-+]?\d+$/.test(value) || !Number.isSafeInteger(Number(value))) throw new InvalidArgumentError('must be a whole number of credits, negative to take credits away');
  if (Number(value) === 0) throw new InvalidArgumentError('must not be 0');
  return Number(value);
};

/**
 * A stored callback URL passes the same outbound (SSRF) rules as one given to the admin API (admin-schema.ts): a
 * typo or an internal address would otherwise be stored and every webhook to it would fail later, unseen.
 */
function checkCallbackUrl(config: Config, url: string): void {
  const problem = url.length > TEXT_MAX.callbackUrl ? `longer than ${TEXT_MAX.callbackUrl} characters` : webhookUrlProblem(url, createAddressPolicy(config.allowPrivateUrls));
  if (problem?.startsWith('refused:') && config.allowPrivateUrls.length === 0) {
    // The command reads the allowance from its own environment, not from the running server's.
    throw new FieldError('InvalidParameterValue', 'callback_url', `${problem} (to allow it, set AIGC_RELAY_ALLOW_PRIVATE_URLS for this command as for the server)`);
  }
  if (problem) throw new FieldError('InvalidParameterValue', 'callback_url', problem);
}

/** The table in a price file: the table itself, or what `prices show` or the API printed (priceTableOf). */
const priceTableIn = (file: string): unknown => priceTableOf(readJsonFile(file));

function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new FieldError('InvalidParameterValue', file, `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new FieldError('InvalidParameterValue', file, `not JSON (${(err as Error).message})`);
  }
}
/**
 * A limit flag: a number sets it, `none` removes it. (Kept as the word until the action: commander turns a parser's
 * null into ''.)
 */
const NONE = 'none';
const limitOrNone =
  (max: number) =>
  (value: string): number | typeof NONE =>
    value === NONE ? NONE : limitUpTo(max)(value);
const creditsOrNone = (value: string): number | typeof NONE => (value === NONE ? NONE : credits(value));
const patchOf = (o: {
  name?: string;
  rpm?: number | typeof NONE;
  maxConcurrency?: number | typeof NONE;
  spendCap?: number | typeof NONE;
  callbackUrl?: string;
  expiresAt?: string;
}): KeyChanges => {
  const value = (v: number | typeof NONE | undefined) => (v === NONE ? null : v);
  return {
    ...(o.name !== undefined ? { name: o.name } : {}),
    ...(o.callbackUrl !== undefined ? { callbackUrl: o.callbackUrl === NONE ? null : o.callbackUrl } : {}),
    ...(o.expiresAt !== undefined ? { expiresAt: o.expiresAt === NONE ? null : o.expiresAt } : {}),
    ...(o.rpm !== undefined ? { rpm: value(o.rpm) } : {}),
    ...(o.maxConcurrency !== undefined ? { maxConcurrency: value(o.maxConcurrency) } : {}),
    ...(o.spendCap !== undefined ? { spendCap: value(o.spendCap) } : {}),
  };
};

function priceBookFor(store: Store, config: Config) {
  return createPriceBook(store, systemClock, startingPrices(config));
}

export function accountCommands(program: Command, config: () => Config): void {
  const accounts = program.command('accounts').description('manage accounts');
  accounts
    .command('create')
    .requiredOption('--name <name>')
    .option('--balance <credits>', 'starting balance', credits, 0)
    .option('--callback-url <url>', 'default webhook URL for its tasks')
    .action(async (o: { name: string; balance: number; callbackUrl?: string }) =>
      withStore(config(), async (store) => {
        if (o.callbackUrl !== undefined) checkCallbackUrl(config(), o.callbackUrl);
        print(accountView(await createAccount(store, systemClock, { name: o.name, balance: o.balance, ...(o.callbackUrl ? { callbackUrl: o.callbackUrl } : {}) })));
      }),
    );
  accounts
    .command('update <id>')
    .description("rename an account or change its callback URL ('none' removes it)")
    .option('--name <name>')
    .option('--callback-url <url>', "default webhook URL for its tasks; 'none' removes it")
    .action(async (id: string, o: { name?: string; callbackUrl?: string }) =>
      withStore(config(), async (store) => {
        const callbackUrl = o.callbackUrl === NONE ? null : o.callbackUrl;
        if (callbackUrl) checkCallbackUrl(config(), callbackUrl);
        const patch = { ...(o.name !== undefined ? { name: o.name } : {}), ...(callbackUrl !== undefined ? { callbackUrl } : {}) };
        print(accountView(await updateAccount(store, systemClock, id, patch)));
      }),
    );
  accounts
    .command('suspend <id>')
    .description('refuse every API key of the account until it is resumed (tasks already accepted run on)')
    .action(async (id: string) => withStore(config(), async (store) => print(accountView(await updateAccount(store, systemClock, id, { suspended: true })))));
  accounts
    .command('resume <id>')
    .description("let a suspended account's keys in again")
    .action(async (id: string) => withStore(config(), async (store) => print(accountView(await updateAccount(store, systemClock, id, { suspended: false })))));
  accounts
    .command('rotate-webhook-secret <id>')
    .description('a new webhook secret; the one it replaces signs beside it for a day (or --previous-valid-seconds; 0: stops at once)')
    .option('--previous-valid-seconds <n>', `how long the replaced secret still signs, 0 to ${MAX_PREVIOUS_SECRET_SECONDS}`, secondsUpTo(MAX_PREVIOUS_SECRET_SECONDS))
    .action(async (id: string, o: { previousValidSeconds?: number }) =>
      withStore(config(), async (store) => print(accountView(await rotateWebhookSecret(store, systemClock, id, o.previousValidSeconds)))),
    );
  accounts
    .command('get <id>')
    .action(async (id: string) => withStore(config(), async (store) => print(accountView(await getAccount(store, id)))));
  accounts
    .command('list')
    .option('--limit <n>', 'how many, newest first', positive, 100)
    .option('--cursor <accountId>', 'the next page: the accounts after this one (the last id listed)')
    .action(async (o: { limit: number; cursor?: string }) =>
      withStore(config(), async (store) => print((await listAccounts(store, o.limit, o.cursor)).map(accountView))),
    );
  accounts
    .command('top-up')
    .argument('<id>')
    // Parsed by commander, so a bad amount is its usage error, before anything is opened.
    .argument('<credits>', 'whole credits to add, at least 1', positiveCredits)
    .option('--reference <text>', 'kept on the ledger row', 'cli')
    .action(async (id: string, amount: number, o: { reference: string }) =>
      withStore(config(), async (store) => print({ balance: await topUp(store, systemClock, id, amount, o.reference) })),
    );
  accounts
    .command('adjust')
    .description('correct a balance: add credits, or take available ones away with a negative amount')
    .argument('<id>')
    .argument('<credits>', 'whole credits, not 0: positive adds, negative (e.g. -500) takes away', signedCredits)
    .requiredOption('--reason <text>', 'why; kept on the ledger row')
    .action(async (id: string, amount: number, o: { reason: string }) =>
      withStore(config(), async (store) => print({ balance: await adjustBalance(store, systemClock, id, amount, o.reason) })),
    );
  accounts
    .command('ledger <id>')
    .option('--limit <n>', 'how many rows, newest first', positive, 100)
    .option('--cursor <entryId>', 'the next page: the rows older than this one (the last id listed)', positive)
    .action(async (id: string, o: { limit: number; cursor?: number }) =>
      withStore(config(), async (store) => {
        await getAccount(store, id);
        print((await store.accounts.ledger(id, o.limit, o.cursor)).map(ledgerView));
      }),
    );

  const keys = program.command('keys').description('manage API keys');
  keys
    .command('create <accountId>')
    .option('--name <name>')
    .option('--rpm <n>', 'submits per minute (all nodes together on PostgreSQL)', limitUpTo(MAX_KEY_RPM))
    .option('--max-concurrency <n>', 'tasks queued or running at once', limitUpTo(MAX_KEY_CONCURRENCY))
    .option('--spend-cap <credits>', 'most credits held + captured by this key', credits)
    .option('--callback-url <url>', "webhook URL for this key's tasks (before the account's)")
    .option('--expires-at <date-time>', 'RFC 3339, in the future (e.g. 2030-01-31T00:00:00Z): from then on the key is refused')
    .action(async (accountId: string, o: { name?: string; rpm?: number; maxConcurrency?: number; spendCap?: number; callbackUrl?: string; expiresAt?: string }) =>
      withStore(config(), async (store) => {
        if (o.callbackUrl !== undefined) checkCallbackUrl(config(), o.callbackUrl);
        const { record, plaintext } = await createApiKey(store, systemClock, accountId, o);
        print({ ...keyView(record), key: plaintext });
      }),
    );
  keys
    .command('list <accountId>')
    .description('the account’s keys (never their secrets)')
    .action(async (accountId: string) => withStore(config(), async (store) => print((await listKeys(store, accountId)).map(keyView))));
  keys
    .command('update <keyId>')
    .description('change limits or the expiry; `none` removes one')
    .option('--name <name>')
    .option('--rpm <n|none>', 'submits per minute', limitOrNone(MAX_KEY_RPM))
    .option('--max-concurrency <n|none>', 'tasks queued or running at once', limitOrNone(MAX_KEY_CONCURRENCY))
    .option('--spend-cap <credits|none>', 'most credits held + captured', creditsOrNone)
    .option('--callback-url <url|none>', "webhook URL for this key's tasks; 'none' removes it")
    .option('--expires-at <date-time|none>', "RFC 3339, in the future: from then on the key is refused; 'none': it never expires")
    .action(async (keyId: string, o: Parameters<typeof patchOf>[0]) =>
      withStore(config(), async (store) => {
        if (o.callbackUrl !== undefined && o.callbackUrl !== NONE) checkCallbackUrl(config(), o.callbackUrl);
        print(keyView(await updateKey(store, systemClock, keyId, patchOf(o))));
      }),
    );
  keys
    .command('revoke <keyId>')
    .action(async (keyId: string) =>
      withStore(config(), async (store) => {
        await revokeKey(store, keyId, systemClock.now());
        print({ revoked: keyId });
      }),
    );

  const prices = program.command('prices').description('the price table (credits per model version and resolution class)');
  prices.command('show').action(async () => withStore(config(), async (store) => print(priceBookView((await priceBookFor(store, config())).state(), config().billing))));
  prices
    .command('set <file>')
    .description('replace the table with a JSON file (kept in the database; running servers apply it within 2 s)')
    .action(async (file: string) =>
      withStore(config(), async (store) => {
        const book = await priceBookFor(store, config());
        print(priceBookView(await book.set(priceTableIn(file)), config().billing));
      }),
    );
  prices
    .command('reset')
    .description('go back to AIGC_RELAY_PRICES_FILE or the built-in table')
    .action(async () => withStore(config(), async (store) => print(priceBookView(await (await priceBookFor(store, config())).reset(), config().billing))));

  const tasks = program.command('tasks').description('operator actions on tasks');
  tasks
    .command('fail <taskId>')
    .description('force-fail a stuck queued or running task and release its hold')
    .option('--reason <text>')
    .action(async (taskId: string, o: { reason?: string }) =>
      withStore(config(), async (store) => {
        const task = await forceFailTask({ store, clock: systemClock }, taskId, o.reason);
        print({ id: task.id, state: task.state, error: task.error ?? null, released: task.billed ? task.price : 0 });
      }),
    );

  program
    .command('audit')
    .description('recompute balances and holds from the ledger and check every task’s ledger rows; exit 1 on any difference')
    .option('--json', 'print the result as JSON')
    .action(async (o: { json?: boolean }) =>
      withStore(config(), async (store) => {
        const view = auditView(await store.accounts.audit());
        if (o.json) print(view);
        else if (view.ok) process.stdout.write('audit: clean (balances, holds and every task’s ledger rows agree)\n');
        else process.stdout.write(`audit: ${view.differences.length} difference(s)\n${view.differences.map((d) => `  ${d.message}\n`).join('')}`);
        if (!view.ok) process.exitCode = 1;
      }),
    );
}
