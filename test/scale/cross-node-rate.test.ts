import { afterAll, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { apiClient } from '../helpers/api';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { PROMPT_BODY } from '../helpers/relay';
import { startCluster, type TestCluster } from './cluster';

/** A key's `rpm` holds across the nodes of one PostgreSQL database (ports/request-rates.ts), not per node. */
await describeWithPostgres('rpm across nodes', 'rpm across nodes (PostgreSQL)', () => {
  let cluster: TestCluster | undefined;
  afterAll(() => cluster?.close());

  it('a key with rpm 4 gets 4 submits a minute from two nodes together, then 429 with Retry-After on both', async () => {
    cluster = await startCluster('relay_cross_rate');
    const a = await cluster.start('node-a', new ControlledProvider('controlled', 0, cluster.image));
    const b = await cluster.start('node-b', new ControlledProvider('controlled', 0, cluster.image));
    const { accountId, admin } = await cluster.account(a, 'rate');
    const key = (await admin.post(`/admin/v1/accounts/${accountId}/keys`, { rpm: 4 })).body.key as string;
    const clients = [apiClient(a.publicUrl(), key), apiClient(b.publicUrl(), key)];
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => clients[i % 2]!.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)));
    expect(answers.filter((r) => r.status === 200)).toHaveLength(4);
    const refused = answers.filter((r) => r.status === 429);
    expect(refused).toHaveLength(6);
    for (const r of refused) {
      expect(r.body.Response.Error.Code).toBe('RequestLimitExceeded');
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    }
  });
});
