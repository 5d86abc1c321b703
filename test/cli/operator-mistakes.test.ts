import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from 'commander';
import { signedCredits } from '../../src/cli/admin';
import { runCli } from '../helpers/child';
import { expectCliRefused } from '../helpers/cli-refusal';
import { tempDir } from '../helpers/relay';

/**
 * An operator's typo on the command line: a message saying what is wrong (no stack trace), exit 1, and nothing
 * written. The admin API refuses the same values with a 400.
 */
let env: Record<string, string>;
let accountId: string;
beforeAll(async () => {
  env = { AIGC_RELAY_DATA_DIR: tempDir() };
  const created = await runCli(['accounts', 'create', '--name', 'acme', '--balance', '100'], env);
  accountId = JSON.parse(created.stdout).id;
});

const refused = (args: string[], mentions: RegExp) => expectCliRefused(env, args, mentions);

describe('operator mistakes on the command line', () => {
  it('accounts top-up with an amount that is not a whole number of credits, at least 1: refused, balance and ledger unchanged', async () => {
    for (const amount of ['1.5', '0', '-5', 'ten', '99999999999999999999']) await refused(['accounts', 'top-up', accountId, amount], /credits/);
    expect(JSON.parse((await runCli(['accounts', 'ledger', accountId], env)).stdout)).toHaveLength(1);
    expect(JSON.parse((await runCli(['accounts', 'get', accountId], env)).stdout).balance).toBe(100);
  });

  it('an adjustment of 0, a fraction, a word or past 2^53: refused by the argument parser; a sign either way is fine', () => {
    for (const amount of ['0', '-0', '+0', '-1.5', 'ten', '5e2', '0x10', '-99999999999999999999']) expect(() => signedCredits(amount), amount).toThrow(InvalidArgumentError);
    expect([signedCredits('-500'), signedCredits('7'), signedCredits('+12')]).toEqual([-500, 7, 12]);
  });

  it('accounts adjust with a bad amount, no reason, a blank one, or more than is available: refused, balance and ledger unchanged', async () => {
    await refused(['accounts', 'adjust', accountId, '-1.5', '--reason', 'x'], /invalid for argument 'credits'/);
    await refused(['accounts', 'adjust', accountId, '-5'], /required option '--reason <text>'/);
    await refused(['accounts', 'adjust', accountId, '-5', '--reason', '  '], /^aigc-relay: reason: must not be empty/);
    await refused(['accounts', 'adjust', accountId, '-101', '--reason', 'claw back'], /^aigc-relay: This adjustment takes 101 credits; the account has 100 available/);
    await refused(['accounts', 'adjust', 'acct_nope', '-5', '--reason', 'x'], /^aigc-relay: account "acct_nope" does not exist/);
    expect(JSON.parse((await runCli(['accounts', 'ledger', accountId], env)).stdout)).toHaveLength(1);
    expect(JSON.parse((await runCli(['accounts', 'get', accountId], env)).stdout).balance).toBe(100);
  });

  it('accounts rotate-webhook-secret: past a week or not seconds refused, secret unchanged; then rotated, the old one kept as asked', async () => {
    const before = JSON.parse((await runCli(['accounts', 'get', accountId], env)).stdout).webhook_secret;
    for (const seconds of ['604801', '1.5', '-1', 'a day']) await refused(['accounts', 'rotate-webhook-secret', accountId, '--previous-valid-seconds', seconds], /previous-valid-seconds/);
    await refused(['accounts', 'rotate-webhook-secret', 'acct_nope'], /^aigc-relay: account "acct_nope" does not exist/);
    expect(JSON.parse((await runCli(['accounts', 'get', accountId], env)).stdout).webhook_secret).toBe(before);
    const rotated = JSON.parse((await runCli(['accounts', 'rotate-webhook-secret', accountId, '--previous-valid-seconds', '60'], env)).stdout);
    expect(rotated.webhook_secret).toMatch(/^whsec_/);
    expect(rotated.webhook_secret).not.toBe(before);
    expect(Date.parse(rotated.previous_webhook_secret_until) - Date.now()).toBeLessThanOrEqual(60_000);
    expect(Date.parse(rotated.previous_webhook_secret_until) - Date.now()).toBeGreaterThan(0);
  });

  it('accounts create with a callback URL the admin API refuses, or an empty name: refused, no account made', async () => {
    await refused(['accounts', 'create', '--name', 'x', '--callback-url', 'not a url'], /^aigc-relay: callback_url: /);
    await refused(['accounts', 'create', '--name', 'x', '--callback-url', 'http://127.0.0.1:9/hook'], /^aigc-relay: callback_url: refused: 127\.0\.0\.1 is a loopback.*set AIGC_RELAY_ALLOW_PRIVATE_URLS for this command/);
    await refused(['accounts', 'create', '--name', ''], /^aigc-relay: name: must not be empty/);
    await refused(['accounts', 'create', '--name', '   '], /^aigc-relay: name: must not be empty/);
    expect(JSON.parse((await runCli(['accounts', 'list'], env)).stdout)).toHaveLength(1);
  });

  it('text past the limits the admin API sets: refused the same way on the command line, nothing written', async () => {
    const long = (n: number) => 'x'.repeat(n);
    await refused(['accounts', 'create', '--name', long(101)], /^aigc-relay: name: must be at most 100 characters/);
    await refused(['accounts', 'update', accountId, '--name', long(101)], /^aigc-relay: name: must be at most 100 characters/);
    await refused(['accounts', 'top-up', accountId, '5', '--reference', long(201)], /^aigc-relay: reference: must be at most 200 characters/);
    await refused(['keys', 'create', accountId, '--name', long(101)], /^aigc-relay: name: must be at most 100 characters/);
    // At the limit is fine: characters, not bytes (a name in Chinese is as long as one in English).
    const named = await runCli(['accounts', 'create', '--name', '名'.repeat(100)], env);
    expect(named.code, named.stderr).toBe(0);
    const accounts = JSON.parse((await runCli(['accounts', 'list'], env)).stdout) as Array<{ id: string; name: string }>;
    expect(accounts.map((a) => a.name)).toEqual(['名'.repeat(100), 'acme']);
    expect(JSON.parse((await runCli(['accounts', 'ledger', accountId], env)).stdout)).toHaveLength(1);
    expect(JSON.parse((await runCli(['keys', 'list', accountId], env)).stdout)).toHaveLength(0);
  });

  it('prices set with a file that is missing or not JSON: one line naming the file', async () => {
    const missing = path.join(env.AIGC_RELAY_DATA_DIR!, 'missing.json');
    await refused(['prices', 'set', missing], new RegExp(`^aigc-relay: ${missing}: cannot be read \\(ENOENT\\)`));
    const garbled = path.join(env.AIGC_RELAY_DATA_DIR!, 'garbled.json');
    fs.writeFileSync(garbled, '{"GEM:3.0": {');
    await refused(['prices', 'set', garbled], new RegExp(`^aigc-relay: ${garbled}: not JSON`));
    expect(JSON.parse((await runCli(['prices', 'show'], env)).stdout).source).toBe('default');
  });

  it('prices show, edited, goes back with prices set; the output has what GET shows', async () => {
    const shown = JSON.parse((await runCli(['prices', 'show'], env)).stdout);
    expect(Object.keys(shown)).toEqual(['prices', 'classes', 'source', 'updated_at', 'billing']);
    shown.prices['GEM:3.0']['1K'] = 3;
    const file = path.join(env.AIGC_RELAY_DATA_DIR!, 'shown.json');
    fs.writeFileSync(file, JSON.stringify(shown));
    const set = await runCli(['prices', 'set', file], env);
    expect(set.code, set.stderr).toBe(0);
    expect(JSON.parse(set.stdout)).toMatchObject({ source: 'database', prices: { 'GEM:3.0': { '1K': 3 } } });
    await runCli(['prices', 'reset'], env);
  });

  it('a command meeting a database another process holds locked past the busy timeout: one line, exit 1, nothing written', { timeout: 20_000 }, async () => {
    const holder = new Database(path.join(env.AIGC_RELAY_DATA_DIR!, 'relay.db'));
    holder.exec('BEGIN IMMEDIATE'); // another process's long write
    try {
      await refused(['accounts', 'top-up', accountId, '5'], /^aigc-relay: the database is busy or unavailable \(a lock held elsewhere, a timeout, a restart\); try again\n$/);
    } finally {
      holder.exec('ROLLBACK');
      holder.close();
    }
    expect(JSON.parse((await runCli(['accounts', 'get', accountId], env)).stdout).balance).toBe(100);
  });

  it('keys create and update with a limit past what the admin API takes: refused, naming the bound', async () => {
    await refused(['keys', 'create', accountId, '--rpm', '1000001'], /rpm.*must be at most 1000000/);
    // A limit is not an amount of money: its message does not say credits.
    await refused(['keys', 'create', accountId, '--rpm', 'abc'], /rpm.*must be a whole number'?$/m);
    await refused(['keys', 'create', accountId, '--max-concurrency', '1.5'], /max-concurrency.*must be a whole number'?$/m);
    await refused(['keys', 'create', accountId, '--max-concurrency', '100001'], /max-concurrency.*must be at most 100000/);
    const key = JSON.parse((await runCli(['keys', 'create', accountId, '--rpm', '1000000'], env)).stdout);
    await refused(['keys', 'update', key.id, '--max-concurrency', '100001'], /max-concurrency.*must be at most 100000/);
    expect(JSON.parse((await runCli(['keys', 'list', accountId], env)).stdout).find((k: { id: string }) => k.id === key.id)).toMatchObject({ rpm: 1_000_000, max_concurrency: null });
  });
});
