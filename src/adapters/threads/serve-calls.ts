import { parentPort } from 'node:worker_threads';
import { serializeError, type FromWriter, type ToWriter, type WriterCall, type WriterReply } from './protocol';

type Target = Record<string, unknown>;

/** How long the thread runs calls before it lets answers out (see drain). */
const SLICE_MS = 2;

/**
 * The thread's side of thread-calls.ts: runs each call on the named target's method through `run` (the SQLite
 * writer passes its group commit; others run it directly), answers as each settles, the answers of one turn in one
 * message. On `close` it calls `onClose` (flush, close what it holds), says so and lets the thread end.
 */
export function serveCalls(
  targets: Record<string, object>,
  run: (work: () => unknown, call: { readonly target: string; readonly method: string; readonly args: readonly unknown[] }) => Promise<unknown>,
  onClose: () => void,
): void {
  const port = parentPort;
  if (!port) throw new Error('serveCalls runs in a worker thread (see thread-calls.ts)');
  let replies: WriterReply[] = [];
  const send = (message: FromWriter) => port.postMessage(message);
  // A value that cannot be cloned (a method returning a function, say) fails its own call, not the thread: the
  // work is done by then, and a dead thread would fail every caller.
  const sendReplies = (batch: WriterReply[]) => {
    try {
      send({ type: 'replies', replies: batch });
    } catch (error) {
      if (batch.length > 1) for (const one of batch) sendReplies([one]);
      else send({ type: 'replies', replies: [{ id: batch[0]!.id, ok: false, error: serializeError(error) }] });
    }
  };
  const reply = (answer: WriterReply) => {
    if (replies.length === 0) {
      setImmediate(() => {
        const batch = replies;
        replies = [];
        sendReplies(batch);
      });
    }
    replies.push(answer);
  };
  // A message from the main thread that cannot be read here: its calls would never be answered. End the thread;
  // the main side fails everything pending when it exits.
  port.on('messageerror', (error) => {
    throw error;
  });

  // Calls run in arrival order, in slices of about SLICE_MS: a thread whose calls do their work synchronously (the
  // file writer) answers the first of a thousand queued calls after a slice, not after the thousandth, so answers
  // trickle back to the main thread instead of arriving as one burst.
  const pending: WriterCall[] = [];
  let draining = false;
  const drain = () => {
    const started = performance.now();
    let i = 0;
    while (i < pending.length && (i === 0 || performance.now() - started < SLICE_MS)) runCall(pending[i++]!);
    pending.splice(0, i);
    if (pending.length > 0) setImmediate(drain);
    else draining = false;
  };
  const runCall = (call: WriterCall) => {
    const target = targets[call.target] as Target | undefined;
    const method = target?.[call.method];
    if (typeof method !== 'function') {
      reply({ id: call.id, ok: false, error: { name: 'TypeError', message: `no method ${call.target}.${call.method}` } });
      return;
    }
    run(() => method.apply(target, call.args as unknown[]), call).then(
      (value) => reply({ id: call.id, ok: true, value }),
      (error: unknown) => reply({ id: call.id, ok: false, error: serializeError(error) }),
    );
  };

  port.on('message', (message: ToWriter) => {
    if (message.type === 'close') {
      // The client sends this only once every call it made has been answered.
      onClose();
      send({ type: 'closed' });
      port.close();
      return;
    }
    for (const call of message.calls) pending.push(call);
    if (!draining) {
      draining = true;
      drain();
    }
  });
}
