import { parentPort } from 'node:worker_threads';
import { serializeError, type FromWriter, type ToWriter, type WriterReply } from './protocol';

type Target = Record<string, unknown>;

/**
 * The thread's side of thread-calls.ts: runs each call on the named target's method through `run` (the SQLite
 * writer passes its group commit; others run it directly), answers as each settles, the answers of one turn in one
 * message. On `close` it calls `onClose` (flush, close what it holds), says so and lets the thread end.
 */
export function serveCalls(
  targets: Record<string, object>,
  run: (work: () => unknown) => Promise<unknown>,
  onClose: () => void,
): void {
  const port = parentPort;
  if (!port) throw new Error('serveCalls runs in a worker thread (see thread-calls.ts)');
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
      // The client sends this only once every call it made has been answered.
      onClose();
      send({ type: 'closed' });
      port.close();
      return;
    }
    for (const call of message.calls) {
      const target = targets[call.target] as Target | undefined;
      const method = target?.[call.method];
      if (typeof method !== 'function') {
        reply({ id: call.id, ok: false, error: { name: 'TypeError', message: `no method ${call.target}.${call.method}` } });
        continue;
      }
      run(() => method.apply(target, call.args as unknown[])).then(
        (value) => reply({ id: call.id, ok: true, value }),
        (error: unknown) => reply({ id: call.id, ok: false, error: serializeError(error) }),
      );
    }
  });
}
