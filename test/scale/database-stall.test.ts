import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { apiClient } from '../helpers/api';
import { capturedLog } from '../helpers/captured-log';
import { solidPng } from '../helpers/images';
import { startPausableProxy, type PausableProxy } from '../helpers/pausable-proxy';
import { nodeEnvs } from '../helpers/postgres';
import { describeWithPostgres, suiteDatabase } from '../helpers/postgres-suite';
import { openRelay, PROMPT_BODY, tempDir, waitForTask } from '../helpers/relay';

/**
 * The database stalls for longer than a lease (a failover, a frozen disk or VM) while every node is healthy. No node
 * could renew its leases during it, so when it answers again every running task's lease has lapsed. Before, the
 * first reaper to run then handed them all back: every healthy run was superseded and run again, and each lost an
 * attempt (one on its last attempt was then failed by the crash-loop rule, its client told "an internal error").
 * A lapse says a node is dead only when the database was answering all along; a node that has just seen it come
 * back waits a lease, in which the living renew, before it takes anything (adapters/postgres/database-contact.ts).
 */
const LEASE_MS = 500;
const image = await solidPng('#3366aa', 8, 8);

await describeWithPostgres('a database stall longer than the lease', 'database stall (PostgreSQL)', () => {
  const db = suiteDatabase('relay_db_stall');

  it('costs the tasks that run through it nothing: no hand-back, no second run, no attempt', async () => {
    const database = await db();
    const direct = new pg.Pool({ connectionString: database.url, max: 1 });
    // Dropping the database at the end terminates its connections, one still closing among them (the CI run of
    // session 30 failed on it as an uncaught error); an idle one's error is not this test's failure.
    direct.on('error', () => {});
    const target = new URL(database.url);
    const proxies: PausableProxy[] = [];
    const envs = nodeEnvs(database, 'db-stall');
    /** A node's settings, its database reached through a proxy of its own. */
    const throughProxy = async () => {
      const proxy = await startPausableProxy({ host: target.hostname, port: Number(target.port || 5432) });
      proxies.push(proxy);
      const env = envs();
      const url = new URL(env.AIGC_RELAY_DATABASE_URL!);
      url.port = String(proxy.port);
      return { proxy, env: { ...env, AIGC_RELAY_DATABASE_URL: url.toString(), AIGC_RELAY_LEASE_MS: String(LEASE_MS) } };
    };
    const runner = new ControlledProvider('local-preview', 4, image);
    const first = await throughProxy();
    const a = await openRelay(tempDir(), first.env, { providers: [runner] });
    // A second node that runs nothing: its reaper is the one that would take the first node's tasks.
    const second = await throughProxy();
    const bLog = capturedLog('warn');
    const b = await openRelay(tempDir(), second.env, { providers: [new ControlledProvider('local-preview', 0, image)], logger: bLog.logger });
    try {
      const api = apiClient(a.url, a.relay.firstStart.devKey!);
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) ids.push((await api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).body.request_id as string);
      const firstRuns = await Promise.all(ids.map((id) => runner.whenStarted(id)));

      // The stall itself: three leases in which nothing reaches the database or comes back, for either node.
      first.proxy.pause();
      second.proxy.pause();
      await sleep(3 * LEASE_MS);
      // The worst order after it: the database answers the second node first, and the first node (whose leases
      // lapsed) only once the second has looked for lapsed leases: it handed them back (before), or it says it
      // leaves them a lease (now).
      second.proxy.resume();
      const handedBack = async () =>
        (await direct.query<{ n: number }>(`SELECT count(*)::int AS n FROM tasks WHERE id = ANY($1) AND state <> 'running'`, [ids])).rows[0]!.n;
      const leftALease = () => bLog.lines.some((line) => line.includes('lapsed leases are left a lease'));
      while (!leftALease() && (await handedBack()) === 0) await new Promise((resolve) => setImmediate(resolve));
      first.proxy.resume();

      // Until every task has either been renewed since the stall or been handed back.
      const unrenewed = async () =>
        (
          await direct.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM tasks WHERE id = ANY($1) AND state = 'running' AND lease_until < clock_timestamp() + interval '200 milliseconds'`,
            [ids],
          )
        ).rows[0]!.n;
      while ((await unrenewed()) > 0) await new Promise((resolve) => setImmediate(resolve));

      for (const run of firstRuns) run.succeed();
      // A task handed back runs again on the first node: let those runs finish too, to see what it cost.
      runner.events.on('started', (run: { succeed(): void }) => run.succeed());
      const tasks = await Promise.all(ids.map((id) => waitForTask(a.relay, id)));
      const logs = (await Promise.all(ids.map((id) => a.relay.store.tasks.logs(id)))).flat().map((l) => l.message);
      expect(logs.filter((m) => m.startsWith('Handed back'))).toEqual([]);
      expect(tasks.map((t) => [t.state, t.attempts])).toEqual(ids.map(() => ['succeeded', 1]));
      expect(runner.started.length).toBe(ids.length);
    } finally {
      await a.relay.close(50);
      await b.relay.close(50);
      for (const proxy of proxies) await proxy.close();
      await direct.end();
    }
  });
});
