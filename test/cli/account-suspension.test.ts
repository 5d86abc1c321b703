import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from '../helpers/api';
import { runCli } from '../helpers/child';
import { startTestRelay, type TestRelay } from '../helpers/relay';

/**
 * `accounts suspend <id>` and `accounts resume <id>`, on the data dir of a running server: what the command stores
 * is what the server refuses the account's keys by, from their next request on.
 */
let t: TestRelay;
let env: Record<string, string>;
beforeAll(async () => {
  t = await startTestRelay();
  env = { AIGC_RELAY_DATA_DIR: t.dataDir };
});
afterAll(() => t.close());

async function cli(...args: string[]) {
  const res = await runCli(args, env);
  expect(res.code, `${args.join(' ')}: ${res.stderr}`).toBe(0);
  return JSON.parse(res.stdout);
}
const status = async (key: string) => (await apiClient(t.url, key).get('/tencent-vod/v1/requests/nope/status')).body.Response.Error.Message;

describe('aigc-relay accounts suspend|resume', () => {
  it('suspend sets suspended_at and the server refuses the keys; suspending again keeps the time; resume lets them in again', async () => {
    const account = await cli('accounts', 'create', '--name', 'acme', '--balance', '100');
    expect(account.suspended_at).toBeNull();
    const key = await cli('keys', 'create', account.id);
    expect(await status(key.key)).toMatch(/does not exist/); // let in: the unknown task is a 404

    const suspended = await cli('accounts', 'suspend', account.id);
    expect(suspended).toMatchObject({ id: account.id, name: 'acme' });
    expect(Date.parse(suspended.suspended_at)).toBeGreaterThanOrEqual(Date.parse(account.created_at));
    expect(await status(key.key)).toBe('Authorization: this account is suspended');
    expect((await cli('accounts', 'suspend', account.id)).suspended_at).toBe(suspended.suspended_at);
    expect((await cli('accounts', 'get', account.id)).suspended_at).toBe(suspended.suspended_at);
    // The operator's commands still work on it.
    expect(await cli('accounts', 'top-up', account.id, '50')).toEqual({ balance: 150 });

    expect((await cli('accounts', 'resume', account.id)).suspended_at).toBeNull();
    expect(await status(key.key)).toMatch(/does not exist/);
  });

  it('an unknown account: one line, exit 1, no stack trace', async () => {
    for (const command of ['suspend', 'resume']) {
      const res = await runCli(['accounts', command, 'acct_nope'], env);
      expect(res.code, res.stderr).toBe(1);
      expect(res.stdout).toBe('');
      expect(res.stderr).toMatch(/^aigc-relay: .*acct_nope/);
      expect(res.stderr, 'a stack trace').not.toMatch(/\n\s+at /);
    }
  });
});
