/**
 * The SQLite writer thread: its own connection to the relay's database, running the group-committed write methods
 * of the task, idempotency and webhook stores (the same adapter code as the inline store) and answering each call
 * after the COMMIT that contains it. Started by writer-client.ts through writer-thread-boot.mjs.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openDatabase } from './database';
import { createGroupCommit } from './group-commit';
import { sqliteIdempotencyStore } from './idempotency';
import { sqliteTaskStore } from './tasks';
import { sqliteWebhookStore } from './webhooks';
import { serializeError, type FromWriter, type ToWriter, type WriterReply, type WriterStoreName } from './writer-protocol';

const port = parentPort;
if (!port) throw new Error('writer-thread.ts runs as a worker thread (see writer-client.ts)');

const db = openDatabase((workerData as { file: string }).file);
const commits = createGroupCommit(db);
const stores: Record<WriterStoreName, Record<string, (...args: unknown[]) => unknown>> = {
  tasks: sqliteTaskStore(db) as never,
  idempotency: sqliteIdempotencyStore(db) as never,
  webhooks: sqliteWebhookStore(db) as never,
};

// Every answer of one group commit settles in the same turn; they go back together at setImmediate.
let replies: WriterReply[] = [];
const send = (message: FromWriter) => port.postMessage(message);
const reply = (answer: WriterReply) => {
  if (replies.length === 0) {
    setImmediate(() => {
      const batch = replies;
      replies = [];
      send({ type: 'replies', replies: batch });
    });
  }
  replies.push(answer);
};

port.on('message', (message: ToWriter) => {
  if (message.type === 'close') {
    // The client sends this only once every call it made has been answered; flush is for safety only.
    commits.flush();
    db.close();
    send({ type: 'closed' });
    port.close();
    return;
  }
  for (const call of message.calls) {
    const store = stores[call.store];
    const method = store[call.method];
    if (typeof method !== 'function') {
      reply({ id: call.id, ok: false, error: { name: 'TypeError', message: `no write method ${call.store}.${call.method}` } });
      continue;
    }
    commits.run(() => method.apply(store, call.args as unknown[])).then(
      (value) => reply({ id: call.id, ok: true, value }),
      (error: unknown) => reply({ id: call.id, ok: false, error: serializeError(error) }),
    );
  }
});
