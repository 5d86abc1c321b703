import Database from 'better-sqlite3';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createSqliteStore } from '../../src/adapters/sqlite';
import { createAccount } from '../../src/app/accounts';
import { createApiKey } from '../../src/app/api-keys';
import { validateSubmitBody } from '../../src/domain/validate-submit';
import { systemClock } from '../../src/ports/clock';
import type { Store } from '../../src/ports/store';
import { runCli } from '../helpers/child';
import { PROMPT_BODY, tempDir } from '../helpers/relay';

const PRICE = 40;
const input = validateSubmitBody(PROMPT_BODY);
const open: Array<Store | Database.Database> = [];
afterEach(async () => {
  for (const handle of open.splice(0)) await handle.close();
});

/**
 * Books with one task in each interesting state, made through the store like the relay makes them: succeeded
 * (hold + capture), failed (hold + release), queued (hold only). Returns the ids and a raw connection for corrupting.
 */
async function books() {
  const dataDir = tempDir('aigc-relay-audit-');
  const store = createSqliteStore(path.join(dataDir, 'relay.db'));
  open.push(store);
  const account = await createAccount(store, systemClock, { name: 'audited', balance: 1000 });
  const { record: key } = await createApiKey(store, systemClock, account.id, {});
  const task = async (id: string) => {
    const outcome = await store.tasks.createTask({ id, accountId: account.id, keyId: key.id, requestId: `req_${id}`, input, price: PRICE, provider: 'p', now: Date.now() });
    expect(outcome.ok).toBe(true);
    return id;
  };
  const succeeded = await task('task_succeeded');
  expect(await store.tasks.markRunning(succeeded, Date.now())).toBeDefined();
  expect(await store.tasks.finish(succeeded, { state: 'succeeded', result: { images: [], producedBy: 'test' }, files: [] }, Date.now())).toBe(true);
  const failed = await task('task_failed');
  expect(await store.tasks.finish(failed, { state: 'failed', error: { code: 'X', message: 'x' } }, Date.now())).toBe(true);
  const queued = await task('task_queued');
  const db = new Database(path.join(dataDir, 'relay.db'));
  open.push(db);
  const ledger = db.prepare('INSERT INTO ledger (account_id, task_id, kind, amount, created_at) VALUES (?, ?, ?, ?, 0)');
  return { dataDir, store, db, ledger, accountId: account.id, keyId: key.id, succeeded, failed, queued };
}

describe('audit', () => {
  it('finds nothing in books written by the store', async () => {
    const { store } = await books();
    expect(await store.accounts.audit()).toEqual([]);
  });

  it('a capture on a released task: both present, and the balance no longer matches the ledger', async () => {
    const b = await books();
    b.ledger.run(b.accountId, b.failed, 'capture', PRICE);
    const found = await b.store.accounts.audit();
    expect(found).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ field: 'task', taskId: b.failed, message: expect.stringMatching(/expected no capture, found 1/) }),
        expect.objectContaining({ field: 'balance', stored: 1000 - PRICE, fromLedger: 1000 - 2 * PRICE }),
      ]),
    );
  });

  it('a release on a task that is still queued', async () => {
    const b = await books();
    b.ledger.run(b.accountId, b.queued, 'release', PRICE);
    const found = await b.store.accounts.audit();
    expect(found.map((d) => d.field).sort()).toEqual(['held', 'task']);
    expect(found.find((d) => d.field === 'task')!.message).toMatch(/queued: expected no release, found 1/);
  });

  it('a task with no hold, and a capture of the wrong amount', async () => {
    const b = await books();
    b.db.prepare(
      `INSERT INTO tasks (id, account_id, key_id, request_id, state, provider, priority, price, input, created_at, updated_at)
       VALUES ('task_forged', ?, ?, 'r', 'succeeded', 'p', 0, ?, '{}', 0, 0)`,
    ).run(b.accountId, b.keyId, PRICE);
    b.ledger.run(b.accountId, 'task_forged', 'capture', PRICE - 1);
    const messages = (await b.store.accounts.audit()).filter((d) => d.taskId === 'task_forged').map((d) => d.message);
    expect(messages).toEqual([
      expect.stringMatching(/expected one hold, found 0/),
      expect.stringMatching(/capture of 39 credits, but the task's price is 40/),
    ]);
  });

  it('a hold for a task that does not exist, and a stored held that disagrees with the unfinished tasks', async () => {
    const b = await books();
    b.ledger.run(b.accountId, 'task_ghost', 'hold', 5);
    b.db.prepare('UPDATE accounts SET held = held + 5 WHERE id = ?').run(b.accountId);
    const found = await b.store.accounts.audit();
    // held matches the ledger now (both +5), but not the tasks, and the row belongs to no task.
    expect(found.map((d) => d.field).sort()).toEqual(['held_by_tasks', 'ledger']);
    expect(found.find((d) => d.field === 'held_by_tasks')).toMatchObject({ stored: PRICE + 5, fromLedger: PRICE });
    expect(found.find((d) => d.field === 'ledger')!.message).toMatch(/task_ghost, which does not exist/);
  });

  it("a key's committed counter that drifted from its tasks", async () => {
    const b = await books();
    b.db.prepare('UPDATE api_keys SET spent = spent + 1 WHERE id = ?').run(b.keyId);
    expect(await b.store.accounts.audit()).toEqual([
      expect.objectContaining({ field: 'key_spent', keyId: b.keyId, stored: 2 * PRICE + 1, fromLedger: 2 * PRICE }),
    ]);
  });

  it('the ledger cannot be edited or deleted, only appended to', async () => {
    const b = await books();
    expect(() => b.db.prepare('UPDATE ledger SET amount = 0').run()).toThrow(/append-only/);
    expect(() => b.db.prepare('DELETE FROM ledger').run()).toThrow(/append-only/);
  });

  it('`aigc-relay audit` prints the differences and exits 1; 0 on clean books', async () => {
    const clean = await books();
    const ok = await runCli(['audit'], { AIGC_RELAY_DATA_DIR: clean.dataDir });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/clean/);

    const b = await books();
    b.ledger.run(b.accountId, b.succeeded, 'release', PRICE);
    const bad = await runCli(['audit'], { AIGC_RELAY_DATA_DIR: b.dataDir });
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/task_succeeded \(succeeded, price 40\): succeeded: expected no release, found 1/);
    const json = await runCli(['audit', '--json'], { AIGC_RELAY_DATA_DIR: b.dataDir });
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, differences: expect.arrayContaining([expect.objectContaining({ task_id: b.succeeded })]) });
  });
});

describe('audit on a group-committed (inline) connection', () => {
  it('sorts the ledger with temporary files, not all in memory: temp_store = MEMORY (group-commit.ts) is not in force while it runs', async () => {
    // The accounts query GROUPs every ledger row (EXPLAIN: USE TEMP B-TREE FOR GROUP BY). Under temp_store = MEMORY
    // SQLite's sorter never spills (vdbesort.c sets no PMA size when temp storage is in memory), so the whole ledger
    // was sorted in RAM: 3 million rows took +160 MB of RSS against +33 MB with the default.
    const { openDatabase } = await import('../../src/adapters/sqlite/database');
    const { createGroupCommit } = await import('../../src/adapters/sqlite/group-commit');
    const { auditBooks } = await import('../../src/adapters/sqlite/audit');
    const db = openDatabase(path.join(tempDir('aigc-relay-audit-'), 'relay.db'));
    open.push(db);
    createGroupCommit(db); // what an inline store (CLI commands, AIGC_RELAY_SQLITE_WRITER=inline) does to its connection
    expect(db.pragma('temp_store', { simple: true })).toBe(2);
    const seen: unknown[] = [];
    const watched = new Proxy(db, {
      get(real, prop) {
        if (prop !== 'prepare') return Reflect.get(real, prop, real);
        return (sql: string) => {
          const statement = real.prepare(sql);
          if (!/GROUP BY/.test(sql)) return statement;
          return new Proxy(statement, {
            get(s, p) {
              const value = Reflect.get(s, p, s);
              if (typeof value !== 'function') return value;
              return (...args: unknown[]) => {
                seen.push(real.pragma('temp_store', { simple: true }));
                return value.apply(s, args);
              };
            },
          });
        };
      },
    });
    expect(auditBooks(watched)).toEqual([]);
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((mode) => mode !== 2)).toBe(true);
    expect(db.pragma('temp_store', { simple: true })).toBe(2); // and the group commit's setting is back afterwards
  });
});
