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
];
