/**
 * Schema versions, applied in order at open time and recorded in `PRAGMA user_version`. Append; never edit one
 * that has shipped.
 */
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    balance INTEGER NOT NULL CHECK (balance >= 0),
    held INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0 AND held <= balance),
    callback_url TEXT,
    webhook_secret TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    name TEXT,
    secret_hash TEXT NOT NULL,
    rpm INTEGER,
    max_concurrency INTEGER,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
  );
  CREATE INDEX api_keys_account ON api_keys(account_id);
  CREATE TABLE tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    key_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued','running','succeeded','failed','cancelled')),
    provider TEXT NOT NULL,
    priority INTEGER NOT NULL,
    price INTEGER NOT NULL CHECK (price >= 0),
    input TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    progress INTEGER NOT NULL DEFAULT 0,
    checkpoint TEXT,
    result TEXT,
    error_code TEXT,
    error_message TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    webhook_url TEXT,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    not_before INTEGER,
    updated_at INTEGER NOT NULL
  );
  CREATE INDEX tasks_queue ON tasks(provider, priority DESC, seq) WHERE state = 'queued';
  CREATE INDEX tasks_running ON tasks(state) WHERE state = 'running';
  CREATE INDEX tasks_account ON tasks(account_id, seq);
  CREATE TABLE task_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    message TEXT NOT NULL
  );
  CREATE INDEX task_logs_task ON task_logs(task_id, id);
  CREATE TABLE ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    task_id TEXT,
    kind TEXT NOT NULL CHECK (kind IN ('topup','hold','capture','release','adjust')),
    amount INTEGER NOT NULL,
    reference TEXT,
    created_at INTEGER NOT NULL
  );
  CREATE INDEX ledger_account ON ledger(account_id, id);
  -- A task is held, captured and released at most once each, whatever the code above does.
  CREATE UNIQUE INDEX ledger_task_once ON ledger(task_id, kind) WHERE task_id IS NOT NULL;
  CREATE TABLE files (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    task_id TEXT,
    purpose TEXT NOT NULL CHECK (purpose IN ('input','output')),
    storage_key TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    expires_at INTEGER,
    created_at INTEGER NOT NULL
  );
  CREATE INDEX files_task ON files(task_id);
  CREATE INDEX files_expiry ON files(expires_at) WHERE expires_at IS NOT NULL;
  `,
  // Billing and limits: per-key spend cap with a running counter of what the key has committed (held + captured),
  // tasks that were accepted without charging (AIGC_RELAY_BILLING=off), operator price tables, an append-only ledger.
  `
  ALTER TABLE api_keys ADD COLUMN spend_cap INTEGER CHECK (spend_cap IS NULL OR spend_cap >= 0);
  ALTER TABLE api_keys ADD COLUMN spent INTEGER NOT NULL DEFAULT 0 CHECK (spent >= 0);
  UPDATE api_keys SET spent = (SELECT COALESCE(SUM(price), 0) FROM tasks
    WHERE tasks.key_id = api_keys.id AND tasks.state IN ('queued','running','succeeded'));
  ALTER TABLE tasks ADD COLUMN billed INTEGER NOT NULL DEFAULT 1 CHECK (billed IN (0, 1));
  -- max_concurrency counts a key's unfinished tasks; the query repeats this exact WHERE so the planner uses it.
  CREATE INDEX tasks_key_inflight ON tasks(key_id) WHERE state IN ('queued','running');
  -- Every PUT/DELETE of /admin/v1/prices appends a row; the newest one is in force (prices NULL = back to the file).
  CREATE TABLE price_tables (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    prices TEXT,
    created_at INTEGER NOT NULL
  );
  CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;
  CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;
  `,
  // Delivery guarantees: session_id de-duplication and Idempotency-Key reservations (both enforced by their
  // primary keys, never by read-then-insert), per-key callback URLs, and the webhook outbox with its attempt log.
  `
  CREATE TABLE task_sessions (
    account_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, session_id)
  ) WITHOUT ROWID;
  CREATE INDEX task_sessions_created ON task_sessions(created_at);
  CREATE TABLE idempotency_keys (
    account_id TEXT NOT NULL,
    key TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    token TEXT NOT NULL,
    task_id TEXT,
    status INTEGER,
    response TEXT,
    created_at INTEGER NOT NULL,
    completed_at INTEGER,
    PRIMARY KEY (account_id, key)
  ) WITHOUT ROWID;
  CREATE INDEX idempotency_created ON idempotency_keys(created_at);
  ALTER TABLE api_keys ADD COLUMN callback_url TEXT;
  CREATE TABLE webhook_deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    message_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    url TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending','delivered','failed','gone')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    lease_until INTEGER,
    last_status INTEGER,
    replay_of TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    finished_at INTEGER
  );
  CREATE INDEX webhook_due ON webhook_deliveries(next_attempt_at) WHERE state = 'pending';
  CREATE INDEX webhook_task ON webhook_deliveries(task_id, seq);
  -- A task's terminal event enters the outbox once, whatever the code above does; replays point at their original.
  CREATE UNIQUE INDEX webhook_task_once ON webhook_deliveries(task_id) WHERE replay_of IS NULL;
  CREATE TABLE webhook_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(id),
    attempted_at INTEGER NOT NULL,
    status INTEGER,
    error TEXT,
    latency_ms INTEGER NOT NULL,
    response_body TEXT
  );
  CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id, id);
  `,
  // Upstream channels (Tencent VOD accounts). secret_key_sealed is AES-256-GCM under a key derived from the relay
  // secret (app/secret-box.ts). A deleted channel keeps its row (deleted_at) so tasks running on it can be followed.
  `
  CREATE TABLE channels (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL CHECK (provider IN ('tencent-vod')),
    name TEXT NOT NULL,
    secret_id TEXT NOT NULL,
    secret_key_sealed TEXT NOT NULL,
    sub_app_id INTEGER NOT NULL CHECK (sub_app_id >= 0),
    region TEXT,
    endpoint TEXT,
    models TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    weight INTEGER NOT NULL DEFAULT 1 CHECK (weight >= 1),
    max_concurrency INTEGER NOT NULL DEFAULT 1 CHECK (max_concurrency >= 1),
    enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    events_enabled INTEGER NOT NULL DEFAULT 0 CHECK (events_enabled IN (0, 1)),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER
  );
  `,
  // Queued tasks per lane and priority, kept by triggers in the same transaction as every change of a task's state,
  // lane or priority. A queue position is then a sum over at most 21 priorities minus the few tasks behind it,
  // instead of a count of the whole queue on every submit (BENCHMARKS.md). Covers every writer, present and future.
  `
  CREATE TABLE queue_counts (
    provider TEXT NOT NULL,
    priority INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (provider, priority)
  ) WITHOUT ROWID;
  INSERT INTO queue_counts (provider, priority, n)
    SELECT provider, priority, COUNT(*) FROM tasks WHERE state = 'queued' GROUP BY provider, priority;
  CREATE TRIGGER queue_counts_insert AFTER INSERT ON tasks WHEN NEW.state = 'queued' BEGIN
    INSERT INTO queue_counts (provider, priority, n) VALUES (NEW.provider, NEW.priority, 1)
      ON CONFLICT (provider, priority) DO UPDATE SET n = n + 1;
  END;
  CREATE TRIGGER queue_counts_leave AFTER UPDATE OF state, provider, priority ON tasks WHEN OLD.state = 'queued' BEGIN
    UPDATE queue_counts SET n = n - 1 WHERE provider = OLD.provider AND priority = OLD.priority;
  END;
  CREATE TRIGGER queue_counts_enter AFTER UPDATE OF state, provider, priority ON tasks WHEN NEW.state = 'queued' BEGIN
    INSERT INTO queue_counts (provider, priority, n) VALUES (NEW.provider, NEW.priority, 1)
      ON CONFLICT (provider, priority) DO UPDATE SET n = n + 1;
  END;
  CREATE TRIGGER queue_counts_delete AFTER DELETE ON tasks WHEN OLD.state = 'queued' BEGIN
    UPDATE queue_counts SET n = n - 1 WHERE provider = OLD.provider AND priority = OLD.priority;
  END;
  `,
  // Finished tasks per terminal state, kept by triggers in the same transaction as the state change, so /metrics
  // reads three rows instead of counting the whole tasks table (60 ms of blocked event loop per scrape at 100k
  // tasks, growing with every task). Queued comes from queue_counts, running from its partial index.
  `
  CREATE TABLE finished_counts (
    state TEXT PRIMARY KEY,
    n INTEGER NOT NULL
  ) WITHOUT ROWID;
  INSERT INTO finished_counts (state, n)
    SELECT state, COUNT(*) FROM tasks WHERE state IN ('succeeded','failed','cancelled') GROUP BY state;
  CREATE TRIGGER finished_counts_insert AFTER INSERT ON tasks WHEN NEW.state IN ('succeeded','failed','cancelled') BEGIN
    INSERT INTO finished_counts (state, n) VALUES (NEW.state, 1) ON CONFLICT (state) DO UPDATE SET n = n + 1;
  END;
  CREATE TRIGGER finished_counts_change AFTER UPDATE OF state ON tasks WHEN OLD.state <> NEW.state
    AND (OLD.state IN ('succeeded','failed','cancelled') OR NEW.state IN ('succeeded','failed','cancelled')) BEGIN
    UPDATE finished_counts SET n = n - 1 WHERE state = OLD.state;
    INSERT INTO finished_counts (state, n) SELECT NEW.state, 1 WHERE NEW.state IN ('succeeded','failed','cancelled')
      ON CONFLICT (state) DO UPDATE SET n = n + 1;
  END;
  CREATE TRIGGER finished_counts_delete AFTER DELETE ON tasks WHEN OLD.state IN ('succeeded','failed','cancelled') BEGIN
    UPDATE finished_counts SET n = n - 1 WHERE state = OLD.state;
  END;
  `,
  // The retention purge of ended webhook deliveries (webhooks.ts purge) reads them oldest first.
  `
  CREATE INDEX webhook_finished ON webhook_deliveries(finished_at) WHERE finished_at IS NOT NULL;
  `,
  // The fair webhook claim (webhooks.ts claimDue): pending rows by account for its skip scan and per-account due
  // rows; leased rows for the in-flight counts and for nextDueAt.
  `
  CREATE INDEX webhook_pending_account ON webhook_deliveries(account_id, next_attempt_at, seq) WHERE state = 'pending';
  CREATE INDEX webhook_leased ON webhook_deliveries(lease_until) WHERE lease_until IS NOT NULL;
  `,
  // The upload quota (files.ts createUpload) sums an account's uploads; this index covers the sum.
  `
  CREATE INDEX files_account_inputs ON files(account_id, size) WHERE purpose = 'input';
  `,
  // Where the last fair webhook claim stopped (webhooks.ts claimDue), kept with the claims it follows: it rolls
  // back with a claim that fails and outlives a restart, as on PostgreSQL, where every node shares it.
  `
  CREATE TABLE webhook_fair_cursor (
    only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
    after_account TEXT NOT NULL
  );
  `,
  // The relay secret's fingerprint (app/secrets.ts): every process that opens the database with a secret checks its
  // own against it, so a secret that is not the one this database's channel keys were sealed under stops the start.
  `
  CREATE TABLE relay_secret_fingerprint (
    only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
    fingerprint TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  `,
  // Which data dir holds this database's stored files (app/shared-files.ts): a node whose own data dir carries
  // another marker serves none of the others' images, and says so at start.
  `
  CREATE TABLE files_dir_marker (
    only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
    marker TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  `,
  // How many of a task's claims a graceful stop handed back (TaskStore.handBackUnfinished). Those do not count
  // against its retries; before, the hand-back took one off `attempts`, so the next claim had the number of the run
  // it replaced, and that number could not tell the two runs apart (ports/task-store.ts TaskRecord.attempts).
  `
  ALTER TABLE tasks ADD COLUMN handed_back INTEGER NOT NULL DEFAULT 0;
  `,
  // A rotated webhook secret (AccountStore.rotateWebhookSecret): the one it replaced keeps signing beside it until
  // `previous_secret_until`, so receivers can move to the new one without rejecting a delivery meanwhile.
  `
  ALTER TABLE accounts ADD COLUMN previous_webhook_secret TEXT;
  ALTER TABLE accounts ADD COLUMN previous_secret_until INTEGER;
  `,
  // A key's expiry (ApiKeyRecord.expiresAt): from then on it is refused as a revoked key is; null, it never expires.
  `
  ALTER TABLE api_keys ADD COLUMN expires_at INTEGER;
  `,
  // An account's suspension (Account.suspendedAt): while set, every key of the account is refused; null resumes it.
  `
  ALTER TABLE accounts ADD COLUMN suspended_at INTEGER;
  `,
];
