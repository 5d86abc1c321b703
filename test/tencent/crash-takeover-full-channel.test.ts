import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { apiClient } from '../helpers/api';
import { spawnRelay, type RelayProcess } from '../helpers/child';
import { eventually, waitUntil } from '../helpers/eventually';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { tempDir } from '../helpers/relay';
import { addSharedChannel, LOOPBACK_OUTPUTS, makeAccount } from './harness';
import { TencentTestServer } from './server';

/**
 * PostgreSQL, a real relay process killed with SIGKILL while it follows task X upstream, on a channel of
 * max_concurrency 2. The node that comes up next (its replacement here; any other node alike) takes new work first:
 * task Y takes the channel's free slot. X's slot is still counted (its row is left by the dead node, rightly: X is
 * still under way at Tencent), so the node's upstream capacity is Y's one slot, and its lane was full: X, handed back
 * to the queue once its lease lapsed, was not claimed again until Y ended. X finished at Tencent meanwhile, and its
 * client waited on Y, an unrelated task (and on a busy node, on every task after it). X needs no free slot to be
 * followed (it adopts its own): it must be taken over while Y runs.
 */
await describeWithPostgres('a crashed node’s upstream task on a channel the next node fills', 'crash takeover on a full channel (PostgreSQL)', () => {
  let db: TestDatabase | undefined;
  let server: TencentTestServer | undefined;
  const procs: RelayProcess[] = [];
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    await server?.close();
    await db?.drop();
  });

  it('is taken over and finished while the next node’s own task still runs', { timeout: 90_000 }, async () => {
    db = await createTestDatabase('relay_crash_takeover');
    const sql = new pg.Pool({ connectionString: db.url, max: 1 });
    sql.on('error', () => {});
    const account = makeAccount(9);
    server = await TencentTestServer.start({ accounts: [account] });
    server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } }); // finished by the test
    const adminToken = 'crash-takeover-admin-token-0123456789';
    const env = {
      AIGC_RELAY_DATABASE_URL: db.url,
      AIGC_RELAY_DATA_DIR: tempDir('aigc-relay-takeover-'),
      AIGC_RELAY_SECRET: 'crash-takeover-secret-0123456789abcdef0123',
      AIGC_RELAY_ADMIN_TOKEN: adminToken,
      AIGC_RELAY_LEASE_MS: '1500',
      AIGC_RELAY_NODE_ID: 'node',
      ...LOOPBACK_OUTPUTS,
    };
    const first = await spawnRelay(env);
    procs.push(first);
    const admin = apiClient(first.url, adminToken);
    await addSharedChannel(admin, account, server.url, 2);
    const owner = await admin.post('/admin/v1/accounts', { name: 'takeover', balance: 10_000 });
    const key = (await admin.post(`/admin/v1/accounts/${owner.body.id}/keys`, {})).body.key as string;
    const body = { model_name: 'GEM', model_version: '3.0', prompt: 'crash takeover' };

    const x = (await apiClient(first.url, key).post('/tencent-vod/v1/aigc-image', body)).body.request_id as string;
    const upstreamX = await eventually('X upstream', 15_000, async () => server!.bySession(x)[0]);
    await waitUntil(async () => (await sql.query("SELECT checkpoint->>'phase' AS phase FROM tasks WHERE id = $1", [x])).rows[0]?.phase === 'accepted', 10_000, "X's checkpoint");
    expect(await first.stop('SIGKILL')).toBe('SIGKILL');

    const next = await spawnRelay(env);
    procs.push(next);
    const y = (await apiClient(next.url, key).post('/tencent-vod/v1/aigc-image', body)).body.request_id as string;
    await eventually('Y upstream', 15_000, async () => server!.bySession(y)[0]);
    server.finish(upstreamX.taskId); // X is done at Tencent; Y still runs there

    const stateOf = async (id: string) => (await sql.query('SELECT state FROM tasks WHERE id = $1', [id])).rows[0]?.state as string;
    await waitUntil(async () => (await stateOf(x)) === 'succeeded', 20_000, 'X to be taken over and succeed while Y runs');
    expect(await stateOf(y)).toBe('running');
    expect(server.ofTask(x)).toHaveLength(1); // followed, never submitted again

    server.finish(server.bySession(y)[0]!.taskId);
    await waitUntil(async () => (await stateOf(y)) === 'succeeded', 20_000, 'Y to succeed');
    const audit = await apiClient(next.url, adminToken).get('/admin/v1/audit');
    expect(audit.body.ok).toBe(true);
    await sql.end();
  });
});
