import { setMaxListeners } from 'node:events';
import type { Socket } from 'node:net';

/**
 * One signal per connection, aborted when the connection closes: the client hung up (or the server closed it), and
 * nothing more it asked for will be read. Shared by every request on the connection, so pipelined uploads waiting on
 * one socket add one `close` listener between them, not one each (Node warns at eleven).
 */
const hangUps = new WeakMap<Socket, AbortSignal>();

export function hungUpSignal(socket: Socket, listenersAtMost: number): AbortSignal {
  const known = hangUps.get(socket);
  if (known) return known;
  const controller = new AbortController();
  // Each request waiting on it listens to the signal (TakeTurns): as many as may wait at once.
  setMaxListeners(listenersAtMost, controller.signal);
  if (socket.destroyed) controller.abort();
  else socket.once('close', () => controller.abort());
  hangUps.set(socket, controller.signal);
  return controller.signal;
}
