import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_PRICES } from '../../src/domain/pricing';
import { runCli } from '../helpers/child';
import { tempDir } from '../helpers/relay';

/** A data dir of its own, and the CLI on it for commands that must succeed (exit 0; their JSON output parsed). */
function freshCli() {
  const env = { AIGC_RELAY_DATA_DIR: tempDir() };
  const cli = async (...args: string[]) => {
    const res = await runCli(args, env);
    expect(res.code, `${args.join(' ')}: ${res.stderr}`).toBe(0);
    return JSON.parse(res.stdout);
  };
  return { env, cli };
}

/** The operator CLI over the same use cases as the admin API, on a data dir of its own (no server needed). */
describe('aigc-relay accounts | keys | prices', () => {
  it('creates, lists, tops up, issues and limits keys, revokes, and changes prices', async () => {
    const { env, cli } = freshCli();

    const account = await cli('accounts', 'create', '--name', 'acme', '--balance', '500');
    expect(account).toMatchObject({ name: 'acme', balance: 500, held: 0, available: 500 });
    expect(await cli('accounts', 'top-up', account.id, '250')).toEqual({ balance: 750 });
    expect(await cli('accounts', 'get', account.id)).toMatchObject({ id: account.id, balance: 750 });
    expect((await cli('accounts', 'list')).map((a: { id: string }) => a.id)).toContain(account.id);
    const hooked = await cli('accounts', 'update', account.id, '--name', 'acme inc', '--callback-url', 'https://hooks.example.com/acme');
    expect(hooked).toMatchObject({ name: 'acme inc', callback_url: 'https://hooks.example.com/acme', balance: 750 });
    expect((await cli('accounts', 'update', account.id, '--callback-url', 'none')).callback_url ?? null).toBeNull();

    const key = await cli('keys', 'create', account.id, '--name', 'ci', '--rpm', '30', '--max-concurrency', '4', '--spend-cap', '100');
    expect(key).toMatchObject({ name: 'ci', rpm: 30, max_concurrency: 4, spend_cap: 100, spent: 0 });
    expect(key.key).toMatch(/^ar_key_/);
    const updated = await cli('keys', 'update', key.id, '--rpm', 'none', '--max-concurrency', '9');
    expect(updated).toMatchObject({ rpm: null, max_concurrency: 9, spend_cap: 100 });
    expect(await cli('keys', 'update', key.id, '--callback-url', 'https://hooks.example.com/ci')).toMatchObject({ callback_url: 'https://hooks.example.com/ci' });
    expect((await cli('keys', 'update', key.id, '--callback-url', 'none')).callback_url ?? null).toBeNull();
    expect(await cli('keys', 'revoke', key.id)).toEqual({ revoked: key.id });
    const listed = await cli('keys', 'list', account.id);
    expect(listed).toEqual([expect.objectContaining({ id: key.id, rpm: null, max_concurrency: 9, revoked_at: expect.any(String) })]);
    expect(JSON.stringify(listed)).not.toContain(key.key.split('.')[1]);
    const hookedKey = await cli('keys', 'create', account.id, '--callback-url', 'https://hooks.example.com/k2');
    expect(hookedKey).toMatchObject({ callback_url: 'https://hooks.example.com/k2' });

    const file = path.join(env.AIGC_RELAY_DATA_DIR, 'prices.json');
    fs.writeFileSync(file, JSON.stringify({ ...DEFAULT_PRICES, 'Qwen:0925': { '1K': 1, '2K': 2, '4K': 3 } }));
    expect(await cli('prices', 'set', file)).toMatchObject({ source: 'database', prices: { 'Qwen:0925': { '1K': 1 } } });
    expect(await cli('prices', 'reset')).toMatchObject({ source: 'default', prices: DEFAULT_PRICES });
  });

  it('accounts list and ledger page with --cursor (the last id printed): every row once; an unknown account cursor exits 1', async () => {
    const { env, cli } = freshCli();
    const account = await cli('accounts', 'create', '--name', 'acme', '--balance', '10');
    await cli('accounts', 'create', '--name', 'beta');
    for (const amount of ['1', '2', '3']) await cli('accounts', 'top-up', account.id, amount);
    const first = await cli('accounts', 'ledger', account.id, '--limit', '3');
    const rest = await cli('accounts', 'ledger', account.id, '--limit', '3', '--cursor', String(first[2].id));
    expect([...first, ...rest].map((e: { amount: number }) => e.amount)).toEqual([3, 2, 1, 10]);
    const [newest] = await cli('accounts', 'list', '--limit', '1');
    const older = await cli('accounts', 'list', '--cursor', newest.id);
    expect([newest, ...older].map((a: { name: string }) => a.name).sort()).toEqual(['acme', 'beta']);
    const unknown = await runCli(['accounts', 'list', '--cursor', 'acct_nope'], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/cursor: names no account/);
  });

  it('accounts adjust takes a negative amount (-500) with a reason, and a positive one; each is an adjust row on the ledger', async () => {
    const { env, cli } = freshCli();
    const account = await cli('accounts', 'create', '--name', 'acme', '--balance', '1200');
    expect(await cli('accounts', 'adjust', account.id, '-500', '--reason', 'top-up entered twice')).toEqual({ balance: 700 });
    // The option may come first too.
    expect(await cli('accounts', 'adjust', '--reason', 'goodwill', account.id, '25')).toEqual({ balance: 725 });
    expect(await cli('accounts', 'get', account.id)).toMatchObject({ balance: 725, held: 0, available: 725 });
    expect((await cli('accounts', 'ledger', account.id)).slice(0, 2)).toEqual([
      expect.objectContaining({ kind: 'adjust', amount: 25, reference: 'goodwill' }),
      expect.objectContaining({ kind: 'adjust', amount: -500, reference: 'top-up entered twice' }),
    ]);
    const audit = await runCli(['audit'], env);
    expect(audit.code, audit.stdout).toBe(0);
  });

  it('an unknown id or a bad price file is one line on stderr and exit 1', async () => {
    const env = { AIGC_RELAY_DATA_DIR: tempDir() };
    const missing = await runCli(['accounts', 'get', 'acct_nope'], env);
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim()).toBe('aigc-relay: account "acct_nope" does not exist');
    const file = path.join(env.AIGC_RELAY_DATA_DIR, 'bad.json');
    fs.writeFileSync(file, JSON.stringify({ 'GEM:3.0': { '1K': 1, '2K': 1, '4K': 1 } }));
    const bad = await runCli(['prices', 'set', file], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^aigc-relay: prices: missing "GEM:2.5"/);
  });
});
