
/**
 * PostgreSQL schema versions, applied in order and recorded in `schema_migrations`. Append; never edit one that has
 * shipped. Each entry says which SQLite migrations (src/adapters/sqlite/migrations.ts) it mirrors, so the two
 * adapters keep the same tables, columns and constraints. Differences that are deliberate: BIGINT for money, times
 * and sequence numbers; BOOLEAN and JSONB where SQLite has 0/1 and TEXT; the dispatch lease columns, which only
 * a multi-node queue needs; SQL functions for the hot writes (one round trip each, batched by group-commit.ts); and
 * `queue_counts` (SQLite 5) kept per database session (24): one counter row per lane and priority, updated by every
 * submit and claim, would be a row that every node's writes queue on until their commit reaches disk.
 */
/**
 * A migration: SQL run in one transaction with its version row, or indexes built CONCURRENTLY, outside any
 * transaction, so that the nodes still running keep writing to the table while a new version builds an index on it
 * (a plain CREATE INDEX blocks every write to the table for the whole build, and on a table of millions of tasks the
 * other nodes' submits would time out). An interrupted build leaves an invalid index behind, so each one is dropped
 * first if it exists; the version row is written once every index is built.
 */
export type Migration = string | { readonly concurrentIndexes: ReadonlyArray<{ readonly name: string; readonly on: string }> };

/**
 * Where each SQL function's current body is: the version (1-based) whose migration last defined it. The finish has
 * been wrapped twice, by renaming the function and defining a new one of the old name that calls it, so the body a
 * reader finds first under a name is not always the one that runs: `aigc_finish_task` (8, restated by 25: the token
 * of the finish that settled a task) → `aigc_finish_fenced` (15: lease, attempt and cancel fences) → `aigc_settle_task` (4, the
 * settlement itself, defined there as `aigc_finish_task` and renamed in 6). 25 restates the bodies of 8, 10 and 16
 * for databases that applied those versions before they were edited. A test reads the migrations and holds this
 * table to them.
 */
export const CURRENT_FUNCTION_VERSIONS: Readonly<Record<string, number>> = {
  ledger_append_only: 1,
  aigc_enqueue_delivery: 26,
  aigc_create_task: 4,
  aigc_settle_task: 4,
  aigc_finish_task: 25,
  aigc_finish_fenced: 15,
  aigc_count_queue: 24,
  aigc_compact_queue_counts: 24,
  aigc_count_finished: 27,
  aigc_compact_counts: 27,
  aigc_take_rate: 25,
  aigc_take_turn: 25,
};

export const PG_MIGRATIONS: readonly Migration[] = [
  // Mirrors SQLite 1 (core tables) and 2 (key spend caps, billed flag, price tables, append-only ledger).
  `
  CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    balance BIGINT NOT NULL CONSTRAINT accounts_balance_not_negative CHECK (balance >= 0),
    held BIGINT NOT NULL DEFAULT 0 CONSTRAINT accounts_held_not_negative CHECK (held >= 0),
    callback_url TEXT,
    webhook_secret TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- No statement can overdraw an account, whatever the code above does.
    CONSTRAINT accounts_held_within_balance CHECK (held <= balance)
  );
  CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    name TEXT,
    secret_hash TEXT NOT NULL,
    rpm INTEGER,
    max_concurrency INTEGER,
    spend_cap BIGINT CHECK (spend_cap IS NULL OR spend_cap >= 0),
    spent BIGINT NOT NULL DEFAULT 0 CHECK (spent >= 0),
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
  );
  CREATE INDEX api_keys_account ON api_keys(account_id);
  CREATE TABLE tasks (
    seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    key_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued','running','succeeded','failed','cancelled')),
    provider TEXT NOT NULL,
    priority INTEGER NOT NULL,
    price BIGINT NOT NULL CHECK (price >= 0),
    billed BOOLEAN NOT NULL DEFAULT TRUE,
    input JSONB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    progress INTEGER NOT NULL DEFAULT 0,
    checkpoint JSONB,
    result JSONB,
    error_code TEXT,
    error_message TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    webhook_url TEXT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    not_before BIGINT,
    updated_at BIGINT NOT NULL,
    -- The node running the task and until when (database clock); a lapsed lease is handed back by any node.
    lease_owner TEXT,
    lease_until TIMESTAMPTZ
  );
  -- The claim reads this index in dispatch order and skips rows another node has locked.
  CREATE INDEX tasks_queue ON tasks(provider, priority DESC, seq) WHERE state = 'queued';
  -- Lane counts (global limits), lease renewal and the reaper read only running rows.
  CREATE INDEX tasks_running ON tasks(provider, lease_owner) WHERE state = 'running';
  CREATE INDEX tasks_lease ON tasks(lease_until) WHERE state = 'running';
  CREATE INDEX tasks_account ON tasks(account_id, seq);
  CREATE INDEX tasks_key_inflight ON tasks(key_id) WHERE state IN ('queued','running');
  CREATE TABLE task_logs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    message TEXT NOT NULL
  );
  CREATE INDEX task_logs_task ON task_logs(task_id, id);
  CREATE TABLE ledger (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    task_id TEXT,
    kind TEXT NOT NULL CHECK (kind IN ('topup','hold','capture','release','adjust')),
    amount BIGINT NOT NULL,
    reference TEXT,
    created_at BIGINT NOT NULL,
    -- A task is held, captured and released at most once each (NULL task ids, i.e. top-ups, are all distinct).
    CONSTRAINT ledger_task_once UNIQUE (task_id, kind)
  );
  CREATE INDEX ledger_account ON ledger(account_id, id);
  CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    RAISE EXCEPTION 'ledger is append-only';
  END $$;
  CREATE TRIGGER ledger_no_update BEFORE UPDATE OR DELETE ON ledger FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
  CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
  CREATE TABLE files (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    task_id TEXT,
    purpose TEXT NOT NULL CHECK (purpose IN ('input','output')),
    storage_key TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    expires_at BIGINT,
    created_at BIGINT NOT NULL
  );
  CREATE INDEX files_task ON files(task_id);
  CREATE INDEX files_expiry ON files(expires_at) WHERE expires_at IS NOT NULL;
  CREATE TABLE price_tables (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    prices JSONB,
    created_at BIGINT NOT NULL
  );
  `,
  // Mirrors SQLite 3 (delivery guarantees): session_id de-duplication and Idempotency-Key reservations, both enforced
  // by their primary keys; per-key callback URLs; the webhook outbox with its attempt log.
  `
  CREATE TABLE task_sessions (
    account_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, session_id)
  );
  CREATE INDEX task_sessions_created ON task_sessions(created_at);
  CREATE TABLE idempotency_keys (
    account_id TEXT NOT NULL,
    key TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    token TEXT NOT NULL,
    task_id TEXT,
    status INTEGER,
    response TEXT,
    created_at BIGINT NOT NULL,
    completed_at BIGINT,
    PRIMARY KEY (account_id, key)
  );
  CREATE INDEX idempotency_created ON idempotency_keys(created_at);
  ALTER TABLE api_keys ADD COLUMN callback_url TEXT;
  CREATE TABLE webhook_deliveries (
    seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    url TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending','delivered','failed','gone')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    lease_until BIGINT,
    last_status INTEGER,
    replay_of TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
  );
  CREATE INDEX webhook_due ON webhook_deliveries(next_attempt_at) WHERE state = 'pending';
  CREATE INDEX webhook_task ON webhook_deliveries(task_id, seq);
  CREATE UNIQUE INDEX webhook_task_once ON webhook_deliveries(task_id) WHERE replay_of IS NULL;
  CREATE TABLE webhook_attempts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(id),
    attempted_at BIGINT NOT NULL,
    status INTEGER,
    error TEXT,
    latency_ms INTEGER NOT NULL,
    response_body TEXT
  );
  CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id, id);
  `,
  // Mirrors SQLite 4 (upstream channels).
  `
  CREATE TABLE channels (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL CHECK (provider IN ('tencent-vod')),
    name TEXT NOT NULL,
    secret_id TEXT NOT NULL,
    secret_key_sealed TEXT NOT NULL,
    sub_app_id BIGINT NOT NULL CHECK (sub_app_id >= 0),
    region TEXT,
    endpoint TEXT,
    models JSONB NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    weight INTEGER NOT NULL DEFAULT 1 CHECK (weight >= 1),
    max_concurrency INTEGER NOT NULL DEFAULT 1 CHECK (max_concurrency >= 1),
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    events_enabled BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
  );
  `,
  // PostgreSQL only: submit and finish as SQL functions (graphile-worker's add_job idea), so each is one round trip
  // and many of them share one transaction (group-commit.ts). They do what src/adapters/sqlite/tasks.ts does, in
  // the same order; the conformance suite holds both adapters to the same contract.
  `
  -- The outbox row of a finished task, to the first URL it resolves to (explicit, task, key, account); none: no row.
  CREATE FUNCTION aigc_enqueue_delivery(p_delivery_id text, p_task_id text, p_now bigint, p_url text, p_replay_of text)
  RETURNS SETOF webhook_deliveries LANGUAGE sql AS $$
    INSERT INTO webhook_deliveries (id, message_id, task_id, account_id, url, state, next_attempt_at, replay_of, created_at, updated_at)
    SELECT p_delivery_id, 'msg_' || t.id, t.id, t.account_id, COALESCE(p_url, t.webhook_url, k.callback_url, a.callback_url),
           'pending', p_now, p_replay_of, p_now, p_now
    FROM tasks t JOIN accounts a ON a.id = t.account_id LEFT JOIN api_keys k ON k.id = t.key_id
    WHERE t.id = p_task_id AND COALESCE(p_url, t.webhook_url, k.callback_url, a.callback_url) IS NOT NULL
    RETURNING *
  $$;

  -- Accepts a task: session claim, key limits, spend cap, hold, insert, ledger, Idempotency-Key binding and the
  -- wake-up, all or nothing. A refusal is raised inside the inner block (SQLSTATE AR001, the outcome as JSON in the
  -- message), which undoes every write made so far, and is returned as the outcome.
  CREATE FUNCTION aigc_create_task(t jsonb, p_channel text) RETURNS jsonb LANGUAGE plpgsql AS $$
  DECLARE
    v_billed boolean := COALESCE((t->>'billed')::boolean, true);
    v_price bigint := (t->>'price')::bigint;
    v_account text := t->>'accountId';
    v_key text := t->>'keyId';
    v_session text := t->'input'->>'session_id';
    v_stale_before bigint := (t->>'sessionStaleBefore')::bigint;
    v_limit integer;
    v_cap bigint;
    v_spent bigint;
    v_key_found boolean;
    v_count integer;
    v_holder text;
    v_available bigint;
    v_task tasks;
  BEGIN
    BEGIN
      IF COALESCE(v_session, '') <> '' THEN
        DELETE FROM task_sessions WHERE account_id = v_account AND session_id = v_session AND created_at <= v_stale_before;
        INSERT INTO task_sessions (account_id, session_id, task_id, created_at)
        VALUES (v_account, v_session, t->>'id', (t->>'now')::bigint) ON CONFLICT (account_id, session_id) DO NOTHING;
        IF NOT FOUND THEN
          SELECT task_id INTO v_holder FROM task_sessions WHERE account_id = v_account AND session_id = v_session;
          RAISE EXCEPTION USING ERRCODE = 'AR001',
            MESSAGE = jsonb_build_object('ok', false, 'reason', 'duplicate_session', 'taskId', v_holder)::text;
        END IF;
      END IF;
      -- The key row lock serialises one key's submits, so the in-flight count cannot be read stale.
      SELECT max_concurrency, spend_cap, spent INTO v_limit, v_cap, v_spent FROM api_keys WHERE id = v_key FOR UPDATE;
      v_key_found := FOUND;
      IF v_key_found AND v_limit IS NOT NULL THEN
        SELECT count(*) INTO v_count FROM (SELECT 1 FROM tasks WHERE key_id = v_key AND state IN ('queued','running') LIMIT v_limit) s;
        IF v_count >= v_limit THEN
          RAISE EXCEPTION USING ERRCODE = 'AR001',
            MESSAGE = jsonb_build_object('ok', false, 'reason', 'concurrency_limit', 'limit', v_limit)::text;
        END IF;
      END IF;
      IF v_billed AND v_key_found THEN
        UPDATE api_keys SET spent = spent + v_price WHERE id = v_key AND (spend_cap IS NULL OR spent + v_price <= spend_cap);
        IF NOT FOUND THEN
          RAISE EXCEPTION USING ERRCODE = 'AR001',
            MESSAGE = jsonb_build_object('ok', false, 'reason', 'spend_cap', 'cap', COALESCE(v_cap, 0), 'spent', v_spent)::text;
        END IF;
      END IF;
      IF v_billed THEN
        -- One conditional statement: concurrent holds queue on the row lock and each re-checks the balance.
        UPDATE accounts SET held = held + v_price WHERE id = v_account AND balance - held >= v_price;
        IF NOT FOUND THEN
          SELECT balance - held INTO v_available FROM accounts WHERE id = v_account;
          RAISE EXCEPTION USING ERRCODE = 'AR001',
            MESSAGE = jsonb_build_object('ok', false, 'reason', 'insufficient_balance', 'available', COALESCE(v_available, 0))::text;
        END IF;
      END IF;
      INSERT INTO tasks (id, account_id, key_id, request_id, state, provider, priority, price, billed, input, webhook_url, created_at, updated_at)
      VALUES (t->>'id', v_account, v_key, t->>'requestId', 'queued', t->>'provider', (t->'input'->>'tasks_priority')::integer,
              v_price, v_billed, t->'input', t->>'webhookUrl', (t->>'now')::bigint, (t->>'now')::bigint)
      RETURNING * INTO v_task;
      IF v_billed THEN
        INSERT INTO ledger (account_id, task_id, kind, amount, created_at) VALUES (v_account, v_task.id, 'hold', v_price, v_task.created_at);
      END IF;
      IF t ? 'idempotency' THEN
        UPDATE idempotency_keys SET task_id = v_task.id
        WHERE account_id = v_account AND key = t->'idempotency'->>'key' AND token = t->'idempotency'->>'token'
          AND task_id IS NULL AND status IS NULL;
        IF NOT FOUND THEN
          RAISE EXCEPTION USING ERRCODE = 'AR001', MESSAGE = jsonb_build_object('ok', false, 'reason', 'idempotency_lost')::text;
        END IF;
      END IF;
      -- Enqueued in the submit's own transaction: nodes hear of the task only once it committed.
      PERFORM pg_notify(p_channel, 'q:' || v_task.provider);
      RETURN jsonb_build_object('ok', true, 'task', to_jsonb(v_task));
    EXCEPTION WHEN SQLSTATE 'AR001' THEN
      RETURN SQLERRM::jsonb;
    END;
  END $$;

  -- Moves a task to a terminal state and settles it: capture (and output files) on success, release otherwise;
  -- writes the webhook outbox row and frees the lane slot. False when the task was already terminal.
  -- f: {id, state, from[], result?, code?, message?, files?, now, deliveryId}.
  CREATE FUNCTION aigc_finish_task(f jsonb, p_channel text) RETURNS boolean LANGUAGE plpgsql AS $$
  DECLARE
    d record;
    p_id text := f->>'id';
    p_state text := f->>'state';
    p_from text[] := ARRAY(SELECT jsonb_array_elements_text(f->'from'));
    p_result jsonb := NULLIF(f->'result', 'null'::jsonb);
    p_code text := f->>'code';
    p_message text := f->>'message';
    p_files jsonb := NULLIF(f->'files', 'null'::jsonb);
    p_now bigint := (f->>'now')::bigint;
    p_delivery_id text := f->>'deliveryId';
  BEGIN
    UPDATE tasks SET state = p_state, result = p_result, error_code = p_code, error_message = p_message,
      progress = CASE WHEN p_state = 'succeeded' THEN 100 ELSE progress END,
      finished_at = p_now, updated_at = p_now, lease_owner = NULL, lease_until = NULL
    WHERE id = p_id AND state = ANY(p_from)
    RETURNING account_id, key_id, price, billed, provider INTO d;
    IF NOT FOUND THEN
      RETURN false;
    END IF;
    IF p_state = 'succeeded' THEN
      IF d.billed THEN
        UPDATE accounts SET balance = balance - d.price, held = held - d.price WHERE id = d.account_id;
        INSERT INTO ledger (account_id, task_id, kind, amount, created_at) VALUES (d.account_id, p_id, 'capture', d.price, p_now);
      END IF;
      INSERT INTO files (id, account_id, task_id, purpose, storage_key, content_type, size, width, height, expires_at, created_at)
      SELECT f.id, f."accountId", f."taskId", f.purpose, f."storageKey", f."contentType", f.size, f.width, f.height, f."expiresAt", p_now
      FROM jsonb_to_recordset(COALESCE(p_files, '[]'::jsonb)) AS f(id text, "accountId" text, "taskId" text, purpose text,
        "storageKey" text, "contentType" text, size bigint, width integer, height integer, "expiresAt" bigint);
    ELSIF d.billed THEN
      -- Key before account: the lock order of aigc_create_task, so the two never deadlock.
      UPDATE api_keys SET spent = GREATEST(0, spent - d.price) WHERE id = d.key_id;
      UPDATE accounts SET held = held - d.price WHERE id = d.account_id;
      INSERT INTO ledger (account_id, task_id, kind, amount, created_at) VALUES (d.account_id, p_id, 'release', d.price, p_now);
    END IF;
    PERFORM aigc_enqueue_delivery(p_delivery_id, p_id, p_now, NULL, NULL);
    PERFORM pg_notify(p_channel, 'f:' || d.provider);
    RETURN true;
  END $$;
  `,
  // PostgreSQL only: upstream channel slots counted across nodes (ports/channel-slots.ts), one row per slot, leased
  // to the node that holds it so a dead node's slots come free.
  `
  CREATE TABLE channel_slots (
    channel_id TEXT NOT NULL,
    holder TEXT NOT NULL,
    node_id TEXT NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (channel_id, holder)
  );
  CREATE INDEX channel_slots_node ON channel_slots(node_id);
  `,
  // Fencing finishes by lease: an attempt's own outcome (f.owner = its node) settles a task only while the task is
  // running under that node's lease: not once it was handed back (queued, to run again) nor taken over by another
  // node. The row is locked first, so no hand-back or claim can slip between the check and the settlement; the
  // settlement itself is the function as it was.
  `
  ALTER FUNCTION aigc_finish_task(jsonb, text) RENAME TO aigc_settle_task;
  CREATE FUNCTION aigc_finish_task(f jsonb, p_channel text) RETURNS boolean LANGUAGE plpgsql AS $$
  DECLARE
    t record;
  BEGIN
    IF f->>'owner' IS NOT NULL THEN
      SELECT state, lease_owner INTO t FROM tasks WHERE id = f->>'id' FOR UPDATE;
      IF NOT FOUND OR t.state <> 'running' OR t.lease_owner IS DISTINCT FROM f->>'owner' THEN
        RETURN false;
      END IF;
    END IF;
    RETURN aigc_settle_task(f, p_channel);
  END $$;
  `,
  // …and by attempt: the lease owner alone cannot tell this node's lapsed attempt from a later attempt the same
  // node claimed after the task was handed back. f.attempt is the attempt the outcome belongs to.
  `
  CREATE OR REPLACE FUNCTION aigc_finish_task(f jsonb, p_channel text) RETURNS boolean LANGUAGE plpgsql AS $$
  DECLARE
    t record;
  BEGIN
    IF f->>'owner' IS NOT NULL THEN
      SELECT state, lease_owner, attempts INTO t FROM tasks WHERE id = f->>'id' FOR UPDATE;
      IF NOT FOUND OR t.state <> 'running' OR t.lease_owner IS DISTINCT FROM f->>'owner'
        OR (f->>'attempt' IS NOT NULL AND t.attempts <> (f->>'attempt')::int) THEN
        RETURN false;
      END IF;
    END IF;
    RETURN aigc_settle_task(f, p_channel);
  END $$;
  `,
  // The finish that settled a task, by a token each finish call makes (f.token). A batch whose COMMIT went through
  // but whose answer was lost is run again (group-commit.ts), and the re-run of a finish is refused by the task it
  // settled itself; the token tells that refusal from a task settled by someone else (tasks.ts).
  `
  ALTER TABLE tasks ADD COLUMN finish_token TEXT;
  ALTER FUNCTION aigc_finish_task(jsonb, text) RENAME TO aigc_finish_fenced;
  CREATE FUNCTION aigc_finish_task(f jsonb, p_channel text) RETURNS boolean LANGUAGE plpgsql AS $$
  BEGIN
    IF NOT aigc_finish_fenced(f, p_channel) THEN
      RETURN false;
    END IF;
    UPDATE tasks SET finish_token = f->>'token' WHERE id = f->>'id';
    RETURN true;
  END $$;
  `,
  // Claims with model quotas (dispatch-queue.ts, CLAIM_WITH_QUOTAS) read each model's queued tasks in dispatch order,
  // and the tasks with work under way, without reading the rest of the queue. The model expression must stay
  // exactly dispatch-queue.ts's MODEL_KEY for the planner to use the index.
  {
    concurrentIndexes: [
      {
        name: 'tasks_queue_model',
        on: "tasks(provider, ((input->>'model_name') || ':' || (input->>'model_version')), priority DESC, seq) WHERE state = 'queued'",
      },
      { name: 'tasks_queue_underway', on: "tasks(provider, priority DESC, seq) WHERE state = 'queued' AND checkpoint IS NOT NULL" },
    ],
  },
  // Per-key request rates (rpm) shared by every node (request-rates.ts): the sliding-window log of each key, taken
  // under a per-key advisory lock so that concurrent submits on several nodes count exactly. On the database's clock:
  // with each node's own, nodes whose clocks disagreed counted each other's requests for a window plus the
  // difference, or not at all, and answered a Retry-After longer than the window. A NULL p_now is the database's
  // time, read once the key's lock is held (so a key's times only grow); a given one is used as is (tests of the
  // window arithmetic).
  `
  CREATE TABLE request_rates (
    key_id TEXT NOT NULL,
    at BIGINT NOT NULL
  );
  CREATE INDEX request_rates_key ON request_rates(key_id, at);
  CREATE INDEX request_rates_at ON request_rates(at);
  -- How many rows each key has in request_rates, kept by whoever inserts or deletes them, so that a take costs the
  -- same whatever the key's rpm (counting the log itself read up to rpm index entries per request).
  CREATE TABLE request_rate_counts (
    key_id TEXT PRIMARY KEY,
    n INTEGER NOT NULL CHECK (n >= 0)
  );
  CREATE FUNCTION aigc_take_rate(p_key text, p_limit integer, p_now bigint, p_window bigint) RETURNS bigint
  LANGUAGE plpgsql AS $$
  DECLARE
    v_now bigint;
    v_gone integer;
    v_counted integer;
    v_leaves bigint;
  BEGIN
    PERFORM pg_advisory_xact_lock(1918989413, hashtext(p_key)); -- "rate"
    v_now := COALESCE(p_now, floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint);
    WITH gone AS (DELETE FROM request_rates WHERE key_id = p_key AND at <= v_now - p_window RETURNING 1)
    SELECT count(*) INTO v_gone FROM gone;
    UPDATE request_rate_counts SET n = n - v_gone WHERE key_id = p_key RETURNING n INTO v_counted;
    v_counted := COALESCE(v_counted, 0);
    IF v_counted >= p_limit THEN
      -- The oldest requests leave the window first: one more fits once the limit-th newest has left, that is the
      -- (counted - limit)-th oldest (0-based), which is the oldest itself unless the limit was lowered.
      SELECT at INTO v_leaves FROM request_rates WHERE key_id = p_key ORDER BY at OFFSET v_counted - GREATEST(p_limit, 1) LIMIT 1;
      IF v_leaves IS NULL THEN
        -- The count ran ahead of the log (rows deleted by something that did not count them, e.g. by hand): count
        -- again and go on with the true figure, rather than refuse the key for ever.
        SELECT count(*) INTO v_counted FROM request_rates WHERE key_id = p_key;
        UPDATE request_rate_counts SET n = v_counted WHERE key_id = p_key;
        IF v_counted >= p_limit THEN
          SELECT at INTO v_leaves FROM request_rates WHERE key_id = p_key ORDER BY at OFFSET v_counted - GREATEST(p_limit, 1) LIMIT 1;
        END IF;
      END IF;
      IF v_leaves IS NOT NULL THEN
        RETURN LEAST(p_window, GREATEST(1, v_leaves + p_window - v_now));
      END IF;
    END IF;
    INSERT INTO request_rates (key_id, at) VALUES (p_key, v_now);
    INSERT INTO request_rate_counts (key_id, n) VALUES (p_key, 1)
      ON CONFLICT (key_id) DO UPDATE SET n = request_rate_counts.n + 1;
    RETURN 0;
  END $$;
  `,
  // The retention purge of ended webhook deliveries (webhooks.ts purge) reads them oldest first.
  { concurrentIndexes: [{ name: 'webhook_finished', on: 'webhook_deliveries(finished_at) WHERE finished_at IS NOT NULL' }] },
  // The fair webhook claim (webhooks.ts claimDue): pending rows by account for its skip scan and per-account due
  // rows; leased rows for the in-flight counts and for nextDueAt.
  {
    concurrentIndexes: [
      { name: 'webhook_pending_account', on: "webhook_deliveries(account_id, next_attempt_at, seq) WHERE state = 'pending'" },
      { name: 'webhook_leased', on: 'webhook_deliveries(lease_until) WHERE lease_until IS NOT NULL' },
    ],
  },
  // The upload quota (files.ts createUpload) sums an account's uploads; this index covers the sum.
  { concurrentIndexes: [{ name: 'files_account_inputs', on: "files(account_id, size) WHERE purpose = 'input'" }] },
  // Where the last fair webhook claim stopped (webhooks.ts claimDue), shared by every node: with a cursor per node,
  // each node served the same accounts again before the next ones got their first delivery.
  `
  CREATE TABLE webhook_fair_cursor (
    only_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    after_account TEXT NOT NULL
  );
  `,
  // A cancel the client was told of wins over the run's own outcome (ports/store.ts requestCancel): once the flag is
  // set, an attempt's success or failure is refused and the run settles the task as cancelled. The row lock taken
  // here orders it with requestCancel's update: whichever commits first decides.
  `
  CREATE OR REPLACE FUNCTION aigc_finish_fenced(f jsonb, p_channel text) RETURNS boolean LANGUAGE plpgsql AS $$
  DECLARE
    t record;
  BEGIN
    IF f->>'owner' IS NOT NULL THEN
      SELECT state, lease_owner, attempts, cancel_requested INTO t FROM tasks WHERE id = f->>'id' FOR UPDATE;
      IF NOT FOUND OR t.state <> 'running' OR t.lease_owner IS DISTINCT FROM f->>'owner'
        OR (f->>'attempt' IS NOT NULL AND t.attempts <> (f->>'attempt')::int)
        OR (t.cancel_requested AND f->>'state' <> 'cancelled') THEN
        RETURN false;
      END IF;
    END IF;
    RETURN aigc_settle_task(f, p_channel);
  END $$;
  `,
  // Upstream submission turns shared by every node (submission-pace.ts): the start times reserved per upstream
  // account, on the database's clock, so N nodes on one Tencent account send its rate together, not N times it.
  `
  CREATE TABLE upstream_turns (
    pace_key TEXT NOT NULL,
    at_ms BIGINT NOT NULL
  );
  CREATE INDEX upstream_turns_key ON upstream_turns(pace_key, at_ms DESC);
  -- The wait in ms before the caller's turn, which it reserves: the earliest start that keeps every window of
  -- p_window ms at p_limit starts (the start p_limit places before it, plus the window), as in-process-pace.ts does
  -- in memory. p_now: the database's clock when null (tests pass their own). Starts a window before now can hold
  -- no later call back (that call's own now is later), so they go; not by the new start's time, which may be in the
  -- future and would take reserved starts with it (and ties at the limit's edge).
  CREATE FUNCTION aigc_take_turn(p_key text, p_limit integer, p_window bigint, p_now bigint) RETURNS bigint
  LANGUAGE plpgsql AS $$
  DECLARE
    v_now bigint;
    v_before bigint;
    v_at bigint;
  BEGIN
    PERFORM pg_advisory_xact_lock(1953854062, hashtext(p_key)); -- "turn"
    v_now := COALESCE(p_now, floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint);
    DELETE FROM upstream_turns WHERE pace_key = p_key AND at_ms <= v_now - p_window;
    SELECT at_ms INTO v_before FROM upstream_turns WHERE pace_key = p_key ORDER BY at_ms DESC OFFSET GREATEST(p_limit, 1) - 1 LIMIT 1;
    v_at := GREATEST(v_now, COALESCE(v_before + p_window, v_now));
    INSERT INTO upstream_turns (pace_key, at_ms) VALUES (p_key, v_at);
    RETURN v_at - v_now;
  END $$;
  `,
  // The relay secret's fingerprint (app/secrets.ts), as on SQLite: the nodes and operator commands of one database
  // must share one secret, and one whose fingerprint differs stops at start instead of failing later, elsewhere.
  `
  CREATE TABLE relay_secret_fingerprint (
    only_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    fingerprint TEXT NOT NULL,
    created_at BIGINT NOT NULL
  );
  `,
  // Channel slots are held by an attempt of a task, not by the task (ports/channel-slots.ts): by the task, the end of
  // a superseded attempt (its lease lapsed and the task was claimed again, on the same node or another) gave away
  // the slot its successor had adopted, and the channel then let one task more than its max_concurrency in. Rows
  // from before have attempt 0: the next attempt of their task takes them over.
  `
  ALTER TABLE channel_slots ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
  `,
  // Which data dir holds this database's stored files (app/shared-files.ts), as on SQLite: every node must see the
  // same one, and a node whose data dir carries another marker says so at start.
  `
  CREATE TABLE files_dir_marker (
    only_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    marker TEXT NOT NULL,
    created_at BIGINT NOT NULL
  );
  `,
  // How many of a task's claims a stopping node handed back, as on SQLite. Before, the hand-back took one off
  // `attempts`, so the next claim, on another node, had the number of the run it replaced: a late slot request of
  // the stopped run then took over its successor's channel slot (both were "attempt N" of the task).
  `
  ALTER TABLE tasks ADD COLUMN handed_back INTEGER NOT NULL DEFAULT 0;
  `,
  // A rotated webhook secret, as on SQLite: the one it replaced signs beside it until `previous_secret_until`.
  `
  ALTER TABLE accounts ADD COLUMN previous_webhook_secret TEXT;
  ALTER TABLE accounts ADD COLUMN previous_secret_until BIGINT;
  `,
  // A key's expiry, as on SQLite: from then on it is refused as a revoked key is; null, it never expires. A node
  // still on the version before reads the column with SELECT * and ignores it (its keys then do not expire there).
  `
  ALTER TABLE api_keys ADD COLUMN expires_at BIGINT;
  `,
  // An account's suspension, as on SQLite: while set, every key of the account is refused; null resumes it. A node
  // still on the version before ignores the column (keys of a suspended account still work there).
  `
  ALTER TABLE accounts ADD COLUMN suspended_at BIGINT;
  `,
  // Queued tasks counted by lane and priority, as on SQLite (5), so that a queue position is a sum of a few counters
  // instead of a count of every queued task ahead: at the back of a deep queue, where every submit lands, that was
  // 0.23 µs of database CPU per queued task, 2.3 ms per submit at 10,000 (docs/benchmarks-history.md, session 27). Each
  // database session (backend) keeps counters of its own (`backend` = its pid), so no two sessions ever wait for one
  // another's counter row: one shared row per lane and priority would be locked by every submit batch and claim of
  // every node until its commit is flushed, and two of them taking two such rows in opposite orders would deadlock.
  // A count is the sum over every backend's row, exact in any one snapshot since each row changes in the same
  // transaction as the tasks it counts. The rows of sessions that have ended are folded into row 0 from time to time
  // (aigc_compact_queue_counts, from each node's queue maintenance), so the sums stay short. Filled from the queue as
  // it stands, with writes to tasks held back until this commits (the trigger counts every change after).
  `
  CREATE TABLE queue_counts (
    provider TEXT NOT NULL,
    priority INTEGER NOT NULL,
    backend INTEGER NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (provider, priority, backend)
  );
  CREATE FUNCTION aigc_count_queue() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF TG_OP <> 'INSERT' AND OLD.state = 'queued' THEN
      IF TG_OP = 'DELETE' OR NEW.state <> 'queued' OR NEW.provider <> OLD.provider OR NEW.priority <> OLD.priority THEN
        INSERT INTO queue_counts (provider, priority, backend, n) VALUES (OLD.provider, OLD.priority, pg_backend_pid(), -1)
        ON CONFLICT (provider, priority, backend) DO UPDATE SET n = queue_counts.n - 1;
      END IF;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.state = 'queued' THEN
      IF TG_OP = 'INSERT' OR OLD.state <> 'queued' OR NEW.provider <> OLD.provider OR NEW.priority <> OLD.priority THEN
        INSERT INTO queue_counts (provider, priority, backend, n) VALUES (NEW.provider, NEW.priority, pg_backend_pid(), 1)
        ON CONFLICT (provider, priority, backend) DO UPDATE SET n = queue_counts.n + 1;
      END IF;
    END IF;
    RETURN NULL;
  END $$;
  -- Folds the rows of backends that have ended into row 0 (no live backend has pid 0, so only folds touch it).
  -- A pid the system has given to a new backend since is alive again and left alone: it goes on adding to its row.
  -- SKIP LOCKED: a row locked by someone else belongs to a live backend (one given an ended backend's pid after
  -- pg_stat_activity was read) or to another fold; waiting for it, while holding rows that backend may want next,
  -- could deadlock. Row 0 is taken in one order (provider, priority), so two folds queue rather than deadlock.
  CREATE FUNCTION aigc_compact_queue_counts() RETURNS integer LANGUAGE sql AS $$
    WITH ended AS (
      SELECT provider, priority, backend FROM queue_counts q
      WHERE q.backend <> 0 AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = q.backend)
      FOR UPDATE SKIP LOCKED),
    gone AS (
      DELETE FROM queue_counts q USING ended e
      WHERE q.provider = e.provider AND q.priority = e.priority AND q.backend = e.backend
      RETURNING q.provider, q.priority, q.n),
    folded AS (
      INSERT INTO queue_counts (provider, priority, backend, n)
      SELECT provider, priority, 0, sum(n) FROM gone GROUP BY provider, priority ORDER BY provider, priority
      ON CONFLICT (provider, priority, backend) DO UPDATE SET n = queue_counts.n + EXCLUDED.n
      RETURNING 1)
    SELECT count(*)::integer FROM gone;
  $$;
  LOCK TABLE tasks IN SHARE ROW EXCLUSIVE MODE;
  INSERT INTO queue_counts (provider, priority, backend, n)
  SELECT provider, priority, 0, count(*) FROM tasks WHERE state = 'queued' GROUP BY provider, priority;
  -- WHEN: a change that neither enters nor leaves the queue (a run's finish, most updates) calls no function at all.
  CREATE TRIGGER tasks_queue_counts_insert AFTER INSERT ON tasks
  FOR EACH ROW WHEN (NEW.state = 'queued') EXECUTE FUNCTION aigc_count_queue();
  CREATE TRIGGER tasks_queue_counts_update AFTER UPDATE OF state, provider, priority ON tasks
  FOR EACH ROW WHEN (OLD.state = 'queued' OR NEW.state = 'queued') EXECUTE FUNCTION aigc_count_queue();
  CREATE TRIGGER tasks_queue_counts_delete AFTER DELETE ON tasks
  FOR EACH ROW WHEN (OLD.state = 'queued') EXECUTE FUNCTION aigc_count_queue();
  `,
  // What three shipped versions left behind: each was later edited in place (8 by f3624eb; 10 by 7e17b0a, c75478e
  // and 45c74b6; 16 by d1fc308), and a database a relay of the time migrated keeps its version recorded with the
  // text as it shipped, so the edit never ran there. This restates, idempotently, what those edits made, for every
  // database: on one migrated since, it changes nothing.
  // - 8 as 88b10f5 shipped it restated the fence itself, with no aigc_finish_fenced to wrap: 15's cancel fence (a
  //   cancel the client was told of wins over the run's own outcome) never ran, and such a task was charged.
  // - 10 as dc2c294 shipped it took the caller's time and kept no per-key counts: this relay passes none (the
  //   database's clock), and every take inserted a NULL time, a 500 for every submit of a key with an rpm. The counts
  //   are made from the log under a lock that holds every take and sweep off until they are (a count behind its log
  //   would go below zero).
  // - 16 as 781900b shipped it had three arguments: this relay's four-argument call found no function, and every
  //   Tencent submission failed. The three-argument function stays for nodes of that time still running.
  `
  CREATE OR REPLACE FUNCTION aigc_finish_task(f jsonb, p_channel text) RETURNS boolean LANGUAGE plpgsql AS $$
  BEGIN
    IF NOT aigc_finish_fenced(f, p_channel) THEN
      RETURN false;
    END IF;
    UPDATE tasks SET finish_token = f->>'token' WHERE id = f->>'id';
    RETURN true;
  END $$;
  LOCK TABLE request_rates IN SHARE ROW EXCLUSIVE MODE;
  CREATE TABLE IF NOT EXISTS request_rate_counts (
    key_id TEXT PRIMARY KEY,
    n INTEGER NOT NULL CHECK (n >= 0)
  );
  DELETE FROM request_rate_counts;
  INSERT INTO request_rate_counts (key_id, n) SELECT key_id, count(*) FROM request_rates GROUP BY key_id;
  CREATE OR REPLACE FUNCTION aigc_take_rate(p_key text, p_limit integer, p_now bigint, p_window bigint) RETURNS bigint
  LANGUAGE plpgsql AS $$
  DECLARE
    v_now bigint;
    v_gone integer;
    v_counted integer;
    v_leaves bigint;
  BEGIN
    PERFORM pg_advisory_xact_lock(1918989413, hashtext(p_key)); -- "rate"
    v_now := COALESCE(p_now, floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint);
    WITH gone AS (DELETE FROM request_rates WHERE key_id = p_key AND at <= v_now - p_window RETURNING 1)
    SELECT count(*) INTO v_gone FROM gone;
    UPDATE request_rate_counts SET n = n - v_gone WHERE key_id = p_key RETURNING n INTO v_counted;
    v_counted := COALESCE(v_counted, 0);
    IF v_counted >= p_limit THEN
      -- The oldest requests leave the window first: one more fits once the limit-th newest has left, that is the
      -- (counted - limit)-th oldest (0-based), which is the oldest itself unless the limit was lowered.
      SELECT at INTO v_leaves FROM request_rates WHERE key_id = p_key ORDER BY at OFFSET v_counted - GREATEST(p_limit, 1) LIMIT 1;
      IF v_leaves IS NULL THEN
        -- The count ran ahead of the log (rows deleted by something that did not count them, e.g. by hand): count
        -- again and go on with the true figure, rather than refuse the key for ever.
        SELECT count(*) INTO v_counted FROM request_rates WHERE key_id = p_key;
        UPDATE request_rate_counts SET n = v_counted WHERE key_id = p_key;
        IF v_counted >= p_limit THEN
          SELECT at INTO v_leaves FROM request_rates WHERE key_id = p_key ORDER BY at OFFSET v_counted - GREATEST(p_limit, 1) LIMIT 1;
        END IF;
      END IF;
      IF v_leaves IS NOT NULL THEN
        RETURN LEAST(p_window, GREATEST(1, v_leaves + p_window - v_now));
      END IF;
    END IF;
    INSERT INTO request_rates (key_id, at) VALUES (p_key, v_now);
    INSERT INTO request_rate_counts (key_id, n) VALUES (p_key, 1)
      ON CONFLICT (key_id) DO UPDATE SET n = request_rate_counts.n + 1;
    RETURN 0;
  END $$;
  CREATE OR REPLACE FUNCTION aigc_take_turn(p_key text, p_limit integer, p_window bigint, p_now bigint) RETURNS bigint
  LANGUAGE plpgsql AS $$
  DECLARE
    v_now bigint;
    v_before bigint;
    v_at bigint;
  BEGIN
    PERFORM pg_advisory_xact_lock(1953854062, hashtext(p_key)); -- "turn"
    v_now := COALESCE(p_now, floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint);
    DELETE FROM upstream_turns WHERE pace_key = p_key AND at_ms <= v_now - p_window;
    SELECT at_ms INTO v_before FROM upstream_turns WHERE pace_key = p_key ORDER BY at_ms DESC OFFSET GREATEST(p_limit, 1) - 1 LIMIT 1;
    v_at := GREATEST(v_now, COALESCE(v_before + p_window, v_now));
    INSERT INTO upstream_turns (pace_key, at_ms) VALUES (p_key, v_at);
    RETURN v_at - v_now;
  END $$;
  `,
  // The webhook outbox insert, the same, in PL/pgSQL: as a LANGUAGE sql function that cannot be inlined (it inserts),
  // PostgreSQL planned its body again on every call, 0.14 ms of each task's finish, where PL/pgSQL keeps the plan
  // for the session (0.015 ms; docs/benchmarks-history.md, session 27).
  `
  CREATE OR REPLACE FUNCTION aigc_enqueue_delivery(p_delivery_id text, p_task_id text, p_now bigint, p_url text, p_replay_of text)
  RETURNS SETOF webhook_deliveries LANGUAGE plpgsql AS $$
  BEGIN
    RETURN QUERY WITH queued AS (
      INSERT INTO webhook_deliveries (id, message_id, task_id, account_id, url, state, next_attempt_at, replay_of, created_at, updated_at)
      SELECT p_delivery_id, 'msg_' || t.id, t.id, t.account_id, COALESCE(p_url, t.webhook_url, k.callback_url, a.callback_url),
             'pending', p_now, p_replay_of, p_now, p_now
      FROM tasks t JOIN accounts a ON a.id = t.account_id LEFT JOIN api_keys k ON k.id = t.key_id
      WHERE t.id = p_task_id AND COALESCE(p_url, t.webhook_url, k.callback_url, a.callback_url) IS NOT NULL
      RETURNING *)
    SELECT * FROM queued;
  END $$;
  `,
  // Finished tasks counted by state, as on SQLite (finished_counts), kept per database session like queue_counts
  // (24) and folded by the same maintenance (aigc_compact_counts): `/metrics` read the task counts by state with a
  // count of the whole tasks table, every scrape on every node, a second's scan at ten million tasks. Now queued is a
  // sum of queue_counts, running a count of the partial index on running tasks, and the rest these sums. A finish
  // adds one counter upsert to its transaction; nothing else calls the trigger (WHEN). Filled from the tasks as they
  // stand, with writes to tasks held back until this commits. Like 24's, these counters suit the relay's writes, a few
  // tasks per statement: one statement that moves tens of thousands of tasks (an operator's bulk UPDATE) updates one
  // counter row that many times, and its versions pile up (20,000 rows: 6 s, against 0.2 s with no trigger).
  `
  CREATE TABLE finished_counts (
    state TEXT NOT NULL,
    backend INTEGER NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (state, backend)
  );
  CREATE FUNCTION aigc_count_finished() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF TG_OP <> 'INSERT' AND OLD.state IN ('succeeded', 'failed', 'cancelled') THEN
      INSERT INTO finished_counts (state, backend, n) VALUES (OLD.state, pg_backend_pid(), -1)
      ON CONFLICT (state, backend) DO UPDATE SET n = finished_counts.n - 1;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.state IN ('succeeded', 'failed', 'cancelled') THEN
      INSERT INTO finished_counts (state, backend, n) VALUES (NEW.state, pg_backend_pid(), 1)
      ON CONFLICT (state, backend) DO UPDATE SET n = finished_counts.n + 1;
    END IF;
    RETURN NULL;
  END $$;
  -- Both kinds of counters, folded as aigc_compact_queue_counts folds its own (24: SKIP LOCKED, row 0 in one order).
  CREATE FUNCTION aigc_compact_counts() RETURNS integer LANGUAGE plpgsql AS $$
  DECLARE
    folded integer;
  BEGIN
    WITH ended AS (
      SELECT state, backend FROM finished_counts f
      WHERE f.backend <> 0 AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = f.backend)
      FOR UPDATE SKIP LOCKED),
    gone AS (
      DELETE FROM finished_counts f USING ended e WHERE f.state = e.state AND f.backend = e.backend
      RETURNING f.state, f.n),
    kept AS (
      INSERT INTO finished_counts (state, backend, n)
      SELECT state, 0, sum(n) FROM gone GROUP BY state ORDER BY state
      ON CONFLICT (state, backend) DO UPDATE SET n = finished_counts.n + EXCLUDED.n
      RETURNING 1)
    SELECT count(*)::integer INTO folded FROM gone;
    RETURN folded + aigc_compact_queue_counts();
  END $$;
  LOCK TABLE tasks IN SHARE ROW EXCLUSIVE MODE;
  INSERT INTO finished_counts (state, backend, n)
  SELECT state, 0, count(*) FROM tasks WHERE state IN ('succeeded', 'failed', 'cancelled') GROUP BY state;
  CREATE TRIGGER tasks_finished_counts_insert AFTER INSERT ON tasks
  FOR EACH ROW WHEN (NEW.state IN ('succeeded', 'failed', 'cancelled')) EXECUTE FUNCTION aigc_count_finished();
  CREATE TRIGGER tasks_finished_counts_update AFTER UPDATE OF state ON tasks
  FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state AND (OLD.state IN ('succeeded', 'failed', 'cancelled') OR NEW.state IN ('succeeded', 'failed', 'cancelled')))
  EXECUTE FUNCTION aigc_count_finished();
  CREATE TRIGGER tasks_finished_counts_delete AFTER DELETE ON tasks
  FOR EACH ROW WHEN (OLD.state IN ('succeeded', 'failed', 'cancelled')) EXECUTE FUNCTION aigc_count_finished();
  `,
];
